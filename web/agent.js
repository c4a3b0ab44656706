// @ts-check
// The agent page: starts a demo agent run (POST /demo/agent) and shows it as a timeline while
// it streams: the question, each generation (its text growing, its tool calls as cards with
// their arguments growing), the application's tool results, its status at the end.
//
// The run is one durable stream, followed from an offset (durable_reader.js). What it takes to
// resume lives in sessionStorage under the run's path (agent_saved.js): the read token, every
// message received and the offset after the last one, kept together. The URL names the run
// (`?run=<path>`), so a reload shows the messages kept at once and reads on from that offset:
// nothing is read twice, nothing is shown twice. Saved at most every SAVE_EVERY_MS, and when
// the page is hidden or unloaded; a new run forgets the tab's earlier ones. Should a run not
// fit in sessionStorage, only its path and token are kept: a reload reads it from its start.
//
// Everything from the stream is shown with textContent: the model's text is plain text here.
import { DurableReader } from "/web/durable_reader.js";
import { Timeline, shownJson } from "/web/agent_timeline.js";
import { newRun, parseRun, savedKey, storeRun } from "/web/agent_saved.js";

/** @typedef {import("/web/agent_timeline.js").Item} Item */
/** @typedef {import("/web/agent_timeline.js").GenerationItem} GenerationItem */
/** @typedef {import("/web/agent_saved.js").SavedRun} SavedRun */
/** @typedef {import("/web/tokenrelay.js").ToolCall} ToolCall */

const SAVE_EVERY_MS = 250;
const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const form = /** @type {HTMLFormElement} */ ($("ask"));
const question = /** @type {HTMLTextAreaElement} */ ($("question"));
const runButton = /** @type {HTMLButtonElement} */ ($("run"));
const list = $("timeline");
const empty = $("empty");
const state = $("state");
const pathLabel = $("run-path");
const offsetLabel = $("offset");

const LABELS = { connecting: "Connecting…", streaming: "Streaming", reconnecting: "Reconnecting…", done: "Done", failed: "Failed" };

/** @param {string} name @param {string} [label] */
function showState(name, label) {
  state.dataset.state = name;
  state.textContent = label ?? LABELS[/** @type {keyof LABELS} */ (name)] ?? name;
}

/** A template's element, cloned. @param {string} id */
function clone(id) {
  const template = /** @type {HTMLTemplateElement} */ ($(id));
  return /** @type {HTMLElement} */ (/** @type {DocumentFragment} */ (template.content.cloneNode(true)).firstElementChild);
}

/** @param {HTMLElement} root @param {string} selector */
const part = (root, selector) => /** @type {HTMLElement} */ (root.querySelector(selector));

/** Sets text only when it differs (a growing text is not laid out again for nothing). @param {HTMLElement} node @param {string} text */
function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

/** The page follows the run as it grows, while the reader is at its bottom. @param {() => void} change */
function keepPageBottom(change) {
  const box = document.scrollingElement ?? document.documentElement;
  const stick = box.scrollHeight - box.scrollTop - box.clientHeight < 24;
  change();
  if (stick) box.scrollTop = box.scrollHeight;
}

// ---------------------------------------------------------------------------------------------
// Showing the timeline: one node per item, updated in place as its item changes

/** @param {HTMLElement} card @param {ToolCall} call @param {boolean} closed no more fragments will come */
function showToolCall(card, call, closed) {
  card.dataset.index = String(call.index);
  setText(part(card, ".tool-name"), call.name || "…");
  setText(part(card, ".tool-id"), call.id ?? "");
  const { text, complete } = shownJson(call.arguments);
  card.dataset.complete = String(complete);
  setText(part(card, ".tool-args"), text);
  setText(part(card, ".tool-status"), complete ? "" : closed ? "arguments incomplete (not whole JSON)" : "writing arguments…");
}

/** @param {HTMLElement} node @param {GenerationItem} item */
function showGeneration(node, item) {
  const { answer } = item;
  node.dataset.generation = item.id;
  node.dataset.ended = String(item.ended);
  setText(part(node, ".generation-id"), item.id);
  setText(part(node, ".agent-text"), answer.text || answer.refusal || "");
  const calls = part(node, ".tool-calls");
  calls.hidden = answer.toolCalls.length === 0;
  answer.toolCalls.forEach((call, i) => {
    const card = /** @type {HTMLElement} */ (calls.children[i] ?? calls.appendChild(clone("tool-call-template")));
    showToolCall(card, call, item.ended || i < answer.toolCalls.length - 1);
  });
  const error = part(node, ".generation-error");
  error.hidden = item.error === null;
  if (item.error) setText(error, `The generation failed: ${item.error.code}${item.error.message ? ` (${item.error.message})` : ""}`);
}

/** A new node for an item. @param {Item} item */
function makeNode(item) {
  switch (item.kind) {
    case "user": {
      const node = clone("user-template");
      part(node, ".question").textContent = item.text;
      return node;
    }
    case "tool_result": {
      const node = clone("tool-result-template");
      part(node, ".tool-name").textContent = item.name;
      part(node, ".tool-id").textContent = item.toolCallId ?? "";
      part(node, ".tool-content").textContent = shownJson(item.content).text;
      return node;
    }
    case "status": {
      const node = clone("status-template");
      node.dataset.status = item.text;
      part(node, ".status-text").textContent = item.text;
      part(node, ".status-detail").textContent = item.detail ?? "";
      return node;
    }
    case "generation":
      return clone("generation-template");
  }
}

/** The timeline's nodes, by item index. */
class TimelineView {
  /** @type {HTMLElement[]} */ nodes = [];

  clear() {
    this.nodes = [];
    list.replaceChildren();
  }

  /** Shows item `index` of `items` (made, or updated if it is a generation). @param {Item[]} items @param {number} index */
  show(items, index) {
    const item = items[index];
    let node = this.nodes[index];
    if (!node) {
      node = this.nodes[index] = makeNode(item);
      list.append(node);
    }
    if (item.kind === "generation") showGeneration(node, item);
  }
}

// ---------------------------------------------------------------------------------------------
// The run: kept, shown, followed

const view = new TimelineView();
/** @type {DurableReader | null} */ let reader = null;
/** @type {SavedRun | null} */ let current = null;
/** @type {ReturnType<typeof setTimeout> | undefined} */ let saveTimer;

function flush() {
  clearTimeout(saveTimer);
  saveTimer = undefined;
  const run = current;
  if (!run) return;
  storeRun(run, (json) => sessionStorage.setItem(savedKey(run.path), json));
}
addEventListener("pagehide", flush);
document.addEventListener("visibilitychange", () => { if (document.visibilityState === "hidden") flush(); });

/** Shows `run` (what it has so far) and reads on from its offset until it is closed. @param {SavedRun} run */
function follow(run) {
  reader?.close();
  flush();
  current = run;
  view.clear();
  const timeline = new Timeline();
  keepPageBottom(() => {
    for (const message of run.messages) {
      const index = timeline.add(message);
      if (index >= 0) view.show(timeline.items, index);
    }
  });
  empty.hidden = true;
  pathLabel.textContent = run.path;
  offsetLabel.textContent = `offset ${run.offset}`;
  if (run.closed) {
    showState("done");
    return;
  }
  const following = new DurableReader({
    path: run.path,
    token: run.token,
    offset: run.offset,
    onBatch(messages, offset, { closed }) {
      if (reader !== following) return;
      run.messages.push(...messages);
      run.offset = offset;
      run.closed = closed;
      offsetLabel.textContent = `offset ${offset}`;
      keepPageBottom(() => {
        for (const message of messages) {
          const index = timeline.add(message);
          if (index >= 0) view.show(timeline.items, index);
        }
      });
      if (closed) flush();
      else saveTimer ??= setTimeout(flush, SAVE_EVERY_MS);
    },
    onState(name, detail) {
      if (reader !== following) return;
      if (name === "reconnecting") showState(name, `Reconnecting… (attempt ${(detail.attempt ?? 0) + 1})`);
      else if (name === "failed") showState(name, `Failed: ${/** @type {Error} */ (detail.error)?.message ?? "error"}`);
      else showState(name);
      runButton.disabled = name !== "done" && name !== "failed";
    },
  });
  reader = following;
  following.run().catch(() => {}); // shown through onState
}

/** A new run is the tab's only one kept: the runs before it would fill sessionStorage. @param {string} path */
function forgetOtherRuns(path) {
  try {
    for (let i = sessionStorage.length - 1; i >= 0; i--) {
      const key = sessionStorage.key(i);
      if (key?.startsWith(savedKey("")) && key !== savedKey(path)) sessionStorage.removeItem(key);
    }
  } catch { /* no storage: nothing kept */ }
}

form.addEventListener("submit", async (submitted) => {
  submitted.preventDefault();
  const text = question.value.trim();
  if (!text) return;
  runButton.disabled = true;
  showState("connecting", "Starting…");
  let started;
  try {
    const res = await fetch("/demo/agent", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ question: text }),
    });
    const body = await res.json().catch(() => null);
    if (!res.ok) throw new Error(body?.error?.message ?? `HTTP ${res.status}`);
    started = /** @type {{ path: string, read_token: string }} */ (body);
  } catch (error) {
    runButton.disabled = false;
    showState("failed", `Could not start: ${/** @type {Error} */ (error).message}`);
    return;
  }
  question.value = "";
  history.replaceState(null, "", `${location.pathname}?run=${encodeURIComponent(started.path)}`);
  const run = newRun(started.path, started.read_token);
  forgetOtherRuns(run.path);
  storeRun(run, (json) => sessionStorage.setItem(savedKey(run.path), json));
  follow(run);
});

question.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
});

// A run named in the URL: shown again from what this tab kept, resumed from its offset. One
// this tab did not keep (a link opened elsewhere) is read from its start, without a token:
// that works where durable streams are open to all (`tokenrelay dev`).
const named = new URLSearchParams(location.search).get("run");
if (named) {
  let kept = null;
  try { kept = parseRun(sessionStorage.getItem(savedKey(named)), named); } catch { /* no storage */ }
  follow(kept ?? newRun(named, null));
}
