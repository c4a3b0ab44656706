// @ts-check
// agent_timeline.js: an agent run's messages (one durable stream) as the timeline the agent
// page shows, apart from the page so `node --test web/tests/` can test it.
//
// The application's own messages are items as they come: `user` (the question), `tool_result`,
// `status`. A generation's messages (`{type: "token" | "delta" | "done" | "error", generation,
// ...}`) make one `generation` item, placed where its first message came; its answer (text,
// tool calls with growing arguments, finish reason) is accumulated by tokenrelay.js's
// AnswerBuilder, as for any generation stream. Messages of other types are left out.

import { AnswerBuilder } from "./tokenrelay.js";

/** @typedef {import("./tokenrelay.js").Answer} Answer */

/**
 * @typedef {{ kind: "user", text: string }} UserItem
 * @typedef {{ kind: "generation", id: string, answer: Answer, ended: boolean,
 *             error: { code: string, message: string } | null }} GenerationItem
 * @typedef {{ kind: "tool_result", toolCallId: string | null, name: string, content: string }} ToolResultItem
 * @typedef {{ kind: "status", text: string, detail: string | null }} StatusItem
 * @typedef {UserItem | GenerationItem | ToolResultItem | StatusItem} Item
 */

const GENERATION_TYPES = new Set(["token", "delta", "done", "error"]);

/** @param {unknown} value */
const text = (value) => (typeof value === "string" ? value : value == null ? "" : JSON.stringify(value));

export class Timeline {
  /** The items, in the order they began; an item changed is replaced by a new object. @type {Item[]} */
  items = [];
  /** @type {Map<string, { index: number, builder: AnswerBuilder }>} */ #generations = new Map();

  /**
   * Adds one message of the run; returns the index of the item it made or changed, or -1
   * when it changed none.
   * @param {any} message
   * @returns {number}
   */
  add(message) {
    if (message === null || typeof message !== "object" || Array.isArray(message)) return -1;
    const type = message.type;
    if (typeof message.generation === "string" && GENERATION_TYPES.has(type)) return this.#generation(message);
    switch (type) {
      case "user":
        return this.items.push({ kind: "user", text: text(message.text) }) - 1;
      case "tool_result":
        return this.items.push({
          kind: "tool_result",
          toolCallId: typeof message.tool_call_id === "string" ? message.tool_call_id : null,
          name: text(message.name),
          content: text(message.content),
        }) - 1;
      case "status":
        return this.items.push({ kind: "status", text: text(message.text), detail: typeof message.detail === "string" ? message.detail : null }) - 1;
      default:
        return -1;
    }
  }

  /** @param {Record<string, any>} message */
  #generation(message) {
    const { generation: id, ...event } = message;
    let known = this.#generations.get(id);
    if (!known) {
      const builder = new AnswerBuilder();
      known = { index: this.items.push({ kind: "generation", id, answer: builder.answer, ended: false, error: null }) - 1, builder };
      this.#generations.set(id, known);
    }
    const item = /** @type {GenerationItem} */ (this.items[known.index]);
    if (event.type === "error") {
      this.items[known.index] = { ...item, ended: true, error: { code: text(event.code) || "error", message: text(event.message) } };
    } else {
      const changed = known.builder.add(event);
      const ended = item.ended || event.type === "done";
      if (!changed && ended === item.ended) return -1;
      this.items[known.index] = { ...item, answer: known.builder.answer, ended };
    }
    return known.index;
  }
}

/**
 * JSON text as shown: pretty (two-space indent) once it parses as an object or array, else as
 * it is (arguments still streaming, or not JSON at all).
 * @param {string} raw
 * @returns {{ text: string, complete: boolean }}
 */
export function shownJson(raw) {
  try {
    const parsed = JSON.parse(raw);
    if (parsed !== null && typeof parsed === "object") return { text: JSON.stringify(parsed, null, 2), complete: true };
  } catch { /* partial: as it is */ }
  return { text: raw, complete: false };
}
