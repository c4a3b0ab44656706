// @ts-check
// durable_reader.js: follows a JSON durable stream (`/v1/ds/<path>`, the Durable Streams
// protocol) over SSE read with fetch, from an offset, until the stream is closed.
//
// Not EventSource: it reconnects by itself to the URL it was opened with, so from the offset
// that URL names, and the messages since would come twice. Here every reconnect asks from the
// last `streamNextOffset` received. The gateway sends each message as a `data` frame (a JSON
// array of one message) followed by a `control` frame (`{"streamNextOffset", "streamCursor",
// "upToDate"?, "streamClosed"?}`); the messages of a `data` frame count only once their
// `control` frame has come, and are handed over with its offset in one call (`onBatch`), so
// that whoever keeps both keeps them consistent. A `data` frame whose control never came (the
// connection broke between them) is read again from the offset before it.

import { defaultSleep, lineSplitter } from "./tokenrelay.js";

/**
 * @typedef {{ event: string, data: string }} SseFrame
 * @typedef {"connecting" | "streaming" | "reconnecting" | "done" | "failed"} ReaderState
 * @typedef {{ closed: boolean, upToDate: boolean }} BatchInfo
 * @typedef {object} DurableReaderOptions
 * @property {string} path the stream's path below /v1/ds/
 * @property {string} [baseUrl] "" = same origin
 * @property {string | null} [token] the stream's read token (`?token=`)
 * @property {string} [offset] where to read from: "-1" (the start) or an offset the stream gave
 * @property {(messages: any[], offset: string, info: BatchInfo) => void} onBatch the messages up to `offset` (none when a control frame only moves the offset)
 * @property {(state: ReaderState, detail: { attempt?: number, error?: unknown }) => void} [onState]
 * @property {typeof fetch} [fetch]
 * @property {(ms: number, signal: AbortSignal) => Promise<unknown>} [sleep]
 * @property {() => number} [random]
 */

/**
 * An SSE parser: give it the body's text as it comes, it returns the frames completed by it.
 * Lines end with "\n", "\r\n" or "\r"; `data` lines of one frame join with "\n"; comments
 * (":ping") and frames without data give nothing.
 * @returns {(chunk: string) => SseFrame[]}
 */
export function sseFrames() {
  const split = lineSplitter();
  let event = "";
  /** @type {string[]} */ let data = [];
  return (chunk) => {
    /** @type {SseFrame[]} */ const frames = [];
    for (const line of split(chunk)) {
      if (line === "") {
        if (data.length) frames.push({ event: event || "message", data: data.join("\n") });
        event = "";
        data = [];
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + (line[colon + 1] === " " ? 2 : 1));
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
    return frames;
  };
}

/** The read URL of a stream, each path segment escaped. @param {string} baseUrl @param {string} path @param {Record<string, string | null | undefined>} query */
export function streamUrl(baseUrl, path, query) {
  const segments = path.split("/").map(encodeURIComponent).join("/");
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) if (value != null) params.set(key, value);
  return `${baseUrl.replace(/\/+$/, "")}/v1/ds/${segments}?${params}`;
}

/** A refused read (4xx but 429): reading again would not help. */
export class ReadRefused extends Error {
  /** @param {number} status @param {string} message */
  constructor(status, message) {
    super(message);
    this.name = "ReadRefused";
    this.status = status;
  }
}

const BACKOFF = { initialMs: 250, maxMs: 8000, factor: 2, jitter: 0.5 };

export class DurableReader {
  #base; #path; #token; #fetch; #sleep; #random; #onBatch; #onState;
  #offset;
  #attempts = 0;
  #live = true;
  #abort = new AbortController();

  /** @param {DurableReaderOptions} options */
  constructor(options) {
    this.#base = options.baseUrl ?? "";
    this.#path = options.path;
    this.#token = options.token ?? null;
    this.#offset = options.offset ?? "-1";
    const fetchFn = options.fetch ?? globalThis.fetch;
    /** @type {typeof fetch} */ // called unbound: window.fetch refuses any other `this`
    this.#fetch = (input, init) => fetchFn(input, init);
    this.#sleep = options.sleep ?? defaultSleep;
    this.#random = options.random ?? Math.random;
    this.#onBatch = options.onBatch;
    this.#onState = options.onState ?? (() => {});
  }

  /** Where the next read starts: after the last message handed over. */
  get offset() { return this.#offset; }

  /** Stops reading (what was handed over stays handed over). */
  close() {
    this.#live = false;
    this.#abort.abort();
  }

  /**
   * Reads until the stream is closed (resolves), a read is refused (rejects with
   * `ReadRefused`) or `close()` (resolves); reconnects from the last offset after anything else.
   * @returns {Promise<void>}
   */
  async run() {
    this.#onState("connecting", { attempt: 0 });
    while (this.#live) {
      /** @type {unknown} */ let cause;
      /** @type {ReadRefused | null} */ let refused = null;
      let minDelayMs = 0;
      try {
        const url = streamUrl(this.#base, this.#path, { offset: this.#offset, live: "sse", token: this.#token });
        const res = await this.#fetch(url, { headers: { Accept: "text/event-stream" }, cache: "no-store", signal: this.#abort.signal });
        if (res.ok && res.body) {
          this.#onState("streaming", {});
          if (await this.#consume(res.body)) {
            this.#live = false;
            this.#onState("done", {});
            return;
          }
          cause = new Error("the response ended before the stream was closed");
        } else if (res.status === 429 || res.status >= 500) {
          cause = new Error(`HTTP ${res.status}`);
          minDelayMs = Number(res.headers.get("Retry-After") ?? 0) * 1000 || 0;
        } else {
          refused = new ReadRefused(res.status, await errorMessage(res));
        }
      } catch (error) {
        cause = error;
      }
      if (!this.#live) return;
      if (refused) {
        this.#live = false;
        this.#onState("failed", { error: refused });
        throw refused;
      }
      const { initialMs, maxMs, factor, jitter } = BACKOFF;
      const delayMs = Math.max(minDelayMs, Math.min(maxMs, initialMs * factor ** this.#attempts) * (1 - jitter * this.#random()));
      this.#onState("reconnecting", { attempt: this.#attempts++, error: cause });
      await this.#sleep(Math.round(delayMs), this.#abort.signal);
    }
  }

  /** Reads one response; whether it ended with the stream closed. @param {ReadableStream<Uint8Array>} body */
  async #consume(body) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    const parse = sseFrames();
    /** @type {any[]} */ let pending = [];
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || !this.#live) return false;
        for (const frame of parse(decoder.decode(value, { stream: true }))) {
          if (frame.event === "data") {
            const messages = JSON.parse(frame.data);
            if (!Array.isArray(messages)) throw new Error("a data frame of a JSON stream is an array");
            pending.push(...messages);
          } else if (frame.event === "control") {
            const control = JSON.parse(frame.data);
            if (typeof control?.streamNextOffset !== "string") throw new Error("a control frame without streamNextOffset");
            const closed = control.streamClosed === true;
            const messages = pending;
            pending = [];
            this.#offset = control.streamNextOffset;
            this.#attempts = 0;
            this.#onBatch(messages, this.#offset, { closed, upToDate: control.upToDate === true || closed });
            if (closed) return true;
            if (!this.#live) return false;
          }
        }
      }
    } finally {
      reader.cancel().catch(() => {}); // a frame cut in half is read again from the offset
    }
  }
}

/** @param {Response} res */
async function errorMessage(res) {
  try {
    const body = await res.json();
    return body?.error?.message ?? `HTTP ${res.status}`;
  } catch {
    return `HTTP ${res.status}`;
  }
}
