// Unit tests of web/tokenrelay.js: `node --test web/tests/`. Fake fetch answers real Response
// objects whose ReadableStream bodies the tests control; sleep and random are injected.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  States, TokenRelayError, HttpError, StreamError, createStream, StreamReader, AnswerBuilder, accumulateDelta, responseEventType,
} from "../tokenrelay.js";

const enc = new TextEncoder();
const nd = (event) => JSON.stringify(event) + "\n";
const tok = (offset, text) => ({ offset, type: "token", text });
const done = (offset, finish_reason = "stop", usage = null) => ({ offset, type: "done", finish_reason, usage });
const tick = () => new Promise((resolve) => setImmediate(resolve));
async function waitFor(condition, what = "condition") {
  for (let i = 0; i < 200; i++) {
    if (condition()) return;
    await tick();
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** A body sending `chunks` (strings or bytes), then ending: "close", "error" or "hang". */
function body(chunks, end = "close") {
  let i = 0;
  return new ReadableStream({
    pull(controller) {
      if (i < chunks.length) {
        const chunk = chunks[i++];
        controller.enqueue(typeof chunk === "string" ? enc.encode(chunk) : chunk);
      } else if (end === "close") controller.close();
      else if (end === "error") controller.error(new TypeError("network error"));
      else return new Promise(() => {});
    },
  });
}

/** A body the test writes to as it goes. */
function liveBody() {
  let controller;
  const stream = new ReadableStream({ start(c) { controller = c; } });
  return { stream, push: (text) => controller.enqueue(enc.encode(text)), close: () => controller.close() };
}

const ok = (stream) => new Response(stream, { status: 200, headers: { "Content-Type": "application/x-ndjson" } });
const json = (status, value, headers = {}) =>
  new Response(JSON.stringify(value), { status, headers: { "Content-Type": "application/json", ...headers } });
const apiError = (status, code, message, headers) => json(status, { error: { code, message } }, headers);

/** fetch answering `answers` in order (a Response, or a function of (url, init)); then a 400. */
function fakeFetch(...answers) {
  const calls = [];
  const fetch = async (url, init = {}) => {
    calls.push({ url: String(url), init });
    const answer = answers.shift() ?? apiError(400, "test_exhausted", "no more answers");
    return typeof answer === "function" ? answer(url, init) : answer;
  };
  fetch.calls = calls;
  return fetch;
}

/** sleep recording its delays; resolves at once, or (hang) only when aborted. */
function fakeSleep({ hang = () => false } = {}) {
  const delays = [];
  const signals = [];
  const sleep = (ms, signal) => {
    delays.push(ms);
    signals.push(signal);
    if (!hang(ms)) return Promise.resolve();
    return new Promise((resolve) => signal.addEventListener("abort", resolve));
  };
  return Object.assign(sleep, { delays, signals });
}

/** A start() result without its answer, after checking that the answer is the reader's. */
function outcome({ answer, ...rest }, r) {
  assert.equal(answer, r.answer, "the result's answer is the reader's");
  assert.equal(answer.text, rest.text);
  assert.equal(answer.finishReason, rest.finishReason);
  return rest;
}

function reader(options) {
  const states = [];
  const events = [];
  const texts = [];
  const r = new StreamReader({
    baseUrl: "http://gw", streamId: "s1", token: "tk", sleep: fakeSleep(), random: () => 0,
    onState: (state, detail) => states.push([state, detail]),
    onEvent: (event) => events.push(event),
    onText: (text) => texts.push(text),
    ...options,
  });
  return Object.assign(r, { states, events, texts, stateNames: () => states.map(([s]) => s) });
}

/** Splits bytes at the given indexes. */
function cut(bytes, ...at) {
  const points = [0, ...at, bytes.length];
  return points.slice(1).map((end, i) => bytes.slice(points[i], end));
}

test("offsets survive a body cut mid-line and mid-UTF-8 character: nothing lost or repeated", async () => {
  const first = enc.encode(nd(tok("1-0", "Hé")) + nd(tok("2-0", "llo ")) + nd(tok("3-0", "wörld")));
  const e = first.indexOf(0xc3); // first byte of "é"
  const o = first.lastIndexOf(0xc3); // first byte of "ö", in the line that is cut
  const fetch = fakeFetch(
    ok(body([...cut(first.slice(0, o + 1), 10, e + 1)], "error")),
    ok(body([nd(tok("3-0", "wörld")), "\n", nd(tok("4-0", "!")), nd(done("5-0"))])),
  );
  const r = reader({ fetch });
  const result = await r.start();
  assert.equal(result.text, "Héllo wörld!");
  assert.equal(r.text, "Héllo wörld!");
  assert.deepEqual(r.events.map((ev) => ev.offset), ["1-0", "2-0", "3-0", "4-0", "5-0"]);
  assert.equal(fetch.calls.length, 2);
  assert.equal(fetch.calls[0].url, "http://gw/v1/streams/s1/events?format=ndjson&token=tk");
  assert.equal(fetch.calls[1].url, "http://gw/v1/streams/s1/events?format=ndjson&after=2-0&token=tk");
  assert.equal(fetch.calls[0].init.headers.Accept, "application/x-ndjson");
  assert.equal(r.offset, "5-0");
  assert.deepEqual(r.texts, ["Hé", "Héllo ", "Héllo wörld", "Héllo wörld!"]);
});

test("reconnects after fetch rejects", async () => {
  const fetch = fakeFetch(
    () => { throw new TypeError("fetch failed"); },
    ok(body([nd(tok("1-0", "a")), nd(done("2-0"))])),
  );
  const r = reader({ fetch });
  await r.start();
  assert.deepEqual(r.stateNames(), ["connecting", "reconnecting", "streaming", "done"]);
  const [, detail] = r.states[1];
  assert.equal(detail.attempt, 0);
  assert.equal(detail.delayMs, 250);
  assert.ok(detail.error instanceof TypeError);
  assert.ok(!fetch.calls[1].url.includes("after="), "no offset yet: read from the start");
  assert.equal(r.text, "a");
});

test("reconnects from the last offset after a body that ends without a terminal event", async () => {
  const fetch = fakeFetch(
    ok(body([nd(tok("1-0", "a")), "\n\n"])),
    ok(body([nd(tok("2-0", "b")), nd(done("3-0"))])),
  );
  const r = reader({ fetch });
  await r.start();
  assert.match(fetch.calls[1].url, /[?&]after=1-0&/);
  assert.equal(r.text, "ab");
  assert.deepEqual(r.stateNames(), ["connecting", "streaming", "reconnecting", "streaming", "done"]);
});

test("backoff delays grow to maxMs, with jitter from random", async () => {
  for (const [random, expected] of [
    [() => 0, [250, 500, 1000, 2000, 4000, 8000, 10000, 10000]],
    [() => 1, [125, 250, 500, 1000, 2000, 4000, 5000, 5000]],
  ]) {
    const failures = expected.map(() => () => Promise.reject(new TypeError("down")));
    const sleep = fakeSleep();
    const r = reader({ fetch: fakeFetch(...failures, ok(body([nd(done("1-0"))]))), sleep, random });
    await r.start();
    assert.deepEqual(sleep.delays, expected);
    assert.deepEqual(r.states.filter(([s]) => s === "reconnecting").map(([, d]) => d.attempt), [0, 1, 2, 3, 4, 5, 6, 7]);
  }
});

test("backoff restarts from initialMs after an event arrives", async () => {
  const down = () => Promise.reject(new TypeError("down"));
  const sleep = fakeSleep();
  const r = reader({
    fetch: fakeFetch(down, down, ok(body([nd(tok("1-0", "x"))])), down, ok(body([nd(done("2-0"))]))),
    sleep,
    backoff: { initialMs: 100, factor: 3 },
  });
  await r.start();
  assert.deepEqual(sleep.delays, [100, 300, 100, 300]);
  assert.equal(r.attempts, 0);
});

test("Retry-After of a 503 or 429 is the delay's lower bound", async () => {
  const sleep = fakeSleep();
  const fetch = fakeFetch(
    apiError(503, "redis_unavailable", "try later", { "Retry-After": "2" }),
    apiError(429, "rate_limited", "slow down", { "Retry-After": "1" }),
    new Response("oops", { status: 502 }),
    ok(body([nd(done("1-0"))])),
  );
  const r = reader({ fetch, sleep });
  await r.start();
  assert.deepEqual(sleep.delays, [2000, 1000, 1000]);
  assert.equal(r.states[1][1].error.code, "redis_unavailable");
  assert.equal(r.states[1][1].error.status, 503);
  assert.equal(r.states[3][1].error.code, "http_502");
  assert.equal(r.state, States.DONE);
});

test("a 4xx answer is final: HttpError with the body's code, message and status", async () => {
  for (const [response, code, status] of [
    [apiError(401, "invalid_token", "bad token"), "invalid_token", 401],
    [apiError(410, "offset_expired", "gone"), "offset_expired", 410],
    [new Response("nope", { status: 404 }), "http_404", 404],
  ]) {
    const fetch = fakeFetch(response);
    const r = reader({ fetch });
    const error = await r.start().then(() => assert.fail("resolved"), (e) => e);
    assert.ok(error instanceof HttpError && error instanceof TokenRelayError);
    assert.equal(error.code, code);
    assert.equal(error.status, status);
    assert.equal(error.retryable, false);
    assert.equal(fetch.calls.length, 1);
    assert.equal(r.state, States.FAILED);
    assert.equal(r.error, error);
    assert.deepEqual(r.states.at(-1), ["failed", { error }]);
  }
  const r = reader({ fetch: fakeFetch(apiError(401, "invalid_token", "bad token")) });
  await assert.rejects(r.start(), { name: "HttpError", message: "bad token" });
});

test("a terminal error event: StreamError, start() rejects, the iterator yields it then throws", async () => {
  const failure = { offset: "2-0", type: "error", code: "upstream_timeout", message: "silent", retryable: true };
  const r = reader({ fetch: fakeFetch(ok(body([nd(tok("1-0", "partial")), nd(failure)]))) });
  const seen = [];
  let thrown;
  try {
    for await (const event of r) seen.push(event);
  } catch (error) {
    thrown = error;
  }
  assert.deepEqual(seen, [tok("1-0", "partial"), failure]);
  assert.ok(thrown instanceof StreamError);
  assert.equal(thrown.code, "upstream_timeout");
  assert.equal(thrown.message, "silent");
  assert.equal(thrown.retryable, true);
  assert.equal(thrown.status, null);
  await assert.rejects(r.start(), (e) => e === thrown);
  assert.equal(r.state, States.FAILED);
  assert.equal(r.error, thrown);
  assert.equal(r.text, "partial");
});

test("done: finishReason, usage, and start() resolves with the text", async () => {
  const usage = { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 };
  const r = reader({ fetch: fakeFetch(ok(body([nd(tok("1-0", "a")), nd(tok("2-0", "b")), nd(done("3-0", "length", usage))]))) });
  const first = r.start();
  assert.equal(r.start(), first, "start() is idempotent");
  assert.deepEqual(outcome(await first, r), { text: "ab", finishReason: "length", usage });
  assert.equal(r.finishReason, "length");
  assert.deepEqual(r.usage, usage);
  assert.equal(r.error, null);
  assert.equal(r.offset, "3-0");
});

test("204: the status tells how the stream ended", async () => {
  const usage = { total_tokens: 9 };
  const fetch = fakeFetch(
    new Response(null, { status: 204 }),
    json(200, { id: "s1", status: "completed", finish_reason: "stop", usage, error: null }),
  );
  const r = reader({ fetch, offset: "9-0" });
  assert.deepEqual(outcome(await r.start(), r), { text: "", finishReason: "stop", usage });
  assert.equal(fetch.calls[0].url, "http://gw/v1/streams/s1/events?format=ndjson&after=9-0&token=tk");
  assert.equal(fetch.calls[1].url, "http://gw/v1/streams/s1?token=tk");
  assert.equal(r.state, States.DONE);

  const failed = reader({
    fetch: fakeFetch(new Response(null, { status: 204 }), json(200, {
      id: "s1", status: "failed", finish_reason: null, usage: null,
      error: { code: "producer_lost", message: "worker died", retryable: true },
    })),
    offset: "$",
  });
  await assert.rejects(failed.start(), { name: "StreamError", code: "producer_lost", retryable: true });
  assert.equal(failed.state, States.FAILED);
});

test("SSE transport: pings, retry hints, frames split across chunks, CRLF, id as the offset", async () => {
  const fetch = fakeFetch(
    ok(body([
      "retry: 1000\n\n", ": ping\n\n", "id: 1-0\nevent: tok", "en\ndata: {\"text\":\"Hel\"}\n", "\n",
      "id: 2-0\r\nevent: token\r\ndata:{\"text\":\"lo\"}\r", "\n\r\n", "id: 3-0\nevent: token\ndata: {\"te",
    ], "error")),
    ok(body([": ping\n\nid: 3-0\nevent: token\ndata: {\"text\":\" w\"}\n\n",
      "id: 4-0\nevent: done\ndata: {\"finish_reason\":\"stop\",\"usage\":null}\n\n"])),
  );
  const r = reader({ fetch, transport: "sse" });
  await r.start();
  assert.deepEqual(r.events, [tok("1-0", "Hel"), tok("2-0", "lo"), tok("3-0", " w"), done("4-0")]);
  assert.equal(r.text, "Hello w");
  assert.equal(fetch.calls[0].url, "http://gw/v1/streams/s1/events?format=sse&token=tk");
  assert.equal(fetch.calls[0].init.headers.Accept, "text/event-stream");
  assert.equal(fetch.calls[1].url, "http://gw/v1/streams/s1/events?format=sse&after=2-0&token=tk");
});

test("stop() posts cancel with the token and ends done/cancelled when the terminal event arrives", async () => {
  const live = liveBody();
  const fetch = fakeFetch(ok(live.stream), () => {
    setImmediate(() => live.push(nd(done("3-0", "cancelled")))); // once the worker notices
    return json(202, { id: "s1", status: "running" });
  });
  const sleep = fakeSleep({ hang: (ms) => ms === 3000 });
  const r = reader({ fetch, sleep });
  r.start();
  live.push(nd(tok("1-0", "Hi")));
  await waitFor(() => r.text === "Hi", "the first token");
  await r.stop();
  assert.equal(fetch.calls[1].url, "http://gw/v1/streams/s1/cancel?token=tk");
  assert.equal(fetch.calls[1].init.method, "POST");
  assert.equal(r.state, States.DONE);
  assert.equal(r.finishReason, "cancelled");
  assert.deepEqual(r.events.at(-1), done("3-0", "cancelled"), "the real terminal event was read");
  assert.deepEqual(sleep.delays, [3000]);
  assert.ok(sleep.signals[0].aborted, "the stop timeout is released");
  assert.deepEqual(outcome(await r.start(), r), { text: "Hi", finishReason: "cancelled", usage: null });
});

test("stop() with an API key uses Bearer; without a terminal event it gives up after stopTimeoutMs", async () => {
  const fetch = fakeFetch(ok(body([nd(tok("1-0", "Hi"))], "hang")), json(202, { id: "s1", status: "running" }));
  const sleep = fakeSleep();
  const r = reader({ fetch, sleep, token: undefined, apiKey: "key1", stopTimeoutMs: 500 });
  r.start();
  await waitFor(() => r.text === "Hi", "the first token");
  await r.stop();
  assert.equal(fetch.calls[0].url, "http://gw/v1/streams/s1/events?format=ndjson");
  assert.equal(fetch.calls[0].init.headers.Authorization, "Bearer key1");
  assert.equal(fetch.calls[1].url, "http://gw/v1/streams/s1/cancel");
  assert.equal(fetch.calls[1].init.headers.Authorization, "Bearer key1");
  assert.deepEqual(sleep.delays, [500]);
  assert.equal(r.state, States.DONE);
  assert.equal(r.finishReason, "cancelled");
  assert.ok(fetch.calls[0].init.signal.aborted, "the read is aborted");
  await tick();
  assert.equal(fetch.calls.length, 2);
});

test("stop() whose cancel is refused rejects and stops reading, state unchanged", async () => {
  const fetch = fakeFetch(ok(body([nd(tok("1-0", "Hi"))], "hang")), apiError(403, "forbidden", "not yours"));
  const r = reader({ fetch });
  r.start();
  await waitFor(() => r.text === "Hi", "the first token");
  await assert.rejects(r.stop(), { name: "HttpError", code: "forbidden", status: 403 });
  assert.equal(r.state, States.STREAMING);
  assert.ok(fetch.calls[0].init.signal.aborted);
});

test("close() during a backoff wait: the sleep is aborted and nothing reconnects", async () => {
  const sleep = fakeSleep({ hang: () => true });
  const fetch = fakeFetch(() => Promise.reject(new TypeError("down")), ok(body([nd(done("1-0"))])));
  const r = reader({ fetch, sleep });
  const iterated = (async () => { const seen = []; for await (const ev of r) seen.push(ev); return seen; })();
  await waitFor(() => sleep.delays.length === 1, "the backoff");
  r.close();
  assert.ok(sleep.signals[0].aborted);
  await assert.rejects(r.start(), { name: "TokenRelayError", code: "closed" });
  assert.deepEqual(await iterated, [], "the iterator ends quietly");
  for (let i = 0; i < 5; i++) await tick();
  assert.equal(fetch.calls.length, 1);
  assert.equal(r.state, States.RECONNECTING);
  assert.equal(r.error, null);
});

test("close() while streaming aborts the fetch and keeps the state", async () => {
  const fetch = fakeFetch(ok(body([nd(tok("1-0", "a"))], "hang")));
  const r = reader({ fetch });
  r.start();
  await waitFor(() => r.text === "a", "the first token");
  r.close();
  assert.ok(fetch.calls[0].init.signal.aborted);
  for (let i = 0; i < 5; i++) await tick();
  assert.equal(fetch.calls.length, 1);
  assert.equal(r.state, States.STREAMING);
});

test("the async iterator yields the events in order and ends after done", async () => {
  const tokens = Array.from({ length: 20 }, (_, i) => tok(`${i + 1}-0`, String.fromCharCode(97 + i)));
  const all = [...tokens, done("21-0")].map(nd).join("");
  const r = reader({ fetch: fakeFetch(ok(body(cut(enc.encode(all), 7, 30, 31, 200, 333)))) });
  const seen = [];
  for await (const event of r) seen.push(event);
  assert.deepEqual(seen, [...tokens, done("21-0")]);
  assert.equal(r.text, "abcdefghijklmnopqrst");
  const after = [];
  for await (const event of r) after.push(event);
  assert.deepEqual(after, [], "an iterator made after the end yields nothing");
});

test("callbacks only: a failure is no unhandled rejection", async () => {
  const unhandled = [];
  const onUnhandled = (reason) => unhandled.push(reason);
  process.on("unhandledRejection", onUnhandled);
  try {
    let failed;
    const r = new StreamReader({
      baseUrl: "http://gw", streamId: "s1", token: "tk",
      fetch: fakeFetch(apiError(401, "invalid_token", "bad token")),
      onState: (state, detail) => { if (state === "failed") failed = detail.error; },
    });
    r.start();
    await waitFor(() => failed, "the failure");
    for (let i = 0; i < 3; i++) await tick();
    assert.equal(failed.code, "invalid_token");
    assert.deepEqual(unhandled, []);
  } finally {
    process.off("unhandledRejection", onUnhandled);
  }
});

test("createStream posts the body with the key and the idempotency key", async () => {
  const created = { id: "s1", status: "queued", created_at: 1, read_token: "tk", events_url: "/v1/streams/s1/events?token=tk" };
  const fetch = fakeFetch(json(201, created), apiError(422, "invalid_request", "messages: field required"));
  const body = { model: "mock", messages: [{ role: "user", content: "Hi" }] };
  assert.deepEqual(await createStream({ baseUrl: "http://gw/", body, apiKey: "key1", idempotencyKey: "k-1", fetch }), created);
  const { url, init } = fetch.calls[0];
  assert.equal(url, "http://gw/v1/streams");
  assert.equal(init.method, "POST");
  assert.deepEqual(JSON.parse(init.body), body);
  assert.equal(init.headers.Authorization, "Bearer key1");
  assert.equal(init.headers["Idempotency-Key"], "k-1");
  assert.equal(init.headers["Content-Type"], "application/json");
  await assert.rejects(createStream({ body, fetch }), { name: "HttpError", code: "invalid_request", status: 422 });
  assert.equal(fetch.calls[1].url, "/v1/streams");
  assert.equal(fetch.calls[1].init.headers.Authorization, undefined);
});

class FakeEventSource {
  static instances = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.closed = false;
    this.listeners = {};
    FakeEventSource.instances.push(this);
  }
  addEventListener(type, listener) { (this.listeners[type] ??= []).push(listener); }
  close() { this.readyState = 2; this.closed = true; }
  emit(type, event = { type }) { for (const listener of this.listeners[type] ?? []) listener(event); }
  open() { this.readyState = 1; this.emit("open"); }
  message(type, offset, data) { this.emit(type, { type, lastEventId: offset, data: JSON.stringify(data) }); }
}

test("eventsource transport: named events, connection errors, manual reconnect once CLOSED", async () => {
  FakeEventSource.instances = [];
  const sleep = fakeSleep();
  const fetch = fakeFetch(json(200, { id: "s1", status: "running", last_offset: "2-0" }));
  const r = reader({ transport: "eventsource", EventSource: FakeEventSource, fetch, sleep });
  const finished = r.start();
  const [first] = FakeEventSource.instances;
  assert.equal(first.url, "http://gw/v1/streams/s1/events?token=tk");
  first.open();
  first.message("token", "1-0", { text: "Hi" });
  first.readyState = 0; // EventSource retries by itself
  first.emit("error");
  assert.deepEqual(r.states.at(-1), ["reconnecting", { attempt: 0, delayMs: null, error: { type: "error" } }]);
  assert.equal(r.attempts, 1);
  first.open();
  first.message("token", "2-0", { text: " there" });
  assert.equal(r.attempts, 0);
  first.readyState = 2; // it gave up (an error answer)
  first.emit("error");
  assert.ok(first.closed);
  await waitFor(() => FakeEventSource.instances.length === 2, "the manual reconnect");
  assert.deepEqual(sleep.delays, [250]);
  assert.equal(fetch.calls[0].url, "http://gw/v1/streams/s1?token=tk", "the status was looked at");
  const [, second] = FakeEventSource.instances;
  assert.equal(second.url, "http://gw/v1/streams/s1/events?after=2-0&token=tk");
  second.open();
  second.message("done", "3-0", { finish_reason: "stop", usage: null });
  assert.deepEqual(outcome(await finished, r), { text: "Hi there", finishReason: "stop", usage: null });
  assert.ok(second.closed);
  assert.deepEqual(r.stateNames(), ["connecting", "streaming", "reconnecting", "streaming", "reconnecting", "streaming", "done"]);
  assert.deepEqual(r.events.map((ev) => ev.offset), ["1-0", "2-0", "3-0"]);
});

test("eventsource transport: the stream's error event, and a 404 once CLOSED, are final", async () => {
  FakeEventSource.instances = [];
  const r = reader({ transport: "eventsource", EventSource: FakeEventSource, fetch: fakeFetch() });
  r.start();
  const [es] = FakeEventSource.instances;
  es.open();
  es.message("error", "1-0", { code: "upstream_error", message: "broken", retryable: false });
  await assert.rejects(r.start(), { name: "StreamError", code: "upstream_error", retryable: false });
  assert.ok(es.closed);
  assert.equal(r.state, States.FAILED);

  FakeEventSource.instances = [];
  const gone = reader({ transport: "eventsource", EventSource: FakeEventSource, fetch: fakeFetch(apiError(404, "stream_not_found", "no such stream")) });
  gone.start();
  FakeEventSource.instances[0].readyState = 2;
  FakeEventSource.instances[0].emit("error");
  await assert.rejects(gone.start(), { name: "HttpError", code: "stream_not_found", status: 404 });
  assert.equal(FakeEventSource.instances.length, 1);
});

test("eventsource transport: CLOSED after the stream ended at our offset finishes from the status", async () => {
  FakeEventSource.instances = [];
  const fetch = fakeFetch(json(200, { id: "s1", status: "cancelled", finish_reason: "cancelled", usage: null, last_offset: "7-0" }));
  const r = reader({ transport: "eventsource", EventSource: FakeEventSource, fetch, offset: "7-0" });
  r.start();
  assert.equal(FakeEventSource.instances[0].url, "http://gw/v1/streams/s1/events?after=7-0&token=tk");
  FakeEventSource.instances[0].readyState = 2; // a 204
  FakeEventSource.instances[0].emit("error");
  assert.deepEqual(outcome(await r.start(), r), { text: "", finishReason: "cancelled", usage: null });
  assert.equal(FakeEventSource.instances.length, 1);
});

test("constructor checks its options", () => {
  assert.throws(() => new StreamReader({ fetch: fakeFetch() }), TypeError);
  assert.throws(() => new StreamReader({ streamId: "s1", transport: "ws", fetch: fakeFetch() }), TypeError);
  assert.throws(() => new StreamReader({ streamId: "s1", transport: "eventsource", EventSource: null }), TypeError);
  const r = new StreamReader({ streamId: "s1", fetch: fakeFetch() });
  assert.equal(r.state, States.CONNECTING);
  assert.equal(r.offset, null);
  assert.equal(r.text, "");
  assert.ok(Object.isFrozen(States));
});

test("after done, stop() and close() change nothing and send nothing", async () => {
  const fetch = fakeFetch(ok(body([nd(tok("1-0", "a")), nd(done("2-0"))])));
  const r = reader({ fetch });
  const result = await r.start();
  await r.stop();
  r.close();
  assert.equal(fetch.calls.length, 1);
  assert.equal(r.state, States.DONE);
  assert.deepEqual(await r.start(), result);
});

// ---------------------------------------------------------------------------------------------
// The answer: delta events accumulated per choice

const delta = (offset, choice, fields) => ({ offset, type: "delta", choice, ...fields });
const fragment = (index, args, head) => ({ index, ...(head ? { id: head.id, type: "function" } : {}), function: { ...(head ? { name: head.name } : {}), arguments: args } });

/** Two parallel calls, their arguments in fragments; one event carries fragments of both (merged). */
const TOOL_EVENTS = [
  delta("1-0", 0, { role: "assistant", content: null, refusal: null, tool_calls: [fragment(0, "", { id: "call_a", name: "get_weather" })] }),
  delta("2-0", 0, { tool_calls: [fragment(0, "{\"ci")] }),
  delta("3-0", 0, { tool_calls: [fragment(0, "ty\":\"Zürich\",")] }),
  delta("4-0", 0, { tool_calls: [fragment(0, "\"unit\":\"celsius\"}"), fragment(1, "", { id: "call_b", name: "get_time" })] }),
  delta("5-0", 0, { tool_calls: [fragment(1, "{\"timezone\"")] }),
  delta("6-0", 0, { tool_calls: [fragment(1, ":\"UTC\"}")] }),
  done("7-0", "tool_calls", { prompt_tokens: 9, completion_tokens: 30, total_tokens: 39 }),
];
const TOOL_CALLS = [
  { index: 0, id: "call_a", type: "function", name: "get_weather", arguments: "{\"city\":\"Zürich\",\"unit\":\"celsius\"}" },
  { index: 1, id: "call_b", type: "function", name: "get_time", arguments: "{\"timezone\":\"UTC\"}" },
];

function answerReader(options) {
  const answers = [];
  const r = reader({ onAnswer: (answer, event) => answers.push([answer, event]), ...options });
  return Object.assign(r, { answers });
}

test("parallel tool calls in fragments: each call's arguments grow, joined by index", async () => {
  const r = answerReader({ fetch: fakeFetch(ok(body(TOOL_EVENTS.map(nd)))) });
  const result = await r.start();
  assert.deepEqual(r.answer.toolCalls, TOOL_CALLS);
  assert.equal(result.answer, r.answer);
  assert.equal(r.answer.finishReason, "tool_calls");
  assert.equal(r.answer.role, "assistant");
  assert.equal(r.answer.text, "");
  assert.equal(r.answer.refusal, null);
  assert.deepEqual(r.answer.usage, TOOL_EVENTS.at(-1).usage);
  assert.equal(r.text, "");
  assert.deepEqual(r.texts, [], "no text: onText is not called");
  assert.deepEqual(r.answer.message.tool_calls.map((c) => c.function.arguments), TOOL_CALLS.map((c) => c.arguments));
  // one call per event that changed the answer, with the event, and the arguments as they grew
  assert.deepEqual(r.answers.map(([, event]) => event.offset), TOOL_EVENTS.map((e) => e.offset));
  assert.deepEqual(r.answers.map(([a]) => a.toolCalls.map((c) => c.arguments)), [
    [""], ["{\"ci"], ["{\"city\":\"Zürich\","], [TOOL_CALLS[0].arguments, ""], [TOOL_CALLS[0].arguments, "{\"timezone\""],
    TOOL_CALLS.map((c) => c.arguments), TOOL_CALLS.map((c) => c.arguments),
  ]);
  assert.deepEqual(r.answers.map(([a]) => a.finishReason), [null, null, null, null, null, null, "tool_calls"]);
  // snapshots: frozen, a new one after each change, the same one while nothing changes
  const [first] = r.answers[0];
  assert.ok(Object.isFrozen(first) && Object.isFrozen(first.toolCalls[0]) && Object.isFrozen(first.message.tool_calls));
  assert.equal(r.answer, r.answer);
  assert.throws(() => { "use strict"; r.answer.toolCalls[0].name = "x"; }, TypeError);
  assert.deepEqual(JSON.parse(JSON.stringify(r.answer)).toolCalls, TOOL_CALLS, "an answer is plain JSON");
});

test("a whole call in one fragment; ids and names concatenate as the SDKs do, type is replaced", async () => {
  const whole = { index: 0, id: "call_1", type: "function", function: { name: "search_web", arguments: "{\"query\":\"relay\",\"max_results\":3}" } };
  const r = answerReader({
    fetch: fakeFetch(ok(body([
      delta("1-0", 0, { role: "assistant", content: null, tool_calls: [whole] }),
      delta("2-0", 0, { tool_calls: [{ index: 1, id: "call_", type: "function", function: { name: "get_", arguments: null } }] }),
      delta("3-0", 0, { tool_calls: [{ index: 1, id: "2", type: "function", function: { name: "time", arguments: "{}" } }] }),
      done("4-0", "tool_calls"),
    ].map(nd)))),
  });
  await r.start();
  assert.deepEqual(r.answer.toolCalls, [
    { index: 0, id: "call_1", type: "function", name: "search_web", arguments: whole.function.arguments },
    { index: 1, id: "call_2", type: "function", name: "get_time", arguments: "{}" },
  ]);
});

test("reasoning, then the text: both grow in order, in either field name", async () => {
  for (const field of ["reasoning_content", "reasoning"]) {
    const r = answerReader({
      fetch: fakeFetch(ok(body([
        delta("1-0", 0, { role: "assistant", content: "", [field]: "Let me" }),
        delta("2-0", 0, { [field]: " think." }),
        delta("3-0", 0, { [field]: null, content: "" }),
        tok("4-0", "The answer"),
        tok("5-0", " is 42."),
        done("6-0"),
      ].map(nd)))),
    });
    await r.start();
    assert.equal(r.answer.reasoning, "Let me think.");
    assert.equal(r.answer.text, "The answer is 42.");
    assert.equal(r.answer.message[field], "Let me think.");
    assert.deepEqual(r.answers.map(([a]) => [a.reasoning, a.text]), [
      ["Let me", ""], ["Let me think.", ""], ["Let me think.", ""], ["Let me think.", "The answer"],
      ["Let me think.", "The answer is 42."], ["Let me think.", "The answer is 42."],
    ]);
    assert.deepEqual(r.texts, ["The answer", "The answer is 42."]);
  }
});

test("a refusal is kept apart from the text", async () => {
  const r = answerReader({
    fetch: fakeFetch(ok(body([
      delta("1-0", 0, { role: "assistant", content: null, refusal: "I'm sorry," }),
      delta("2-0", 0, { refusal: " I can't help with that." }),
      done("3-0"),
    ].map(nd)))),
  });
  const result = await r.start();
  assert.equal(r.answer.refusal, "I'm sorry, I can't help with that.");
  assert.equal(r.answer.text, "");
  assert.equal(result.text, "");
  assert.equal(r.answer.message.content, null, "null as the upstream sent it");
});

test("n=3: every choice has its own text, finish reason and logprobs; choice 0 is the answer", async () => {
  const lp = (token) => ({ token, logprob: -0.5, bytes: [...enc.encode(token)], top_logprobs: [] });
  const r = answerReader({
    fetch: fakeFetch(ok(body([
      delta("1-0", 0, { role: "assistant", content: "" }),
      delta("2-0", 2, { role: "assistant", content: "Third" }),
      delta("3-0", 1, { role: "assistant", content: "Sec", logprobs: { content: [lp("Sec")], refusal: null } }),
      tok("4-0", "First"),
      delta("5-0", 1, { content: "ond", logprobs: { content: [lp("ond")] } }),
      delta("6-0", 2, { content: " one", finish_reason: "length" }),
      delta("7-0", 1, { finish_reason: "stop", choice_fields: { stop_reason: null } }),
      done("8-0", "stop"),
    ].map(nd)))),
  });
  await r.start();
  assert.deepEqual(r.choices.map((c) => [c.index, c.text, c.finishReason]), [[0, "First", "stop"], [1, "Second", "stop"], [2, "Third one", "length"]]);
  assert.equal(r.answer.choices, r.choices);
  assert.equal(r.answer.text, "First");
  assert.equal(r.text, "First");
  assert.deepEqual(r.texts, ["First"], "onText follows choice 0 only");
  assert.deepEqual(r.choices[1].logprobs, { content: [lp("Sec"), lp("ond")], refusal: null });
  assert.deepEqual(r.choices[1].choiceFields, { stop_reason: null });
  assert.equal(r.choices[0].logprobs, null);
  // a change to one choice leaves the others' snapshots as they were
  const [before] = r.answers[4]; // after "5-0", choice 1 changed
  const [after] = r.answers[5]; // after "6-0", choice 2 changed
  assert.equal(before.choices[1], after.choices[1]);
  assert.notEqual(before.choices[2], after.choices[2]);
});

test("content with logprobs in a choice-0 delta is the answer's text too", async () => {
  const lp = (token) => ({ token, logprob: -0.1, bytes: null, top_logprobs: [] });
  const r = answerReader({
    fetch: fakeFetch(ok(body([
      delta("1-0", 0, { role: "assistant", content: "Hel", logprobs: { content: [lp("Hel")], refusal: null } }),
      delta("2-0", 0, { content: "lo", logprobs: { content: [lp("lo")] } }),
      delta("3-0", 0, { content: " there", logprobs: { content: [lp(" the"), lp("re")], refusal: null } }),
      done("4-0"),
    ].map(nd)))),
  });
  const result = await r.start();
  assert.equal(result.text, "Hello there");
  assert.equal(r.text, "Hello there");
  assert.deepEqual(r.texts, ["Hel", "Hello", "Hello there"]);
  assert.deepEqual(r.answer.logprobs.content.map((p) => p.token), ["Hel", "lo", " the", "re"]);
  assert.equal(r.answer.logprobs.refusal, null);
});

/** Everything at once: reasoning, text with logprobs, two fragmented tool calls, a second choice refusing. */
const MIXED_EVENTS = [
  delta("1-0", 0, { role: "assistant", content: "", reasoning_content: "Hmm" }),
  delta("2-0", 1, { role: "assistant", content: null, refusal: "No" }),
  delta("3-0", 0, { reasoning_content: ", weather and time." }),
  tok("4-0", "Checking"),
  delta("5-0", 0, { content: " both.", logprobs: { content: [{ token: " both.", logprob: 0, top_logprobs: [] }] } }),
  delta("6-0", 1, { refusal: " thanks.", finish_reason: "stop" }),
  ...TOOL_EVENTS.slice(0, 6).map((e, i) => ({ ...e, offset: `${7 + i}-0`, role: undefined, content: undefined, refusal: undefined })),
  done("13-0", "tool_calls"),
].map((e) => JSON.parse(JSON.stringify(e)));

test("a reconnect mid-stream continues the answer: nothing lost, nothing counted twice", async () => {
  const whole = answerReader({ fetch: fakeFetch(ok(body(MIXED_EVENTS.map(nd)))) });
  await whole.start();
  assert.equal(whole.answer.reasoning, "Hmm, weather and time.");
  assert.equal(whole.answer.text, "Checking both.");
  assert.deepEqual(whole.answer.toolCalls, TOOL_CALLS);
  assert.equal(whole.choices[1].refusal, "No thanks.");

  for (const cutAt of [2, 5, 8, 10]) { // after a delta of each kind; the cut line is half sent
    const all = enc.encode(MIXED_EVENTS.map(nd).join(""));
    const lineEnd = enc.encode(MIXED_EVENTS.slice(0, cutAt).map(nd).join("")).length;
    const fetch = fakeFetch(
      ok(body([all.slice(0, lineEnd + 7)], "error")),
      ok(body(MIXED_EVENTS.slice(cutAt).map(nd))),
    );
    const r = answerReader({ fetch });
    await r.start();
    assert.match(fetch.calls[1].url, new RegExp(`after=${cutAt}-0&`), "resumes after the last event, a delta too");
    assert.deepEqual(r.answer, whole.answer, `cut after ${cutAt} events`);
    assert.deepEqual(r.events.map((e) => e.offset), MIXED_EVENTS.map((e) => e.offset));
  }
});

test("a new reader given the saved offset and answer continues it (a page reload)", async () => {
  for (const cutAt of [1, 3, 6, 9, 12]) {
    const first = answerReader({ fetch: fakeFetch(ok(body(MIXED_EVENTS.slice(0, cutAt).map(nd), "hang"))) });
    first.start();
    await waitFor(() => first.offset === `${cutAt}-0`, "the events before the reload");
    first.close();
    const saved = JSON.parse(JSON.stringify({ offset: first.offset, answer: first.answer })); // sessionStorage
    const fetch = fakeFetch(ok(body(MIXED_EVENTS.slice(cutAt).map(nd))));
    const second = answerReader({ fetch, offset: saved.offset, answer: saved.answer });
    assert.equal(second.text, first.text, "the restored text is there before any event");
    assert.deepEqual(second.answer, first.answer);
    const result = await second.start();
    assert.equal(fetch.calls[0].url, `http://gw/v1/streams/s1/events?format=ndjson&after=${cutAt}-0&token=tk`);
    const whole = answerReader({ fetch: fakeFetch(ok(body(MIXED_EVENTS.map(nd)))) });
    await whole.start();
    assert.deepEqual(second.answer, whole.answer, `reloaded after ${cutAt} events`);
    assert.equal(result.text, "Checking both.");
  }
  assert.throws(() => new StreamReader({ streamId: "s1", fetch: fakeFetch(), answer: { text: "no choices" } }), TypeError);
});

test("SSE and EventSource transports carry delta events and resume after them", async () => {
  const sse = (e) => {
    const { offset, type, ...data } = e;
    return `id: ${offset}\nevent: ${type}\ndata: ${JSON.stringify(data)}\n\n`;
  };
  const fetch = fakeFetch(ok(body(TOOL_EVENTS.slice(0, 3).map(sse), "error")), ok(body(TOOL_EVENTS.slice(3).map(sse))));
  const r = answerReader({ fetch, transport: "sse" });
  await r.start();
  assert.deepEqual(r.answer.toolCalls, TOOL_CALLS);
  assert.equal(fetch.calls[1].url, "http://gw/v1/streams/s1/events?format=sse&after=3-0&token=tk");

  FakeEventSource.instances = [];
  const es = answerReader({ transport: "eventsource", EventSource: FakeEventSource, fetch: fakeFetch(json(200, { id: "s1", status: "running", last_offset: "3-0" })) });
  const finished = es.start();
  const [source] = FakeEventSource.instances;
  source.open();
  for (const { offset, type, ...data } of TOOL_EVENTS.slice(0, 3)) source.message(type, offset, data);
  source.readyState = 2;
  source.emit("error");
  await waitFor(() => FakeEventSource.instances.length === 2, "the manual reconnect");
  const [, again] = FakeEventSource.instances;
  assert.equal(again.url, "http://gw/v1/streams/s1/events?after=3-0&token=tk");
  again.open();
  for (const { offset, type, ...data } of TOOL_EVENTS.slice(3)) again.message(type, offset, data);
  assert.deepEqual((await finished).answer.toolCalls, TOOL_CALLS);
});

test("an end learnt from the status, or a stop that gives up, ends the answer too", async () => {
  const r = answerReader({
    fetch: fakeFetch(new Response(null, { status: 204 }), json(200, { id: "s1", status: "completed", finish_reason: "tool_calls", usage: null })),
    offset: "6-0",
    answer: JSON.parse(JSON.stringify(MIXED_EVENTS.slice(0, 6).reduce((b, e) => (b.add(e), b), new AnswerBuilder()).answer)),
  });
  await r.start();
  assert.equal(r.answer.finishReason, "tool_calls");
  assert.equal(r.answer.text, "Checking both.");
  assert.deepEqual(r.answers.map(([a, event]) => [a.finishReason, event]), [["tool_calls", null]]);
});

test("accumulateDelta: the OpenAI SDKs' rules", () => {
  const acc = {};
  accumulateDelta(acc, { content: "a", n: 1, flag: true, list: [1], obj: { x: "1" }, type: "a", gone: null });
  accumulateDelta(acc, { content: "b", n: 2, flag: false, list: [2], obj: { x: "2", y: null }, type: "b", gone: "now" });
  accumulateDelta(acc, { content: null, n: null, obj: null });
  assert.deepEqual(acc, { content: "ab", n: 3, flag: true, list: [1, 2], obj: { x: "12", y: null }, type: "b", gone: "now" });
  const calls = {};
  accumulateDelta(calls, { tool_calls: [{ index: 1, function: { arguments: "{" } }, { index: 0, id: "c0" }] });
  accumulateDelta(calls, { tool_calls: [{ index: 0, function: { arguments: "[]" } }, { index: 1, function: { arguments: "}" } }] });
  assert.deepEqual(calls.tool_calls, [{ index: 1, function: { arguments: "{}" } }, { index: 0, id: "c0", function: { arguments: "[]" } }]);
  const source = { parts: [{ a: 1 }] };
  const into = accumulateDelta({}, source);
  into.parts[0].a = 2;
  assert.equal(source.parts[0].a, 1, "the delta is copied, not shared");
});

// ---------------------------------------------------------------------------------------------
// Responses streams: `response` events, each a Responses API event as the upstream sent it

/** A recorded Responses stream (tests/recordings/responses/<name>.sse): its events' JSON texts, as sent. */
function recording(name) {
  const text = readFileSync(new URL(`../../tests/recordings/responses/${name}.sse`, import.meta.url), "utf8");
  return text.split("\n").filter((line) => line.startsWith("data: ")).map((line) => line.slice(6));
}

/** The stream's events, as the gateway keeps them: a response event per upstream event, then `done` (the worker's: the last Response's usage) or `terminal`. */
function responseStream(name, terminal = { type: "done", finish_reason: "stop", usage: JSON.parse(recording(name).at(-1)).response?.usage ?? null }) {
  const events = recording(name).map((data, i) => ({ offset: `${i + 1}-0`, type: "response", data }));
  return [...events, { offset: `${events.length + 1}-0`, type: terminal.type, data: JSON.stringify({ ...terminal, type: undefined }) }];
}

/** The gateway's NDJSON line (shared/events.py `StreamEvent.ndjson`): `{"offset", "type", ...data}`, a response event's data nested as `event`. */
const ndLine = ({ offset, type, data }) =>
  type === "response"
    ? `{"offset":"${offset}","type":"response","event":${data}}\n`
    : `{"offset":"${offset}","type":"${type}"${data === "{}" ? "}" : `,${data.slice(1)}`}\n`;
const sseFrame = ({ offset, type, data }) => `id: ${offset}\nevent: ${type}\ndata: ${data}\n\n`;

/** What the final Response says its output was, read as the OpenAI SDK reads it. */
function finalOutput(name) {
  const last = JSON.parse(recording(name).at(-1));
  const output = last.response.output;
  const items = (type) => output.filter((item) => item.type === type);
  return {
    text: items("message").flatMap((item) => item.content).filter((part) => part.type === "output_text").map((part) => part.text).join(""),
    reasoning: items("reasoning").flatMap((item) => item.summary).map((part) => part.text).join("\n\n"),
    toolCalls: items("function_call").map((item, index) => ({ index, id: item.call_id, type: "function", name: item.name, arguments: item.arguments })),
    response: last.response,
  };
}

const RESPONSE_RECORDINGS = ["openai-text", "azure-text", "openai-function-call", "openai-reasoning-summary-function-call", "openai-reasoning-encrypted-function-call", "openai-web-search", "copilot-reasoning-text"];

test("a Responses stream read as NDJSON: its events keep their own type; the answer is the final Response's output", async () => {
  for (const name of RESPONSE_RECORDINGS) {
    const stream = responseStream(name);
    const r = answerReader({ fetch: fakeFetch(ok(body(stream.map(ndLine)))) });
    const result = await r.start();
    const want = finalOutput(name);
    assert.deepEqual(r.events.map((e) => e.type), [...recording(name).map((data) => JSON.parse(data).type), "done"], name);
    assert.ok(r.events.slice(0, -1).every((e) => responseEventType(e) === e.type), name);
    assert.equal(result.text, want.text, name);
    assert.equal(r.text, want.text, name);
    assert.equal(r.answer.reasoning, want.reasoning, name);
    assert.deepEqual(r.answer.toolCalls, want.toolCalls, name);
    assert.equal(r.answer.refusal, null, name);
    assert.equal(r.answer.role, "assistant", name);
    assert.equal(r.answer.finishReason, "stop", name);
    assert.deepEqual(r.answer.response, want.response, name);
    assert.equal(r.answer.response.status, "completed", name);
    assert.deepEqual(r.answer.usage, want.response.usage, name);
    assert.deepEqual(r.answer.choices.map((choice) => choice.index), [0], `${name}: one choice`);
    assert.ok(Object.isFrozen(r.answer.response), name);
    if (want.text) assert.equal(r.texts.at(-1), want.text, `${name}: onText`);
    // every event that added something was an answer; the others (*.done, parts) were not
    const changed = new Set(r.answers.map(([, event]) => event?.type));
    if (want.text) assert.ok(changed.has("response.output_text.delta"), name);
    assert.ok(!changed.has("response.output_text.done") && !changed.has("response.content_part.done"), name);
  }
  assert.ok(finalOutput("openai-reasoning-summary-function-call").reasoning.length > 100, "a long summary");
  assert.ok(finalOutput("openai-web-search").text.length > 1000, "a long text");
});

test("the same answer from the SSE and EventSource transports, and from the admin API's events", async () => {
  const name = "openai-reasoning-summary-function-call";
  const stream = responseStream(name);
  const want = finalOutput(name);
  const sse = answerReader({ fetch: fakeFetch(ok(body(stream.map(sseFrame)))), transport: "sse" });
  await sse.start();
  assert.equal(sse.answer.reasoning, want.reasoning);
  assert.deepEqual(sse.answer.toolCalls, want.toolCalls);
  assert.equal(sse.events[0].type, "response.created");

  FakeEventSource.instances = [];
  const es = answerReader({ transport: "eventsource", EventSource: FakeEventSource, fetch: fakeFetch() });
  const finished = es.start();
  const [source] = FakeEventSource.instances;
  source.open();
  for (const { offset, type, data } of stream) source.message(type, offset, JSON.parse(data));
  const result = await finished;
  assert.deepEqual(result.answer, sse.answer, "a listener for response events");
  assert.equal(es.events.length, stream.length);

  // {offset, type, ...data} as JSON objects (the admin API's events): the same answer
  const builder = new AnswerBuilder();
  for (const { offset, type, data } of stream) builder.add({ offset, type, ...JSON.parse(data) });
  assert.deepEqual(builder.answer, sse.answer);
});

test("a Responses stream cut anywhere: a reconnect, or a reload with the saved answer, gives the same answer", async () => {
  const name = "openai-reasoning-summary-function-call";
  const stream = responseStream(name);
  const whole = answerReader({ fetch: fakeFetch(ok(body(stream.map(ndLine)))) });
  await whole.start();
  const types = stream.map(({ data }) => JSON.parse(data).type);
  const cuts = [
    types.indexOf("response.reasoning_summary_text.delta") + 3, // mid-summary
    types.indexOf("response.output_item.done"), // the summary streamed, its item not yet done
    types.indexOf("response.output_item.added", types.indexOf("response.output_item.done")) + 1, // after the call's item, before its arguments
    types.indexOf("response.function_call_arguments.delta") + 2, // mid-arguments
    types.indexOf("response.completed"),
  ];
  assert.ok(cuts.every((at) => at > 0 && at < stream.length - 1), String(cuts));
  for (const cutAt of cuts) {
    const lines = stream.map(ndLine);
    const fetch = fakeFetch(ok(body([...lines.slice(0, cutAt), lines[cutAt].slice(0, 20)], "error")), ok(body(lines.slice(cutAt))));
    const r = answerReader({ fetch });
    await r.start();
    assert.match(fetch.calls[1].url, new RegExp(`after=${cutAt}-0&`));
    assert.deepEqual(r.answer, whole.answer, `reconnected after ${cutAt} events`);

    const first = answerReader({ fetch: fakeFetch(ok(body(lines.slice(0, cutAt), "hang"))) });
    first.start();
    await waitFor(() => first.offset === `${cutAt}-0`, "the events before the reload");
    first.close();
    const saved = JSON.parse(JSON.stringify({ offset: first.offset, answer: first.answer }));
    const second = answerReader({ fetch: fakeFetch(ok(body(lines.slice(cutAt)))), offset: saved.offset, answer: saved.answer });
    await second.start();
    assert.deepEqual(second.answer, whole.answer, `reloaded after ${cutAt} events`);
  }
});

test("a failed Responses stream: the upstream's error event is no terminal event; response.failed gives no finish reason", async () => {
  const name = "openai-error-failed";
  const terminal = { type: "error", code: "upstream_error", message: "You exceeded your current quota", retryable: false };
  const stream = responseStream(name, terminal);
  for (const transport of ["ndjson", "sse"]) {
    const r = answerReader({ fetch: fakeFetch(ok(body(stream.map(transport === "sse" ? sseFrame : ndLine)))), transport });
    await assert.rejects(r.start(), { name: "StreamError", code: "upstream_error" });
    assert.deepEqual(r.events.map((e) => e.type), ["response.created", "response.in_progress", "error", "response.failed", "error"]);
    assert.equal(responseEventType(r.events[2]), "error", "the upstream's error event");
    assert.equal(responseEventType(r.events[4]), null, "the stream's terminal error");
    assert.equal(r.answer.finishReason, null);
    assert.equal(r.answer.response.status, "failed");
    assert.equal(r.answer.response.error.code, "insufficient_quota");
    assert.equal(r.text, "");
  }
});

test("an incomplete Response finishes with length; cancelled and content-filtered ones as done or the Response says", async () => {
  const r = answerReader({ fetch: fakeFetch(ok(body(responseStream("openai-shaped-incomplete", { type: "done", finish_reason: "length", usage: null }).map(ndLine)))) });
  const result = await r.start();
  assert.equal(result.text, finalOutput("openai-shaped-incomplete").text);
  assert.ok(result.text.length > 20);
  const ended = r.answers.findLast(([, event]) => event?.type === "response.incomplete");
  assert.equal(ended[0].finishReason, "length", "from response.incomplete, before done");
  assert.equal(r.answer.response.incomplete_details.reason, "max_output_tokens");

  const filtered = new AnswerBuilder();
  filtered.add({ type: "response.output_text.delta", delta: "Hm" });
  filtered.add({ type: "response.incomplete", response: { status: "incomplete", incomplete_details: { reason: "content_filter" }, usage: { output_tokens: 1 } } });
  assert.deepEqual([filtered.answer.finishReason, filtered.answer.usage], ["content_filter", { output_tokens: 1 }]);
  const cancelled = new AnswerBuilder();
  cancelled.add({ type: "response.output_text.delta", delta: "Hm" });
  cancelled.add({ type: "done", finish_reason: "cancelled", usage: null });
  assert.deepEqual([cancelled.answer.text, cancelled.answer.finishReason], ["Hm", "cancelled"]);
});

test("Responses events by hand: refusal, reasoning text parts, parallel calls, ids that change, a reader that starts mid-call", () => {
  const b = new AnswerBuilder();
  const add = (type, fields = {}) => b.add({ type, sequence_number: 0, ...fields });
  assert.equal(add("response.created", { response: { id: "resp_1", status: "in_progress", output: [] } }), true);
  assert.equal(add("response.output_item.added", { output_index: 0, item: { id: "rs_1", type: "reasoning", content: [] } }), true, "the role");
  assert.equal(add("response.content_part.added", { item_id: "rs_1", output_index: 0, part: { type: "reasoning_text", text: "" } }), false, "nothing to keep apart yet");
  add("response.reasoning_text.delta", { item_id: "rs_1", output_index: 0, delta: "Think." });
  add("response.content_part.added", { item_id: "rs_1", output_index: 0, part: { type: "reasoning_text", text: "" } });
  add("response.reasoning_text.delta", { item_id: "rs_1", output_index: 0, delta: "Again." });
  add("response.output_item.added", { output_index: 1, item: { id: "msg_1", type: "message", role: "assistant", content: [] } });
  add("response.content_part.added", { item_id: "msg_1", output_index: 1, part: { type: "refusal", refusal: "" } });
  add("response.refusal.delta", { item_id: "msg_1", output_index: 1, delta: "I can't" });
  add("response.refusal.delta", { item_id: "msg_1", output_index: 1, delta: " do that." });
  // two calls whose argument fragments interleave, with a new item id on every event (as Copilot does)
  add("response.output_item.added", { output_index: 2, item: { id: "fc_a", type: "function_call", call_id: "call_a", name: "get_weather", arguments: "" } });
  add("response.output_item.added", { output_index: 3, item: { id: "fc_b", type: "function_call", call_id: "call_b", name: "get_time", arguments: "" } });
  add("response.function_call_arguments.delta", { item_id: "fc_a", output_index: 2, delta: "{\"city\":" });
  add("response.function_call_arguments.delta", { item_id: "x1", output_index: 3, delta: "{}" });
  add("response.function_call_arguments.delta", { item_id: "x2", output_index: 2, delta: "\"Oslo\"}" });
  assert.equal(add("response.output_item.done", { output_index: 2, item: { id: "fc_a", type: "function_call", call_id: "call_a", name: "get_weather", arguments: "{\"city\":\"Oslo\"}" } }), false, "nothing new");
  assert.equal(add("response.output_text.done", { item_id: "msg_1", output_index: 1, text: "" }), false);
  assert.equal(b.answer.reasoning, "Think.\n\nAgain.");
  assert.equal(b.answer.refusal, "I can't do that.");
  assert.equal(b.answer.text, "");
  assert.deepEqual(b.answer.toolCalls, [
    { index: 0, id: "call_a", type: "function", name: "get_weather", arguments: "{\"city\":\"Oslo\"}" },
    { index: 1, id: "call_b", type: "function", name: "get_time", arguments: "{}" },
  ]);
  assert.deepEqual(b.answer.message.tool_calls.map((call) => [call.item_id, call.output_index]), [["fc_a", 2], ["fc_b", 3]]);
  assert.equal(b.answer.response.id, "resp_1");

  // a reader that began after the call's item was added: the call is made of what comes after
  const late = new AnswerBuilder();
  late.add({ type: "response.function_call_arguments.delta", item_id: "fc_z", output_index: 4, delta: "{\"q\"" });
  late.add({ type: "response.function_call_arguments.delta", item_id: "fc_z", output_index: 4, delta: ":1}" });
  assert.deepEqual(late.answer.toolCalls, [{ index: 0, id: null, type: "function", name: "", arguments: "{\"q\":1}" }]);
  assert.equal(late.add({ type: "response.output_item.done", output_index: 4, item: { id: "fc_z", type: "function_call", call_id: "call_z", name: "search", arguments: "{\"q\":1}" } }), true);
  assert.deepEqual(late.answer.toolCalls, [{ index: 0, id: "call_z", type: "function", name: "search", arguments: "{\"q\":1}" }]);

  // not Responses events: a plain terminal error, events of no known type
  assert.equal(responseEventType({ type: "error", code: "x", message: "y", retryable: false }), null);
  assert.equal(responseEventType({ type: "error", sequence_number: 3, error: {} }), "error");
  assert.equal(responseEventType({ type: "token", text: "a" }), null);
  assert.equal(new AnswerBuilder().add({ type: "response.web_search_call.searching", item_id: "ws_1", output_index: 0 }), false);
});
