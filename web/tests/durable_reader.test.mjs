// Unit tests of web/durable_reader.js and web/agent_saved.js: `node --test web/tests/`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { DurableReader, ReadRefused, sseFrames, streamUrl } from "../durable_reader.js";
import { newRun, parseRun, savedKey, storeRun } from "../agent_saved.js";

const offset = (n) => `0000000000000001_${String(n).padStart(16, "0")}`;
const data = (message) => `event: data\ndata:${JSON.stringify([message])}\n\n`;
const control = (n, extra = {}) => `event: control\ndata:${JSON.stringify({ streamNextOffset: offset(n), streamCursor: "7", ...extra })}\n\n`;

test("sseFrames: frames split anywhere, any line ending, comments and empty frames skipped", () => {
  const text = `${data({ a: 1 })}: ping\n\nretry: 10\n\n${control(1)}event: data\r\ndata:[2,\r\ndata: 3]\r\n\r\n`;
  const whole = sseFrames()(text);
  assert.deepEqual(whole, [
    { event: "data", data: '[{"a":1}]' },
    { event: "control", data: `{"streamNextOffset":"${offset(1)}","streamCursor":"7"}` },
    { event: "data", data: "[2,\n3]" },
  ]);
  for (let size = 1; size < 12; size++) {
    const parse = sseFrames();
    const frames = [];
    for (let at = 0; at < text.length; at += size) frames.push(...parse(text.slice(at, at + size)));
    assert.deepEqual(frames, whole, `chunks of ${size}`);
  }
  assert.deepEqual(sseFrames()("data:x\n"), [], "a frame counts once its blank line came");
});

test("streamUrl escapes each segment of the path", () => {
  assert.equal(streamUrl("", "demo/agent 1", { offset: "-1", live: "sse", token: null }), "/v1/ds/demo/agent%201?offset=-1&live=sse");
  assert.equal(streamUrl("http://h/", "a/b?c", { offset: "now", token: "t.1" }), "http://h/v1/ds/a/b%3Fc?offset=now&token=t.1");
});

/** A fetch that answers each call with the next of `bodies` (a string: a 200 SSE body, sent in small chunks; a number: that status). */
function fakeFetch(bodies) {
  const urls = [];
  const fetch = async (url) => {
    urls.push(url);
    const body = bodies.shift();
    if (body === undefined) throw new TypeError("no more answers");
    if (typeof body === "number") return new Response(JSON.stringify({ error: { message: `status ${body}` } }), { status: body });
    const bytes = new TextEncoder().encode(body);
    const stream = new ReadableStream({
      start(controller) {
        for (let at = 0; at < bytes.length; at += 7) controller.enqueue(bytes.slice(at, at + 7));
        controller.close();
      },
    });
    return new Response(stream, { status: 200, headers: { "Content-Type": "text/event-stream" } });
  };
  return { fetch, urls };
}

const offsetOf = (url) => new URL(url, "http://x").searchParams.get("offset");

test("the reader hands each message over once with its offset, resuming from the last one", async () => {
  const { fetch, urls } = fakeFetch([
    // the first response ends (the server's time is up) after two messages and half a third
    data({ n: 1 }) + control(1) + data({ n: 2 }) + control(2) + data({ n: 3 }),
    503,
    // the next ones from offset 2: the third, the fourth, then the end
    data({ n: 3 }) + control(3),
    control(3, { upToDate: true }) + data({ n: 4 }) + control(4, { upToDate: true, streamClosed: true, streamCursor: undefined }),
  ]);
  const batches = [];
  const states = [];
  const reader = new DurableReader({
    path: "demo/agent-1",
    token: "tok",
    offset: "-1",
    fetch,
    sleep: async () => {},
    random: () => 0,
    onBatch: (messages, at, info) => batches.push([messages, at, info.closed]),
    onState: (state) => states.push(state),
  });
  await reader.run();
  assert.deepEqual(batches, [
    [[{ n: 1 }], offset(1), false],
    [[{ n: 2 }], offset(2), false],
    [[{ n: 3 }], offset(3), false],
    [[], offset(3), false],
    [[{ n: 4 }], offset(4), true],
  ]);
  assert.deepEqual(urls.map(offsetOf), ["-1", offset(2), offset(2), offset(3)]);
  assert.ok(urls.every((url) => url.includes("live=sse") && url.includes("token=tok")));
  assert.equal(reader.offset, offset(4));
  assert.deepEqual(states, ["connecting", "streaming", "reconnecting", "reconnecting", "streaming", "reconnecting", "streaming", "done"]);
});

test("a refused read ends the reader; close() ends it quietly", async () => {
  const refused = new DurableReader({ path: "p", offset: offset(1), fetch: fakeFetch([404]).fetch, onBatch: () => {} });
  await assert.rejects(refused.run(), (error) => error instanceof ReadRefused && error.status === 404 && error.message === "status 404");

  let reader;
  const { fetch, urls } = fakeFetch([data({ n: 1 }) + control(1) + data({ n: 2 }) + control(2)]);
  const got = [];
  reader = new DurableReader({ path: "p", fetch, sleep: async () => {}, onBatch: (messages) => { got.push(...messages); reader.close(); } });
  await reader.run();
  assert.deepEqual(got, [{ n: 1 }]);
  assert.equal(urls.length, 1);
  assert.equal(reader.offset, offset(1));
});

test("agent_saved: a run kept is read back; a run that does not fit keeps its stream", () => {
  const run = { ...newRun("demo/agent-1", "tok"), messages: [{ type: "user", text: "hi" }], offset: offset(1) };
  let kept = null;
  assert.equal(storeRun(run, (json) => { kept = json; }), "run");
  assert.deepEqual(parseRun(kept, "demo/agent-1"), run);
  assert.equal(parseRun(kept, "demo/agent-2"), null, "another run's");
  assert.equal(savedKey("demo/agent-1"), "tokenrelay.agent.demo/agent-1");
  const small = (json) => { if (json.length > 90) throw new DOMException("full", "QuotaExceededError"); kept = json; };
  assert.equal(storeRun(run, small), "stream");
  assert.deepEqual(parseRun(kept, "demo/agent-1"), newRun("demo/agent-1", "tok"));
  assert.equal(storeRun(run, () => { throw new Error("no storage"); }), "nothing");
  for (const bad of [null, "", "{", "[]", '{"path": 3}']) assert.equal(parseRun(bad, "p"), null, String(bad));
  assert.deepEqual(parseRun('{"path": "p", "token": 5, "offset": 1}', "p"), newRun("p", null));
});
