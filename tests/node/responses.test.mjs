// The official `openai` npm SDK against tokenrelay's Responses API facade (background mode
// for any upstream), with recorded real Responses streams replayed by the upstream:
//
// - `responses.create({stream: true, background: true})` through the gateway yields the
//   upstream's own events, type for type and payload for payload, mapped as the gateway maps
//   them: `response.id` is tokenrelay's `resp_<stream id>`, `background` is true, OpenAI's
//   random `obfuscation` padding is gone, `sequence_number`s are the upstream's (0, 1, ...);
// - a reader that hangs up mid-stream resumes with `responses.retrieve(id, {stream: true,
//   starting_after: N})` (the SDK sends `?stream=true&starting_after=N`) and gets exactly the
//   events N+1 ... end, live then stored;
// - `responses.retrieve(id)` is the final Response object, `completed`, the upstream's output;
// - the `responses.stream(...)` helper's `finalResponse()` equals the upstream's, and the
//   same helper resuming by `response_id` + `starting_after` (it replays the stream from the
//   first event and filters locally) emits only the rest;
// - `responses.cancel(id)` on a response whose upstream is silent answers it `cancelled`.
//
// tests/test_node_sdk.py starts the replay upstream, a gateway and a worker, and runs
// `node --test tests/node/` with TOKENRELAY_UPSTREAM_URL, TOKENRELAY_GATEWAY_URL and
// TOKENRELAY_API_KEY (see chat.test.mjs).
import { test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";

import { API_KEY, GATEWAY, UPSTREAM } from "./stack.mjs";

const INPUT = "hi";
const STREAM_ID_HEADER = "x-tokenrelay-stream-id";

/** What each recording's final response must hold, so that equality is not vacuous. */
const RECORDINGS = {
  "openai-function-call": (response) => {
    assert.equal(response.status, "completed");
    assert.deepEqual(
      response.output.map((item) => [item.type, item.name]),
      [["function_call", "get_weather"]],
    );
    assert.deepEqual(JSON.parse(response.output[0].arguments), { city: "Beijing" });
  },
  "openai-reasoning-summary-function-call": (response) => {
    assert.equal(response.status, "completed");
    assert.deepEqual(
      response.output.map((item) => item.type),
      ["reasoning", "function_call"],
    );
    assert.match(response.output[0].summary[0].text, /step-by-step/);
    assert.deepEqual(JSON.parse(response.output[1].arguments), { a: 12, b: 7, op: "add" });
  },
};

/** An SDK client; `seen` (if given) collects every request's URL and response's headers. */
function sdk(base, seen = null) {
  const options = { baseURL: `${base}/v1`, apiKey: API_KEY, maxRetries: 0, timeout: 30_000 };
  if (seen) {
    options.fetch = async (url, init) => {
      const response = await fetch(url, init);
      seen.push({ url: new URL(String(url)), method: init?.method, headers: response.headers });
      return response;
    };
  }
  return new OpenAI(options);
}

async function collect(stream) {
  const events = [];
  for await (const event of stream) events.push(event);
  return events;
}

/** The upstream's own events for a recording, through the SDK, with their facts checked. */
async function direct(model) {
  const events = await collect(
    await sdk(UPSTREAM).responses.create({ model, input: INPUT, stream: true, background: true }),
  );
  assert.deepEqual(
    events.map((event) => event.sequence_number),
    events.map((_, index) => index),
  );
  assert.equal(events[0].type, "response.created");
  assert.equal(events.at(-1).type, "response.completed");
  // what the gateway maps is there to be mapped
  assert.match(events[0].response.id, /^resp_/);
  assert.equal(events[0].response.background, false); // the replay does not do background
  assert.ok(events.some((event) => "obfuscation" in event));
  return events;
}

/** The upstream's event as the gateway shows it for the response `id`. */
function mapped(event, id) {
  const { obfuscation: _padding, ...kept } = structuredClone(event);
  if (kept.response) Object.assign(kept.response, { id, background: true });
  return kept;
}

/** The Response object that the helpers make of a completed response: `output_text` added. */
function withOutputText(response) {
  const texts = response.output
    .filter((item) => item.type === "message")
    .flatMap((item) => item.content)
    .filter((content) => content.type === "output_text")
    .map((content) => content.text);
  return { ...response, output_text: texts.join("") };
}

/** The gateway's response id: `resp_` and the stream id its headers name. */
function responseIdOf(headers) {
  const streamId = headers.get(STREAM_ID_HEADER);
  assert.match(streamId ?? "", /\S/);
  return `resp_${streamId}`;
}

for (const [name, facts] of Object.entries(RECORDINGS)) {
  const model = `replay:${name}`;

  test(`${name}: create({stream, background}) through the gateway yields the upstream's events`, async () => {
    const expected = await direct(model);
    const { data: stream, response } = await sdk(GATEWAY)
      .responses.create({ model, input: INPUT, stream: true, background: true })
      .withResponse();
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type"), /^text\/event-stream/);
    const id = responseIdOf(response.headers);
    const events = await collect(stream);

    assert.deepEqual(
      events.map((event) => event.type),
      expected.map((event) => event.type),
    );
    assert.deepEqual(
      events.map((event) => event.sequence_number),
      expected.map((event) => event.sequence_number),
    );
    for (const event of events) {
      assert.ok(!("obfuscation" in event), `${event.type} ${event.sequence_number}`);
      if (event.response) {
        assert.equal(event.response.id, id);
        assert.equal(event.response.background, true);
      }
    }
    assert.deepEqual(
      events,
      expected.map((event) => mapped(event, id)),
    );
    facts(events.at(-1).response);
  });

  test(`${name}: a reader that hangs up resumes with retrieve(id, {stream, starting_after}); then the Response object`, async () => {
    const expected = await direct(model);
    const seen = [];
    const client = sdk(GATEWAY, seen);
    // paced, so that the reader is back while the upstream is still streaming
    const { data: first, response } = await client.responses
      .create({ model: `${model}?delay_ms=10`, input: INPUT, stream: true, background: true })
      .withResponse();
    const id = responseIdOf(response.headers);
    const head = [];
    for await (const event of first) {
      head.push(event);
      if (head.length === 4) break; // hang up: the SDK aborts the request
    }
    const after = head.at(-1).sequence_number;
    assert.equal(after, 3);

    const rest = await collect(
      await client.responses.retrieve(id, { stream: true, starting_after: after }),
    );
    // the SDK really asked for the events after `after`
    const resumed = seen.at(-1);
    assert.equal(resumed.method, "GET");
    assert.equal(resumed.url.pathname, `/v1/responses/${id}`);
    assert.equal(resumed.url.searchParams.get("stream"), "true");
    assert.equal(resumed.url.searchParams.get("starting_after"), String(after));

    const all = expected.map((event) => mapped(event, id));
    assert.deepEqual(head, all.slice(0, head.length));
    assert.deepEqual(
      rest.map((event) => event.sequence_number),
      expected.slice(after + 1).map((event) => event.sequence_number),
    );
    assert.deepEqual(rest, all.slice(after + 1));

    // the same from a stored stream, from the middle and from the next-to-last event
    const middle = Math.floor(expected.length / 2);
    for (const from of [middle, expected.length - 2]) {
      const again = await collect(
        await client.responses.retrieve(id, { stream: true, starting_after: from }),
      );
      assert.deepEqual(again, all.slice(from + 1), `starting_after=${from}`);
    }

    // the Response object now: completed, the upstream's final output
    const now = await client.responses.retrieve(id);
    assert.equal(now.status, "completed");
    assert.equal(now.id, id);
    assert.equal(now.background, true);
    const completed = all.at(-1).response;
    assert.deepEqual(now.output, completed.output);
    assert.deepEqual(now, withOutputText(completed));
    facts(now);
  });

  test(`${name}: the responses.stream() helper's finalResponse() equals the upstream's`, async () => {
    const upstream = await sdk(UPSTREAM)
      .responses.stream({ model, input: INPUT, background: true })
      .finalResponse();
    facts(upstream);
    const seen = [];
    const client = sdk(GATEWAY, seen);
    const relayed = await client.responses
      .stream({ model, input: INPUT, background: true })
      .finalResponse();
    const id = responseIdOf(seen.at(-1).headers);
    assert.equal(relayed.id, id);
    assert.deepEqual(relayed, { ...upstream, id, background: true });

    // the helper resuming a response by its id: it asks for the whole stream (no
    // starting_after) and emits only the events after `starting_after`
    const from = 5;
    const helper = client.responses.stream({ response_id: id, starting_after: from });
    const emitted = [];
    helper.on("event", (event) => emitted.push(event.sequence_number));
    const resumed = await helper.finalResponse();
    assert.deepEqual(resumed, relayed);
    const expected = await direct(model);
    assert.deepEqual(
      emitted,
      expected.slice(from + 1).map((event) => event.sequence_number),
    );
    const request = seen.at(-1);
    assert.equal(request.url.pathname, `/v1/responses/${id}`);
    assert.equal(request.url.searchParams.get("stream"), "true");
  });
}

test("cancel(id) on a background response whose upstream is silent: cancelled, and its stream ends so", async () => {
  const client = sdk(GATEWAY);
  const queued = await client.responses.create({
    model: "replay:openai-text?silent=1",
    input: INPUT,
    background: true,
  });
  assert.match(queued.id, /^resp_/);
  assert.ok(["queued", "in_progress"].includes(queued.status), queued.status);
  assert.equal(queued.background, true);

  const cancelled = await client.responses.cancel(queued.id);
  assert.equal(cancelled.id, queued.id);
  assert.equal(cancelled.status, "cancelled");
  assert.equal(cancelled.background, true);
  assert.equal((await client.responses.retrieve(queued.id)).status, "cancelled");
  // idempotent
  assert.equal((await client.responses.cancel(queued.id)).status, "cancelled");

  const events = await collect(await client.responses.retrieve(queued.id, { stream: true }));
  assert.ok(events.length > 0);
  assert.deepEqual(
    events.map((event) => event.sequence_number),
    events.map((_, index) => index),
  );
  assert.equal(events.at(-1).response?.status, "cancelled");
});

// A response cancelled before the upstream's first event: the SDK's ResponseStream helper
// accumulates from a `response.created` it requires first, which the gateway makes here.
test(
  "the responses.stream() helper reads a response cancelled before the upstream said anything",
  async () => {
    const client = sdk(GATEWAY);
    const queued = await client.responses.create({
      model: "replay:openai-text?silent=1",
      input: INPUT,
      background: true,
    });
    await client.responses.cancel(queued.id);
    const final = await client.responses.stream({ response_id: queued.id }).finalResponse();
    assert.equal(final.status, "cancelled");
  },
);
