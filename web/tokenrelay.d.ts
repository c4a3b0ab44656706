// Type declarations of tokenrelay.js, the browser client of a tokenrelay gateway.

export type State = "connecting" | "streaming" | "reconnecting" | "done" | "failed";
export type Transport = "ndjson" | "sse" | "eventsource";

export declare const States: Readonly<{
  CONNECTING: "connecting";
  STREAMING: "streaming";
  RECONNECTING: "reconnecting";
  DONE: "done";
  FAILED: "failed";
}>;

export interface TokenEvent { offset: string; type: "token"; text: string }
export interface DoneEvent {
  offset: string;
  type: "done";
  finish_reason: "stop" | "length" | "content_filter" | "tool_calls" | "cancelled" | (string & {});
  usage: Record<string, any> | null;
}
export interface StreamErrorEvent { offset: string; type: "error"; code: string; message: string; retryable: boolean }
/** The NDJSON shape of an event: `{offset, type, ...data}`. */
export type StreamEvent = TokenEvent | DoneEvent | StreamErrorEvent;

export interface BackoffOptions {
  /** first delay, default 250 */
  initialMs?: number;
  /** longest delay, default 10000 */
  maxMs?: number;
  /** growth per attempt, default 2 */
  factor?: number;
  /** delay * (1 - jitter * random()), default 0.5 */
  jitter?: number;
}

export interface StateDetail {
  /** when reconnecting: 0 for the first reconnect since the last event, 1 for the next… (the backoff exponent) */
  attempt?: number;
  /** the wait before the next attempt; null when EventSource reconnects by itself */
  delayMs?: number | null;
  /** why: the connection problem (reconnecting) or the TokenRelayError (failed) */
  error?: unknown;
}

export interface StreamResult {
  text: string;
  finishReason: string | null;
  usage: Record<string, any> | null;
}

export interface CreatedStream {
  id: string;
  status: string;
  created_at: number;
  read_token: string;
  events_url: string;
}

export interface CreateStreamOptions {
  /** gateway origin; "" = same origin */
  baseUrl?: string;
  /** the generation request: {model, messages, max_tokens?, temperature?, metadata?, ...} */
  body: Record<string, any>;
  /** sent as `Authorization: Bearer` */
  apiKey?: string;
  /** sent as `Idempotency-Key` */
  idempotencyKey?: string;
  fetch?: typeof fetch;
}

export interface StreamReaderOptions {
  streamId: string;
  baseUrl?: string;
  /** the stream's read token, sent as `?token=` */
  token?: string;
  /** sent as `Authorization: Bearer` when there is no token */
  apiKey?: string;
  /** read the events after this offset ("$" = only new ones); null = from the start */
  offset?: string | null;
  transport?: Transport;
  backoff?: BackoffOptions;
  /** how long stop() waits for the terminal event, default 3000 */
  stopTimeoutMs?: number;
  fetch?: typeof fetch;
  /** the EventSource class, for transport "eventsource" */
  EventSource?: any;
  /** resolves after ms, or early once signal aborts */
  sleep?: (ms: number, signal: AbortSignal) => Promise<unknown>;
  /** in [0, 1), for the jitter */
  random?: () => number;
  onEvent?: (event: StreamEvent) => void;
  onState?: (state: State, detail: StateDetail) => void;
  onText?: (textSoFar: string) => void;
}

export declare class TokenRelayError extends Error {
  constructor(message: string, info: { code: string; status?: number | null; retryable?: boolean });
  code: string;
  status: number | null;
  retryable: boolean;
}
/** A non-2xx answer: code and message from the JSON error body (or "http_<status>"), status the HTTP status. */
export declare class HttpError extends TokenRelayError {}
/** The stream's terminal `error` event: code and retryable from it, status null. */
export declare class StreamError extends TokenRelayError {}

/** POST {baseUrl}/v1/streams; throws HttpError. */
export declare function createStream(options: CreateStreamOptions): Promise<CreatedStream>;

export declare class StreamReader implements AsyncIterable<StreamEvent> {
  constructor(options: StreamReaderOptions);
  readonly state: State;
  /** all token texts so far */
  readonly text: string;
  /** offset of the last event received, else the starting offset */
  readonly offset: string | null;
  readonly finishReason: string | null;
  readonly usage: Record<string, any> | null;
  /** set when failed */
  readonly error: TokenRelayError | null;
  /** reconnect attempts since the last event received */
  readonly attempts: number;
  /** Begins reading (once); resolves on `done`, rejects with StreamError / HttpError (or code "closed" after close()). */
  start(): Promise<StreamResult>;
  /** The events received from now on; ends after the terminal event, throws on failure, ends quietly on close(). */
  [Symbol.asyncIterator](): AsyncIterableIterator<StreamEvent>;
  /** Cancels the generation, reads on until the terminal event or stopTimeoutMs; rejects if the cancel is refused. */
  stop(): Promise<void>;
  /** Stops reading without cancelling; no more reconnects; the state stays as it was. */
  close(): void;
}
