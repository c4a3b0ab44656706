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
export interface StreamErrorEvent {
  offset: string;
  type: "error";
  code: string;
  message: string;
  retryable: boolean;
  /** what the upstream itself answered, when it answered with an error */
  upstream?: { status?: number; error?: any; retry_after_s?: number };
}

/** A fragment of a tool call: the first carries id, type and name; later ones only arguments to append. */
export interface ToolCallFragment {
  index: number;
  id?: string | null;
  type?: string | null;
  function?: { name?: string | null; arguments?: string | null };
}

/**
 * Everything a chat-completion chunk carries for choice `choice` besides choice 0's plain text,
 * with the upstream's own field names. `null` values mean nothing; strings are fragments to
 * append; tool calls join by `index`.
 */
export interface DeltaEvent {
  offset: string;
  type: "delta";
  choice: number;
  role?: string | null;
  /** text of a choice other than 0, or of choice 0 when it comes with logprobs or opens the choice */
  content?: string | null;
  refusal?: string | null;
  tool_calls?: ToolCallFragment[] | null;
  /** the model's thinking (DeepSeek, vLLM) */
  reasoning_content?: string | null;
  /** the model's thinking (OpenRouter, Ollama) */
  reasoning?: string | null;
  logprobs?: { content?: any[] | null; refusal?: any[] | null } | null;
  /** for choices other than 0 (choice 0's ends the stream in `done`) */
  finish_reason?: string | null;
  /** the choice's keys beyond index, delta, logprobs and finish_reason (vLLM's stop_reason...) */
  choice_fields?: Record<string, any>;
  /** any other delta field the upstream sends (audio, annotations...) */
  [field: string]: any;
}

/**
 * An event of a stream created through `POST /v1/responses` (a `response` event): the Responses
 * API event as the upstream sent it, whose own `type` it keeps once parsed as
 * `{offset, type, ...data}` (`response.created`, `response.output_text.delta`,
 * `response.function_call_arguments.delta`, `response.completed`..., and the upstream's `error`
 * event, told from the stream's terminal `error` by its `sequence_number` and the lack of
 * `retryable`). Such a stream still ends with `done` or `error`.
 */
export interface ResponseEvent {
  offset: string;
  type: `response.${string}` | "error";
  sequence_number?: number;
  /** the text fragment of `*.delta` events */
  delta?: string;
  item_id?: string;
  output_index?: number;
  /** the output item of `response.output_item.added` / `.done` */
  item?: Record<string, any>;
  /** the Response object of `response.created`, `response.completed`... */
  response?: Record<string, any>;
  [field: string]: any;
}

/** The NDJSON shape of an event: `{offset, type, ...data}`. */
export type StreamEvent = TokenEvent | DeltaEvent | DoneEvent | StreamErrorEvent | ResponseEvent;

/** A tool call of a choice, as its fragments have built it so far. */
export interface ToolCall {
  /** its place among the choice's calls (0, 1...; a Responses stream's function calls too) */
  readonly index: number;
  /** null until its fragment arrives (a Responses function call's `call_id`) */
  readonly id: string | null;
  /** "function" */
  readonly type: string | null;
  /** the function's name ("" until it arrives) */
  readonly name: string;
  /** the arguments' JSON text so far: partial while the call streams, so parse it only once the choice has finished */
  readonly arguments: string;
}

export interface Logprobs {
  readonly content: readonly any[] | null;
  readonly refusal: readonly any[] | null;
}

/**
 * One choice of the answer so far. Snapshots are frozen plain data (JSON round-trips them):
 * a new object after each change to this choice, the same object while it does not change.
 */
export interface Choice {
  readonly index: number;
  /** "assistant" once the first delta said so */
  readonly role: string | null;
  /** the content ("" when none) */
  readonly text: string;
  /**
   * the model's thinking, from `reasoning_content` or `reasoning` ("" when none); a Responses
   * stream's reasoning summary (or reasoning text), its parts apart by a blank line
   */
  readonly reasoning: string;
  /** the refusal's text when the model refused; null otherwise */
  readonly refusal: string | null;
  /** the tool calls, in the order they began, arguments growing */
  readonly toolCalls: readonly ToolCall[];
  /** null while the choice streams; choice 0's comes with `done` (or the stream's status) */
  readonly finishReason: string | null;
  /** logprobs lists, concatenated; null when none came */
  readonly logprobs: Logprobs | null;
  /**
   * every delta field accumulated as the OpenAI SDKs do, with the upstream's names
   * (`content`, `refusal`, `tool_calls` with their `index`, `reasoning_content`, `audio`...):
   * what the fields above are read from, and whatever else the model streamed. A Responses
   * stream's are these chat fields (`role`, `content`, `refusal`, `reasoning`, `tool_calls`
   * whose entries also keep their item's `item_id` and `output_index`)
   */
  readonly message: Readonly<Record<string, any>>;
  /** the choice's other keys (`choice_fields` of its delta events), accumulated likewise */
  readonly choiceFields: Readonly<Record<string, any>>;
}

/**
 * The whole answer so far: choice 0's fields (what most pages show, the same as
 * `choices[0]` once that exists), every choice, and the usage once `done` brought it.
 * A Responses stream's answer has one choice: its output text, refusal, reasoning summary and
 * function calls; its finish reason comes with `response.completed` (`stop`),
 * `response.incomplete` (`length`, `content_filter`) or `done`, none with `response.failed`.
 */
export interface Answer extends Choice {
  /** every choice that has had an event, sorted by index */
  readonly choices: readonly Choice[];
  /** the usage, once `done` (or a Responses stream's last Response) brought it */
  readonly usage: Readonly<Record<string, any>> | null;
  /**
   * a Responses stream's Response object (`id`, `status`, `output`, `usage`, `error`...) as the
   * last event that carried one had it (`response.created`... `response.completed`); null for
   * other streams
   */
  readonly response: Readonly<Record<string, any>> | null;
}

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
  /** choice 0's text */
  text: string;
  finishReason: string | null;
  usage: Record<string, any> | null;
  /** the whole answer */
  answer: Answer;
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
  /**
   * the answer up to `offset`, as a previous reader's `answer` had it there (or its JSON round
   * trip, e.g. from sessionStorage): this reader continues it. Without it, a reader that starts
   * at an offset builds its answer from the events after that offset only.
   */
  answer?: Answer | null;
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
  /** choice 0's text so far, after each event that added to it */
  onText?: (textSoFar: string) => void;
  /**
   * the answer after each event that changed it (`token`, `delta`, `done`, a Responses event with
   * something to add; `event.choice` tells which choice a delta changed), or with `event` null
   * when the reader learnt the end otherwise (the stream's status after a 204, or stop() giving
   * up waiting)
   */
  onAnswer?: (answer: Answer, event: StreamEvent | null) => void;
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

/**
 * Merges a chat-completion `delta` into `acc`, in place, as the OpenAI SDKs accumulate chunks
 * (and shared/completion.py): strings concatenate, numbers add, objects merge, lists of
 * `{index}` objects merge by index, other lists extend; `index` and `type` are replaced;
 * `null` never overwrites. Returns `acc`.
 */
export declare function accumulateDelta(acc: Record<string, any>, delta: Record<string, any>): Record<string, any>;

/**
 * The Responses API type of an event parsed as `{offset, type, ...data}` (`response.…`, or
 * `error` for the upstream's own error event, which has a `sequence_number` and no
 * `retryable`), "response" for `{type: "response", ...}`; null for the other events.
 */
export declare function responseEventType(event: { type: string; [key: string]: any }): string | null;

/** Splits text chunks into complete lines ("\n", "\r\n" or "\r"), keeping the unfinished tail. */
export declare function lineSplitter(): (chunk: string) => string[];

/** Waits `ms`, or less if `signal` aborts first. */
export declare function defaultSleep(ms: number, signal: AbortSignal): Promise<unknown>;

/**
 * An answer built from a stream's events, in order (what StreamReader keeps): for events read
 * some other way, e.g. from the admin API or a stored NDJSON file. A Responses stream's events
 * (with their own `type`, `response.…`) make its one choice.
 */
export declare class AnswerBuilder {
  /** starts empty, or continues `answer` (a reader's `answer`, or its JSON round trip); TypeError if it is not one */
  constructor(answer?: Answer | null);
  /** adds one event (`{type, ...data}`, offset optional; a Responses event with its own type); returns whether the answer changed */
  add(event: { type: string; [key: string]: any }): boolean;
  /** ends the answer without a `done` event: choice 0's finish reason, the usage */
  end(finishReason: string | null, usage: Record<string, any> | null): void;
  /** choice 0's text */
  readonly text: string;
  /** the answer so far, frozen; the same object until the next change */
  readonly answer: Answer;
}

/** POST {baseUrl}/v1/streams; throws HttpError. */
export declare function createStream(options: CreateStreamOptions): Promise<CreatedStream>;

export declare class StreamReader implements AsyncIterable<StreamEvent> {
  constructor(options: StreamReaderOptions);
  readonly state: State;
  /** choice 0's text so far: every token, and the content of its delta events (a Responses stream's output text) */
  readonly text: string;
  /** the whole answer so far (a frozen snapshot; a new one after each change) */
  readonly answer: Answer;
  /** `answer.choices` */
  readonly choices: readonly Choice[];
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
