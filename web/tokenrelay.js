// @ts-check
/**
 * tokenrelay.js: the browser (and Node ≥ 20) client of a tokenrelay gateway. One dependency-free
 * ES module, usable as is from `<script type="module">`.
 *
 * Reconnect model. A stream is a sequence of events, each with an opaque, increasing offset,
 * ending with exactly one terminal event (`done` or `error`). The reader remembers the offset
 * of every event it hands out. Whenever the connection breaks (fetch rejects, the body errors,
 * the body ends before a terminal event, a 429/5xx answer) it waits a backoff delay and asks
 * again with `after=<last offset>`, so nothing is lost or repeated. The delay is
 * `min(maxMs, initialMs * factor ** attempt) * (1 - jitter * random())`, at least `Retry-After`;
 * `attempt` goes back to 0 whenever an event arrives. A 204 means the stream had already ended
 * at our offset: its status tells how. Other 4xx answers are final. Nothing reconnects after a
 * terminal event, `stop()` or `close()`. The "eventsource" transport lets the browser's
 * EventSource reconnect by itself (Last-Event-ID) and only steps in once it gives up (CLOSED).
 * Every event counts, whatever its type (`token`, `delta`, `response`...): the offset is the last one received.
 *
 * The answer. Besides choice 0's plain text (`text`, `onText`), the reader keeps the whole
 * answer the events carry (`answer`, `onAnswer`): for every choice its text, reasoning,
 * refusal, tool calls (arguments growing), finish reason and logprobs, accumulated as the OpenAI
 * SDKs accumulate chunks (`accumulateDelta`, the rules of shared/completion.py). A reader
 * created with `offset` and the `answer` a previous reader had at that offset continues it: the
 * events after the offset arrive exactly once, so nothing is counted twice.
 *
 * Responses streams. A stream created through `POST /v1/responses` holds `response` events: each
 * a Responses API event as the upstream sent it. Parsed from NDJSON or SSE (`{offset, type,
 * ...data}`), such an event's own `type` (`response.output_text.delta`...) is the one it keeps.
 * Its answer looks like a one-choice chat answer: the output text is the text, the refusal, the
 * reasoning (summary) and the function calls are choice 0's; `answer.response` is the Response
 * object as the last event that carried one had it.
 */

/**
 * @typedef {"connecting" | "streaming" | "reconnecting" | "done" | "failed"} State
 * @typedef {"ndjson" | "sse" | "eventsource"} Transport
 * @typedef {{ initialMs?: number, maxMs?: number, factor?: number, jitter?: number }} BackoffOptions
 * @typedef {{ offset: string, type: "token", text: string }} TokenEvent
 * @typedef {{ offset: string, type: "delta", choice: number, [field: string]: any }} DeltaEvent
 * @typedef {{ offset: string, type: "done", finish_reason: string, usage: Record<string, any> | null }} DoneEvent
 * @typedef {{ offset: string, type: "error", code: string, message: string, retryable: boolean, upstream?: Record<string, any> }} StreamErrorEvent
 * @typedef {{ offset: string, type: string, sequence_number?: number, [field: string]: any }} ResponseEvent a Responses API event, with its own type
 * @typedef {TokenEvent | DeltaEvent | DoneEvent | StreamErrorEvent | ResponseEvent} StreamEvent
 * @typedef {{ attempt?: number, delayMs?: number | null, error?: unknown }} StateDetail attempt: 0 for the first reconnect since the last event
 * @typedef {{ readonly index: number, readonly id: string | null, readonly type: string | null, readonly name: string, readonly arguments: string }} ToolCall
 * @typedef {{ readonly content: readonly any[] | null, readonly refusal: readonly any[] | null }} Logprobs
 * @typedef {object} Choice one choice of the answer, frozen
 * @property {number} index
 * @property {string | null} role
 * @property {string} text the content
 * @property {string} reasoning `reasoning_content` or `reasoning`
 * @property {string | null} refusal
 * @property {readonly ToolCall[]} toolCalls
 * @property {string | null} finishReason
 * @property {Logprobs | null} logprobs
 * @property {Readonly<Record<string, any>>} message every delta field accumulated, with the upstream's names
 * @property {Readonly<Record<string, any>>} choiceFields the choice's other keys (`choice_fields`)
 * @typedef {Choice & { readonly choices: readonly Choice[], readonly usage: Record<string, any> | null, readonly response: Readonly<Record<string, any>> | null }} Answer choice 0's fields, every choice, the usage, a Responses stream's Response object
 * @typedef {{ text: string, finishReason: string | null, usage: Record<string, any> | null, answer: Answer }} StreamResult
 * @typedef {(ms: number, signal: AbortSignal) => Promise<unknown>} Sleep
 * @typedef {{ id: string, status: string, created_at: number, read_token: string, events_url: string }} CreatedStream
 * @typedef {object} CreateStreamOptions
 * @property {string} [baseUrl] gateway origin, e.g. "https://relay.example.com"; "" = same origin
 * @property {Record<string, any>} body the generation request: {model, messages, ...}
 * @property {string} [apiKey] sent as `Authorization: Bearer`
 * @property {string} [idempotencyKey] sent as `Idempotency-Key`
 * @property {typeof fetch} [fetch]
 * @typedef {object} StreamReaderOptions
 * @property {string} streamId
 * @property {string} [baseUrl]
 * @property {string} [token] the stream's read token (sent as `?token=`)
 * @property {string} [apiKey] used as `Authorization: Bearer` when there is no token
 * @property {string | null} [offset] read the events after this offset; null = from the start
 * @property {Answer | null} [answer] the answer up to `offset` (a previous reader's `answer`), to continue it
 * @property {Transport} [transport]
 * @property {BackoffOptions} [backoff]
 * @property {number} [stopTimeoutMs] how long stop() waits for the terminal event
 * @property {typeof fetch} [fetch]
 * @property {any} [EventSource] the EventSource class (transport "eventsource")
 * @property {Sleep} [sleep] resolves after ms, or early when signal aborts
 * @property {() => number} [random] in [0, 1), for the jitter
 * @property {(event: StreamEvent) => void} [onEvent]
 * @property {(state: State, detail: StateDetail) => void} [onState]
 * @property {(text: string) => void} [onText]
 * @property {(answer: Answer, event: StreamEvent | null) => void} [onAnswer]
 */

export const States = Object.freeze({
  CONNECTING: "connecting", STREAMING: "streaming", RECONNECTING: "reconnecting", DONE: "done", FAILED: "failed",
});

const DEFAULT_BACKOFF = { initialMs: 250, maxMs: 10000, factor: 2, jitter: 0.5 };
const EVENTSOURCE_CLOSED = 2;
const noop = () => {};

export class TokenRelayError extends Error {
  /** @type {string} */ code;
  /** @type {number | null} */ status;
  /** @type {boolean} */ retryable;
  /** @param {string} message @param {{ code: string, status?: number | null, retryable?: boolean }} info */
  constructor(message, { code, status = null, retryable = false }) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.status = status;
    this.retryable = retryable;
  }
}
/** A non-2xx answer: code and message from the JSON error body, status the HTTP status. */
export class HttpError extends TokenRelayError {}
/** The stream's terminal `error` event. */
export class StreamError extends TokenRelayError {}

/** @param {Response} res @returns {Promise<HttpError>} */
async function httpError(res) {
  /** @type {any} */ let body = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  const code = body?.error?.code ?? `http_${res.status}`;
  const message = body?.error?.message ?? `HTTP ${res.status} ${res.statusText}`.trim();
  return new HttpError(message, { code, status: res.status, retryable: res.status === 429 || res.status >= 500 });
}

/** @param {any} data {code, message, retryable} of an error event or status */
function streamError(data) {
  return new StreamError(data?.message ?? "the stream failed", { code: data?.code ?? "internal", retryable: !!data?.retryable });
}

/** `Retry-After` (seconds or an HTTP date) in ms; 0 when absent. @param {string | null} value */
function retryAfterMs(value) {
  if (!value) return 0;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(value);
  return Number.isNaN(at) ? 0 : Math.max(0, at - Date.now());
}

/** Waits `ms`, or less if `signal` aborts first. @type {Sleep} */
export function defaultSleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve(undefined);
    const done = () => { clearTimeout(timer); signal.removeEventListener("abort", done); resolve(undefined); };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done);
  });
}

/** Splits text chunks into complete lines ("\n", "\r\n" or "\r"), keeping the unfinished tail. */
export function lineSplitter() {
  let rest = "";
  /** @param {string} chunk */
  return (chunk) => {
    let text = rest + chunk;
    const hold = text.endsWith("\r") ? "\r" : ""; // maybe the first half of "\r\n"
    if (hold) text = text.slice(0, -1);
    const lines = text.split(/\r\n|\r|\n/);
    rest = (lines.pop() ?? "") + hold;
    return lines;
  };
}

/**
 * NDJSON: one event a line; empty lines are keep-alives. A `response` event comes as
 * `{offset, type: "response", event: {...}}` and is read as SSE gives it: its own fields
 * (its own `type`) with the offset.
 * @param {string} line
 */
function parseNdjsonLine(line) {
  if (!line.trim()) return null;
  const parsed = JSON.parse(line);
  if (parsed.type === "response" && parsed.event && typeof parsed.event === "object") {
    return /** @type {StreamEvent} */ ({ offset: parsed.offset, ...parsed.event });
  }
  return /** @type {StreamEvent} */ (parsed);
}

/** SSE: fields accumulate until a blank line ends the frame; `id` (the offset) persists. */
function sseParser(/** @type {string | null} */ lastId) {
  let type = "";
  /** @type {string[]} */ let data = [];
  /** @param {string} line @returns {StreamEvent | null} */
  return (line) => {
    if (line === "") { // end of frame; frames without data (`retry:`) dispatch nothing
      const frame = data.length ? { offset: lastId, type: type || "message", ...JSON.parse(data.join("\n")) } : null;
      type = "";
      data = [];
      return frame;
    }
    if (line.startsWith(":")) return null; // a comment: ping
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + (line[colon + 1] === " " ? 2 : 1));
    if (field === "id") lastId = value;
    else if (field === "event") type = value;
    else if (field === "data") data.push(value);
    return null;
  };
}

// ---------------------------------------------------------------------------------------------
// The answer: every choice's deltas accumulated as the OpenAI SDKs (and shared/completion.py) do

/** @param {unknown} value @returns {value is Record<string, any>} */
const isObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);

/** A list of `{index, ...}` objects: merged by index, not appended. @param {unknown} value */
const isIndexed = (value) => Array.isArray(value) && value.length > 0 && value.every((item) => isObject(item) && Object.hasOwn(item, "index"));

/** A deep copy of JSON data. @template T @param {T} value @returns {T} */
function copy(value) {
  if (Array.isArray(value)) return /** @type {any} */ (value.map(copy));
  if (!isObject(value)) return value;
  /** @type {Record<string, any>} */ const out = {};
  for (const [key, item] of Object.entries(value)) if (key !== "__proto__") out[key] = copy(item);
  return /** @type {any} */ (out);
}

/** Freezes JSON data we made, all the way down. @template T @param {T} value @returns {T} */
function freeze(value) {
  if (value !== null && typeof value === "object" && !Object.isFrozen(value)) {
    for (const item of Object.values(value)) freeze(item);
    Object.freeze(value);
  }
  return value;
}

/**
 * Merges a chat-completion `delta` into `acc` (in place) the way the OpenAI SDKs accumulate
 * stream chunks (`accumulate_delta`): strings concatenate and numbers add up, objects merge,
 * lists of `{index, ...}` objects (tool calls) merge by `index`, other lists extend; `index`
 * and `type` are replaced; `null` never overwrites a value. The same rules as
 * `shared/completion.py`, so the browser and the server agree on every answer.
 * @param {Record<string, any>} acc
 * @param {Record<string, any>} delta
 * @returns {Record<string, any>} acc
 */
export function accumulateDelta(acc, delta) {
  for (const [key, value] of Object.entries(delta)) {
    if (key === "__proto__") continue;
    if (!Object.hasOwn(acc, key) || acc[key] == null) {
      if (!isIndexed(value)) {
        acc[key] = copy(value);
        continue;
      }
      acc[key] = [];
    }
    const current = acc[key];
    if (key === "index" || key === "type") acc[key] = value;
    else if (typeof current === "string" && typeof value === "string") acc[key] = current + value;
    else if (typeof current === "number" && typeof value === "number") acc[key] = current + value;
    else if (isObject(current) && isObject(value)) accumulateDelta(current, value);
    else if (Array.isArray(current) && Array.isArray(value)) {
      if (!isIndexed(value) || (current.length && !isIndexed(current))) {
        current.push(...copy(value));
        continue;
      }
      for (const entry of value) {
        const known = current.find((item) => item.index === entry.index);
        if (known) accumulateDelta(known, entry);
        else current.push(accumulateDelta({}, entry));
      }
    }
  }
  return acc;
}

// what a delta event has besides the choice's delta: the event's own keys, then the choice's
const NOT_MESSAGE = new Set(["offset", "type", "choice", "logprobs", "finish_reason", "choice_fields"]);
const EMPTY = freeze({ message: {}, choiceFields: {} });

/** One choice as accumulated so far (mutable; `snapshot()` gives the frozen view). */
class ChoiceState {
  /** @type {Record<string, any>} */ message = {};
  /** @type {{ content: any[] | null, refusal: any[] | null } | null} */ logprobs = null;
  /** @type {string | null} */ finishReason = null;
  /** @type {Record<string, any>} */ choiceFields = {};
  /** @type {Choice | null} */ #snapshot = null;

  /** @param {number} index */
  constructor(index) { this.index = index; }

  /** Choice 0's plain text (a token event). @param {string} text */
  addText(text) {
    const content = this.message.content;
    if (content == null) this.message.content = text;
    else if (typeof content === "string") this.message.content = content + text;
    else return;
    this.#snapshot = null;
  }

  /** A delta event's fields. @param {Record<string, any>} fields */
  add(fields) {
    /** @type {Record<string, any>} */ const delta = {};
    for (const [key, value] of Object.entries(fields)) if (!NOT_MESSAGE.has(key)) delta[key] = value;
    accumulateDelta(this.message, delta);
    const logprobs = fields.logprobs;
    if (isObject(logprobs)) {
      this.logprobs ??= { content: null, refusal: null };
      for (const key of /** @type {const} */ (["content", "refusal"])) {
        const items = logprobs[key];
        if (Array.isArray(items) && items.length) (this.logprobs[key] ??= []).push(...items.map((item) => freeze(copy(item))));
      }
    }
    if (fields.finish_reason) this.finishReason = fields.finish_reason;
    if (isObject(fields.choice_fields)) accumulateDelta(this.choiceFields, fields.choice_fields);
    this.#snapshot = null;
  }

  /** @param {string | null} reason */
  finish(reason) {
    this.finishReason = reason;
    this.#snapshot = null;
  }

  /**
   * Completes tool call `index` from a whole Responses `function_call` item: the id and name
   * it lacks, the item's arguments when they differ. Returns whether anything changed.
   * @param {number} index @param {Record<string, any>} item
   */
  completeCall(index, item) {
    /** @type {any[]} */ const calls = Array.isArray(this.message.tool_calls) ? this.message.tool_calls : [];
    const call = calls.find((entry) => isObject(entry) && entry.index === index);
    if (!call) return false;
    const fn = isObject(call.function) ? call.function : (call.function = {});
    let changed = false;
    if (call.id == null && typeof item.call_id === "string") { call.id = item.call_id; changed = true; }
    if (!fn.name && typeof item.name === "string" && item.name) { fn.name = item.name; changed = true; }
    if (typeof item.arguments === "string" && fn.arguments !== item.arguments) { fn.arguments = item.arguments; changed = true; }
    if (changed) this.#snapshot = null;
    return changed;
  }

  get reasoning() { return reasoningOf(this.message); }

  get text() {
    const content = this.message.content;
    return typeof content === "string" ? content : "";
  }

  /** @returns {Choice} */
  snapshot() {
    return (this.#snapshot ??= choiceView(this.index, this));
  }

  /** @param {Choice} saved a snapshot, or its JSON round trip */
  static restore(saved) {
    if (!isObject(saved) || typeof saved.index !== "number" || !isObject(saved.message)) {
      throw new TypeError("answer.choices holds a choice without index or message: pass a reader's answer");
    }
    const state = new ChoiceState(saved.index);
    state.message = copy(saved.message);
    const logprobs = saved.logprobs;
    if (isObject(logprobs)) {
      state.logprobs = {
        content: Array.isArray(logprobs.content) ? logprobs.content.map((item) => freeze(copy(item))) : null,
        refusal: Array.isArray(logprobs.refusal) ? logprobs.refusal.map((item) => freeze(copy(item))) : null,
      };
    }
    state.finishReason = typeof saved.finishReason === "string" ? saved.finishReason : null;
    state.choiceFields = isObject(saved.choiceFields) ? copy(saved.choiceFields) : {};
    return state;
  }
}

/** @param {unknown} value */
const stringOrNull = (value) => (typeof value === "string" ? value : null);

/** A message's reasoning: `reasoning_content` (DeepSeek, vLLM) or `reasoning`. @param {Record<string, any>} message */
const reasoningOf = (message) => [message.reasoning_content, message.reasoning].find((value) => typeof value === "string") ?? "";

/**
 * The frozen view of a choice.
 * @param {number} index
 * @param {{ message: Record<string, any>, logprobs?: ChoiceState["logprobs"], finishReason?: string | null, choiceFields: Record<string, any> }} state
 * @returns {Choice}
 */
function choiceView(index, { message, logprobs = null, finishReason = null, choiceFields }) {
  const reasoning = reasoningOf(message);
  /** @type {any[]} */ const calls = Array.isArray(message.tool_calls) ? message.tool_calls : [];
  return freeze({
    index,
    role: stringOrNull(message.role),
    text: typeof message.content === "string" ? message.content : "",
    reasoning,
    refusal: stringOrNull(message.refusal),
    toolCalls: calls.filter(isObject).map((call) => ({
      index: typeof call.index === "number" ? call.index : 0,
      id: stringOrNull(call.id),
      type: stringOrNull(call.type),
      name: stringOrNull(call.function?.name) ?? "",
      arguments: stringOrNull(call.function?.arguments) ?? "",
    })),
    finishReason,
    // the entries are frozen already and shared between snapshots: only the lists are new
    logprobs: logprobs && { content: logprobs.content?.slice() ?? null, refusal: logprobs.refusal?.slice() ?? null },
    message: copy(message),
    choiceFields: copy(choiceFields),
  });
}

// ---------------------------------------------------------------------------------------------
// Responses streams: their events make choice 0 of the answer

/** How an incomplete Response's reason reads as a finish reason (as the worker ends its stream). */
const INCOMPLETE_REASONS = new Map([["max_output_tokens", "length"], ["content_filter", "content_filter"]]);

/**
 * The Responses API type of an event, or null when it is none: parsed as `{offset, type, ...data}`,
 * a `response` event keeps its own type (`response.…`); the upstream's `error` event is told
 * from the stream's terminal `error` by its `sequence_number` and the lack of `retryable`.
 * `{type: "response", ...}` (the event's data without its own type) counts as one of no type.
 * @param {{ type: string, [key: string]: any }} event
 * @returns {string | null}
 */
export function responseEventType(event) {
  const type = event?.type;
  if (typeof type !== "string") return null;
  if (type.startsWith("response.") || type === "response") return type;
  if (type === "error" && typeof event.sequence_number === "number" && !Object.hasOwn(event, "retryable")) return type;
  return null;
}

/**
 * A stream's answer built from its events, in order: `token` events are choice 0's text,
 * `delta` events merge into their choice (`accumulateDelta`), `done` gives choice 0's finish
 * reason and the usage. A Responses stream's events make choice 0 as the OpenAI SDK reads
 * them: `response.output_text.delta` its text, `response.refusal.delta` its refusal,
 * `response.reasoning_summary_text.delta` and `response.reasoning_text.delta` its `reasoning`
 * (parts apart by a blank line), each `function_call` item (`response.output_item.added`) a
 * tool call (`call_id` its id, its `item_id` and `output_index` kept with it) whose arguments
 * grow by `response.function_call_arguments.delta`; `response.completed` / `incomplete` /
 * `failed` give the finish reason (`stop`, `length` or `content_filter`; none for a failure)
 * and the usage; `answer.response` is the Response object of the last event that carried one.
 * `StreamReader` keeps one; use it directly to rebuild an answer from events read some other
 * way (a stored NDJSON file, the admin API).
 */
export class AnswerBuilder {
  /** @type {Map<number, ChoiceState>} */ #choices = new Map();
  /** @type {ChoiceState[]} */ #ordered = [];
  /** @type {Record<string, any> | null} */ #usage = null;
  /** @type {Readonly<Record<string, any>> | null} */ #response = null;
  /** @type {Map<string, number>} a Responses stream's function calls by `item:<id>` and `output:<index>` */ #calls = new Map();
  /** @type {Answer | null} */ #answer = null;

  /** @param {Answer | null} [answer] continue this answer (a reader's `answer`, or its JSON round trip) */
  constructor(answer = null) {
    if (answer == null) return;
    if (!isObject(answer) || !Array.isArray(answer.choices)) throw new TypeError("answer must be a reader's answer (with choices)");
    for (const saved of answer.choices) this.#insert(ChoiceState.restore(saved));
    this.#usage = isObject(answer.usage) ? copy(answer.usage) : null;
    this.#response = isObject(answer.response) ? freeze(copy(answer.response)) : null;
    /** @type {any[]} */ const calls = this.#choices.get(0)?.message.tool_calls ?? [];
    if (Array.isArray(calls)) for (const call of calls) if (isObject(call)) this.#remember(call);
  }

  /** Adds one event; returns whether the answer changed (token, delta and done events do, and the Responses events with something to add). @param {{ type: string, [key: string]: any }} event */
  add(event) {
    if (event.type === "token") {
      if (typeof event.text !== "string") return false;
      this.#choice(0).addText(event.text);
    } else if (event.type === "delta") {
      this.#choice(typeof event.choice === "number" ? event.choice : 0).add(event);
    } else if (event.type === "done") {
      this.end(event.finish_reason ?? null, event.usage ?? null);
      return true;
    } else {
      const type = responseEventType(event);
      if (type === null || !this.#addResponseEvent(type, event)) return false;
    }
    this.#answer = null;
    return true;
  }

  /** One Responses API event; whether it changed the answer. @param {string} type @param {Record<string, any>} event */
  #addResponseEvent(type, event) {
    if (type === "response") return false; // its own type was lost: nothing to tell what it adds
    const delta = typeof event.delta === "string" ? event.delta : null;
    switch (type) {
      case "response.output_text.delta":
        if (delta === null) return false;
        this.#choice(0).addText(delta);
        return true;
      case "response.refusal.delta":
        if (delta === null) return false;
        this.#choice(0).add({ refusal: delta });
        return true;
      case "response.reasoning_summary_text.delta":
      case "response.reasoning_text.delta":
        if (delta === null) return false;
        this.#choice(0).add({ reasoning: delta });
        return true;
      case "response.reasoning_summary_part.added": // a new paragraph of the summary
        return this.#newReasoningPart();
      case "response.content_part.added":
        return event.part?.type === "reasoning_text" && this.#newReasoningPart();
      case "response.output_item.added":
        return this.#itemAdded(event);
      case "response.function_call_arguments.delta":
        if (delta === null) return false;
        this.#choice(0).add({ tool_calls: [{ index: this.#callIndex(event), function: { arguments: delta } }] });
        return true;
      case "response.output_item.done":
        return isObject(event.item) && event.item.type === "function_call" && this.#choice(0).completeCall(this.#callIndex(event), event.item);
      default:
        if (!isObject(event.response)) return false;
        this.#response = freeze(copy(event.response));
        if (type === "response.completed" || type === "response.incomplete" || type === "response.failed") {
          const reason = type === "response.completed" ? "stop"
            : type === "response.incomplete" ? INCOMPLETE_REASONS.get(event.response.incomplete_details?.reason) ?? "length" : null;
          if (reason) this.#choice(0).finish(reason);
          if (isObject(event.response.usage)) this.#usage = copy(event.response.usage);
        }
        return true;
    }
  }

  #newReasoningPart() {
    const choice = this.#choices.get(0);
    if (!choice?.reasoning) return false;
    choice.add({ reasoning: "\n\n" });
    return true;
  }

  /** `response.output_item.added`: the first item gives the role; a function call opens a tool call. @param {Record<string, any>} event */
  #itemAdded(event) {
    const item = event.item;
    if (!isObject(item)) return false;
    const choice = this.#choice(0);
    const role = choice.message.role == null; // a message's role, "assistant" for any other item
    if (role) choice.add({ role: typeof item.role === "string" ? item.role : "assistant" });
    if (item.type !== "function_call" || this.#known(event) != null) return role;
    const call = {
      index: this.#nextCallIndex(),
      id: stringOrNull(item.call_id),
      type: "function",
      function: { name: typeof item.name === "string" ? item.name : "", arguments: typeof item.arguments === "string" ? item.arguments : "" },
      item_id: stringOrNull(item.id),
      output_index: typeof event.output_index === "number" ? event.output_index : null,
    };
    this.#remember(call);
    choice.add({ tool_calls: [call] });
    return true;
  }

  /** The index of the tool call an event's item is (by `item_id`, else `output_index`); a new one if none. @param {Record<string, any>} event */
  #callIndex(event) {
    const known = this.#known(event);
    if (known != null) return known;
    const itemId = event.item_id ?? (isObject(event.item) ? event.item.id : null);
    const call = { // the reader began after the item was added: what the later events tell
      index: this.#nextCallIndex(),
      id: null,
      type: "function",
      function: { name: "", arguments: "" },
      item_id: stringOrNull(itemId),
      output_index: typeof event.output_index === "number" ? event.output_index : null,
    };
    this.#remember(call);
    this.#choice(0).add({ tool_calls: [call] });
    return call.index;
  }

  /** @param {Record<string, any>} event */
  #known(event) {
    const itemId = event.item_id ?? (isObject(event.item) ? event.item.id : null);
    // Some upstreams (GitHub Copilot) give every event a new id: the output index is the item's place
    return (typeof itemId === "string" ? this.#calls.get(`item:${itemId}`) : undefined)
      ?? (typeof event.output_index === "number" ? this.#calls.get(`output:${event.output_index}`) : undefined)
      ?? null;
  }

  /** @param {Record<string, any>} call a tool call of choice 0 that may be a Responses function call */
  #remember(call) {
    if (typeof call.index !== "number") return;
    if (typeof call.item_id === "string") this.#calls.set(`item:${call.item_id}`, call.index);
    if (typeof call.output_index === "number") this.#calls.set(`output:${call.output_index}`, call.index);
  }

  #nextCallIndex() {
    /** @type {any[]} */ const calls = this.#choices.get(0)?.message.tool_calls ?? [];
    return Array.isArray(calls) ? calls.reduce((next, call) => Math.max(next, typeof call?.index === "number" ? call.index + 1 : next), 0) : 0;
  }

  /** Ends the answer without a `done` event (the reader learnt the end from the stream's status). @param {string | null} finishReason @param {Record<string, any> | null} usage */
  end(finishReason, usage) {
    this.#choice(0).finish(finishReason);
    this.#usage = usage;
    this.#answer = null;
  }

  /** Choice 0's text, without building a snapshot. */
  get text() { return this.#choices.get(0)?.text ?? ""; }

  /** The answer so far: a frozen snapshot, new after every change; unchanged choices keep their objects. @returns {Answer} */
  get answer() {
    if (!this.#answer) {
      const choices = this.#ordered.map((choice) => choice.snapshot());
      const first = this.#choices.get(0)?.snapshot() ?? choiceView(0, EMPTY);
      this.#answer = Object.freeze({ ...first, choices: Object.freeze(choices), usage: freeze(copy(this.#usage)), response: this.#response });
    }
    return this.#answer;
  }

  /** @param {number} index */
  #choice(index) {
    return this.#choices.get(index) ?? this.#insert(new ChoiceState(index));
  }

  /** @param {ChoiceState} state */
  #insert(state) {
    if (this.#choices.has(state.index)) throw new TypeError(`answer.choices holds choice ${state.index} twice`);
    this.#choices.set(state.index, state);
    const at = this.#ordered.findIndex((choice) => choice.index > state.index);
    this.#ordered.splice(at < 0 ? this.#ordered.length : at, 0, state);
    return state;
  }
}

/** POST {baseUrl}/v1/streams. @param {CreateStreamOptions} options @returns {Promise<CreatedStream>} */
export async function createStream({ baseUrl = "", body, apiKey, idempotencyKey, fetch = globalThis.fetch }) {
  /** @type {Record<string, string>} */
  const headers = { "Content-Type": "application/json", Accept: "application/json" };
  if (apiKey) headers.Authorization = `Bearer ${apiKey}`;
  if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
  const res = await fetch(`${baseUrl.replace(/\/+$/, "")}/v1/streams`, { method: "POST", headers, body: JSON.stringify(body) });
  if (!res.ok) throw await httpError(res);
  return res.json();
}

export class StreamReader {
  #base; #id; #token; #apiKey; #transport; #delays; #stopTimeoutMs; #fetch; #EventSource; #sleep; #random;
  #onEvent; #onState; #onText; #onAnswer; #builder;
  /** @type {State} */ #state = States.CONNECTING;
  /** @type {string | null} */ #offset;
  /** @type {string | null} */ #finishReason = null;
  /** @type {Record<string, any> | null} */ #usage = null;
  /** @type {TokenRelayError | null} */ #error = null;
  #attempts = 0;
  #started = false;
  #closed = false;
  #abort = new AbortController();
  /** @type {ReadableStreamDefaultReader<Uint8Array> | null} */ #reader = null;
  /** @type {any} */ #es = null;
  /** @type {Set<(event?: StreamEvent) => void>} */ #listeners = new Set(); // the iterators: an event, or a wake-up
  /** @type {Promise<StreamResult>} */ #promise;
  /** @type {Promise<void>} */ #settled;
  /** @type {(result: StreamResult) => void} */ #resolve = noop;
  /** @type {(error: Error) => void} */ #reject = noop;

  /** @param {StreamReaderOptions} options */
  constructor(options) {
    const { baseUrl = "", streamId, token, apiKey, offset = null, transport = "ndjson", backoff, stopTimeoutMs = 3000 } = options;
    if (!streamId) throw new TypeError("streamId is required");
    if (!["ndjson", "sse", "eventsource"].includes(transport)) throw new TypeError(`unknown transport ${transport}`);
    this.#base = baseUrl.replace(/\/+$/, "");
    this.#id = streamId;
    this.#token = token;
    this.#apiKey = apiKey;
    this.#offset = offset;
    this.#transport = transport;
    this.#delays = { ...DEFAULT_BACKOFF, ...backoff };
    this.#stopTimeoutMs = stopTimeoutMs;
    const fetchFn = options.fetch ?? globalThis.fetch;
    /** @type {typeof fetch} */ // called unbound: window.fetch refuses any other `this`
    this.#fetch = (input, init) => fetchFn(input, init);
    this.#EventSource = options.EventSource ?? /** @type {any} */ (globalThis).EventSource;
    if (transport === "eventsource" ? !this.#EventSource : !fetchFn) throw new TypeError(`transport ${transport} needs ${transport === "eventsource" ? "EventSource" : "fetch"}`);
    this.#sleep = options.sleep ?? defaultSleep;
    this.#random = options.random ?? Math.random;
    this.#onEvent = options.onEvent;
    this.#onState = options.onState;
    this.#onText = options.onText;
    this.#onAnswer = options.onAnswer;
    this.#builder = new AnswerBuilder(options.answer);
    this.#promise = new Promise((resolve, reject) => { this.#resolve = resolve; this.#reject = reject; });
    this.#promise.catch(noop); // callers that only use callbacks get no unhandled rejection
    this.#settled = this.#promise.then(noop, noop);
  }

  get state() { return this.#state; }
  get text() { return this.#builder.text; }
  get answer() { return this.#builder.answer; }
  get choices() { return this.#builder.answer.choices; }
  get offset() { return this.#offset; }
  get finishReason() { return this.#finishReason; }
  get usage() { return this.#usage; }
  get error() { return this.#error; }
  get attempts() { return this.#attempts; }

  /** Begins reading (once). @returns {Promise<StreamResult>} */
  start() {
    if (!this.#started && !this.#closed) {
      this.#started = true;
      this.#call(this.#onState, States.CONNECTING, { attempt: 0 });
      if (this.#transport === "eventsource") this.#openEventSource();
      else this.#runFetch().catch((e) => this.#fail(e instanceof TokenRelayError ? e : new TokenRelayError(String(e), { code: "internal" })));
    }
    return this.#promise;
  }

  /** The events received from now on, ending after the terminal one. @returns {AsyncIterableIterator<StreamEvent>} */
  [Symbol.asyncIterator]() {
    /** @type {StreamEvent[]} */ const queue = [];
    /** @type {() => void} */ let wake = noop;
    const listener = (/** @type {StreamEvent | undefined} */ event) => { if (event) queue.push(event); wake(); };
    this.#listeners.add(listener);
    const unsubscribe = () => this.#listeners.delete(listener);
    let thrown = false;
    this.start();
    /** @type {AsyncIterableIterator<StreamEvent>} */
    const iterator = {
      next: async () => {
        for (;;) {
          const event = queue.shift();
          if (event) return { value: event, done: false };
          if (!this.#live) {
            unsubscribe();
            if (this.#error && !thrown) { thrown = true; throw this.#error; }
            return { value: undefined, done: true };
          }
          await new Promise((resolve) => { wake = () => resolve(undefined); });
        }
      },
      return: async () => { unsubscribe(); queue.length = 0; return { value: undefined, done: true }; },
      [Symbol.asyncIterator]() { return iterator; },
    };
    return iterator;
  }

  /** Cancels the generation and reads on until its terminal event (at most stopTimeoutMs). */
  async stop() {
    if (!this.#live) return;
    this.start();
    try {
      await this.#cancel();
    } catch (error) { // the generation goes on: stop reading, leave the state as it is
      this.close();
      throw error;
    }
    if (this.#live) {
      const wait = new AbortController();
      await Promise.race([this.#settled, this.#sleep(this.#stopTimeoutMs, wait.signal).catch(noop)]);
      wait.abort();
    }
    if (this.#live) this.#finish("cancelled", null); // timed out: what we have is what there is
  }

  /** Stops reading without cancelling the generation; the state stays as it was. */
  close() {
    if (!this.#live) return;
    this.#closed = true;
    this.#halt();
    this.#reject(new TokenRelayError("the reader was closed", { code: "closed" }));
    this.#wakeAll();
  }

  get #live() { return !this.#closed && this.#state !== States.DONE && this.#state !== States.FAILED; }

  /** @param {string} suffix @param {Record<string, string | null>} [params] */
  #url(suffix, params = {}) {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) if (value != null) query.set(key, value);
    if (this.#token) query.set("token", this.#token);
    const qs = query.toString();
    return `${this.#base}/v1/streams/${encodeURIComponent(this.#id)}${suffix}${qs ? `?${qs}` : ""}`;
  }

  /** @param {string} accept */
  #headers(accept) {
    /** @type {Record<string, string>} */ const headers = { Accept: accept };
    if (this.#apiKey && !this.#token) headers.Authorization = `Bearer ${this.#apiKey}`;
    return headers;
  }

  /** @param {Function | undefined} fn @param {...any} args */
  #call(fn, ...args) {
    try { fn?.(...args); } catch (error) { queueMicrotask(() => { throw error; }); } // a caller's bug is not a network failure
  }

  /** @param {State} state @param {StateDetail} [detail] */
  #setState(state, detail = {}) {
    if (state === this.#state && state !== States.RECONNECTING) return;
    this.#state = state;
    this.#call(this.#onState, state, detail);
  }

  /** Hands out one event and remembers its offset. @param {StreamEvent} event */
  #receive(event) {
    if (!this.#live) return;
    if (event.offset != null) this.#offset = event.offset;
    this.#attempts = 0;
    const text = this.#builder.text;
    const changed = this.#builder.add(event);
    this.#call(this.#onEvent, event);
    for (const listener of this.#listeners) listener(event);
    if (this.#builder.text !== text) this.#call(this.#onText, this.#builder.text);
    if (changed && this.#onAnswer) this.#call(this.#onAnswer, this.#builder.answer, event);
    if (event.type === "done") this.#finish(event.finish_reason, event.usage ?? null, true);
    else if (event.type === "error" && responseEventType(event) === null) this.#fail(streamError(event)); // not the upstream's own error event
  }

  /** @param {string | null} reason @param {Record<string, any> | null} usage @param {boolean} [fromEvent] the done event, which the answer has already */
  #finish(reason, usage, fromEvent = false) {
    if (!this.#live) return;
    this.#finishReason = reason;
    this.#usage = usage;
    if (!fromEvent) { // the status told the end (a 204), or stop() gave up waiting
      this.#builder.end(reason, usage);
      if (this.#onAnswer) this.#call(this.#onAnswer, this.#builder.answer, null);
    }
    this.#halt();
    this.#setState(States.DONE);
    this.#resolve({ text: this.#builder.text, finishReason: reason, usage, answer: this.#builder.answer });
    this.#wakeAll();
  }

  /** @param {TokenRelayError} error */
  #fail(error) {
    if (!this.#live) return;
    this.#error = error;
    this.#halt();
    this.#setState(States.FAILED, { error });
    this.#reject(error);
    this.#wakeAll();
  }

  #wakeAll() { for (const listener of this.#listeners) listener(); }

  /** Aborts the fetch, any backoff sleep, the body being read and the EventSource. */
  #halt() {
    this.#abort.abort();
    this.#reader?.cancel().catch(noop);
    this.#es?.close();
    this.#es = null;
  }

  /** Waits before the next reconnect; detail.attempt is the 0-based index of this one, `attempts` counts them. @param {unknown} cause @param {number} minMs */
  async #backoff(cause, minMs) {
    const { initialMs, maxMs, factor, jitter } = this.#delays;
    const base = Math.min(maxMs, initialMs * factor ** this.#attempts);
    const delayMs = Math.round(Math.max(minMs, base * (1 - jitter * this.#random())));
    this.#setState(States.RECONNECTING, { attempt: this.#attempts++, delayMs, error: cause });
    await this.#sleep(delayMs, this.#abort.signal).catch(noop);
  }

  /** The fetch transports: connect, read, and reconnect until a terminal state. */
  async #runFetch() {
    const format = this.#transport === "sse" ? "sse" : "ndjson";
    const accept = format === "sse" ? "text/event-stream" : "application/x-ndjson";
    while (this.#live) {
      /** @type {unknown} */ let cause;
      let minDelayMs = 0;
      try {
        const url = this.#url("/events", { format, after: this.#offset });
        const res = await this.#fetch(url, { headers: this.#headers(accept), signal: this.#abort.signal });
        if (res.status === 200 && res.body) {
          this.#setState(States.STREAMING);
          await this.#consume(res.body, format);
          cause = new TokenRelayError("the response ended before the terminal event", { code: "incomplete", retryable: true });
        } else if (res.status === 204) {
          cause = this.#finishFromStatus(await this.#status());
        } else {
          const error = await httpError(res);
          if (!error.retryable) return this.#fail(error);
          cause = error;
          minDelayMs = retryAfterMs(res.headers.get("Retry-After"));
        }
      } catch (error) {
        if (error instanceof HttpError && !error.retryable) return this.#fail(error);
        cause = error;
      }
      if (this.#live) await this.#backoff(cause, minDelayMs);
    }
  }

  /** Reads one response body, event by event. @param {ReadableStream<Uint8Array>} body @param {string} format */
  async #consume(body, format) {
    const reader = (this.#reader = body.getReader());
    const decoder = new TextDecoder();
    const split = lineSplitter();
    const parse = format === "sse" ? sseParser(this.#offset) : parseNdjsonLine;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || !this.#live) return;
        for (const line of split(decoder.decode(value, { stream: true }))) {
          const event = parse(line);
          if (event) this.#receive(event);
          if (!this.#live) return;
        }
      }
    } finally {
      this.#reader = null;
      reader.cancel().catch(noop); // an incomplete tail is dropped: it is read again from the offset
    }
  }

  /** GET {baseUrl}/v1/streams/{id}. @returns {Promise<any>} */
  async #status() {
    const res = await this.#fetch(this.#url(""), { headers: this.#headers("application/json"), signal: this.#abort.signal });
    if (!res.ok) throw await httpError(res);
    return res.json();
  }

  /** Ends the reader as its status says; returns why not when the stream is not final. @param {any} status */
  #finishFromStatus(status) {
    if (status.status === "failed") this.#fail(streamError(status.error));
    else if (status.status === "completed" || status.status === "cancelled") {
      this.#finish(status.finish_reason ?? (status.status === "cancelled" ? "cancelled" : null), status.usage ?? null);
    } else return new TokenRelayError(`the stream is ${status.status}`, { code: "not_finished", retryable: true });
    return null;
  }

  /** POST {baseUrl}/v1/streams/{id}/cancel. */
  async #cancel() {
    const res = await this.#fetch(this.#url("/cancel"), { method: "POST", headers: this.#headers("application/json") });
    if (!res.ok) throw await httpError(res);
  }

  /** The eventsource transport: named events; EventSource reconnects by itself until CLOSED. */
  #openEventSource() {
    if (!this.#live) return;
    const es = new this.#EventSource(this.#url("/events", { after: this.#offset }));
    this.#es = es;
    const current = () => this.#es === es && this.#live;
    /** @param {string} type @param {any} message */
    const onMessage = (type, message) => {
      if (!current()) return;
      try {
        this.#receive({ offset: message.lastEventId || this.#offset, type, ...JSON.parse(message.data) });
      } catch (error) { // not JSON: treat as a broken connection
        this.#onEventSourceError(es, error, true);
      }
    };
    es.addEventListener("open", () => { if (current()) this.#setState(States.STREAMING); });
    for (const type of ["token", "delta", "response", "done"]) es.addEventListener(type, (/** @type {any} */ m) => onMessage(type, m));
    es.addEventListener("error", (/** @type {any} */ ev) => {
      if (typeof ev?.data === "string") onMessage("error", ev); // the stream's terminal error event
      else if (current()) this.#onEventSourceError(es, ev, es.readyState === EVENTSOURCE_CLOSED);
    });
  }

  /** @param {any} es @param {unknown} cause @param {boolean} closed whether EventSource gave up */
  #onEventSourceError(es, cause, closed) {
    if (!closed) { // EventSource retries by itself, with Last-Event-ID
      this.#setState(States.RECONNECTING, { attempt: this.#attempts++, delayMs: null, error: cause });
      return;
    }
    es.close();
    this.#es = null;
    this.#reconnectEventSource(cause).catch((error) => this.#fail(error));
  }

  /** After EventSource gave up (an error answer, a 204): back off, look at the status, reopen. @param {unknown} cause */
  async #reconnectEventSource(cause) {
    await this.#backoff(cause, 0);
    if (this.#live) {
      try {
        const status = await this.#status(); // what the EventSource could not tell us
        const ended = ["completed", "cancelled", "failed"].includes(status.status);
        if (ended && (this.#offset === "$" || this.#offset === status.last_offset)) this.#finishFromStatus(status); // a 204
      } catch (error) {
        if (error instanceof HttpError && !error.retryable) return this.#fail(error);
      }
    }
    this.#openEventSource();
  }
}
