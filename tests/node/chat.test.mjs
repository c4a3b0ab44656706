// The official `openai` npm SDK against tokenrelay's Chat Completions facade: what the SDK
// accumulates from recorded real streams through the gateway equals what it accumulates from
// the upstream itself; a reader that disconnects resumes with Last-Event-ID and loses nothing;
// an upstream's 429 reaches the SDK as RateLimitError with its Retry-After.
//
// tests/test_node_sdk.py starts the replay upstream (tests/replay_upstream.py), a gateway and
// a worker, and runs `node --test tests/node/` with
//   TOKENRELAY_UPSTREAM_URL  the replay upstream, no /v1 (model `replay:<recording>`)
//   TOKENRELAY_GATEWAY_URL   the gateway, no /v1, whose worker calls that upstream
//   TOKENRELAY_API_KEY       an API key of the gateway
// The SDK is pinned in tests/node/package.json: `npm ci --prefix tests/node`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import OpenAI from "openai";
import { Stream } from "openai/streaming";
import { ChatCompletionStream } from "openai/lib/ChatCompletionStream";

import { API_KEY, GATEWAY, UPSTREAM } from "./stack.mjs";

const MESSAGES = [{ role: "user", content: "replay" }];
// every recording here ends with a usage chunk; the gateway sends it only when asked
const STREAM_OPTIONS = { include_usage: true };

/** What each recording must hold, so that equality through the gateway is not vacuous. */
const RECORDINGS = {
  "openai-tool-call-parallel": (completion) => {
    assert.equal(completion.choices.length, 1);
    const [choice] = completion.choices;
    assert.equal(choice.finish_reason, "tool_calls");
    assert.equal(choice.message.tool_calls.length, 2);
  },
  "openai-n3": (completion) => {
    assert.deepEqual(
      completion.choices.map((choice) => [choice.index, choice.finish_reason]),
      [[0, "stop"], [1, "stop"], [2, "stop"]],
    );
    for (const choice of completion.choices) JSON.parse(choice.message.content);
  },
  "openai-shaped-n2-tool-calls-multibyte": (completion) => {
    assert.equal(completion.choices.length, 2);
    const [text, calls] = completion.choices;
    assert.equal(text.message.tool_calls.length, 1);
    assert.match(text.message.content, /\p{Extended_Pictographic}/u); // an emoji made it whole
    assert.equal(calls.message.tool_calls.length, 2);
    assert.ok(completion.choices.every((choice) => choice.finish_reason === "tool_calls"));
  },
  // Azure's first chunk has an empty id and model, Ollama's `created` moves on: this SDK
  // takes them from the last chunks, which carry the upstream's last values through the relay
  "azure-model-router": (completion) => {
    assert.ok(completion.id.startsWith("chatcmpl-"));
    assert.equal(completion.choices[0].finish_reason, "stop");
  },
  "ollama-reasoning-tool-call": (completion) => {
    assert.equal(completion.choices[0].message.tool_calls.length, 1);
  },
  // Not deepseek-reasoning: this SDK keeps only the last fragment of a field it does not
  // know (reasoning_content), which depends on how fragments were merged on the way.
};

const recording = (name) =>
  readFileSync(new URL(`../recordings/chat/${name}.sse`, import.meta.url), "utf8");

function sdk(base) {
  return new OpenAI({ baseURL: `${base}/v1`, apiKey: API_KEY, maxRetries: 0, timeout: 30_000 });
}

/** The SDK's ChatCompletionStream helper, start to end: its final chat completion. */
async function streamed(base, model) {
  const stream = sdk(base).chat.completions.stream({
    model,
    messages: MESSAGES,
    stream_options: STREAM_OPTIONS,
  });
  return await stream.finalChatCompletion();
}

/** The same helper's accumulation of chunks read some other way (a resumed stream). */
async function accumulated(chunks) {
  const lines = chunks.map((chunk) => JSON.stringify(chunk) + "\n").join("");
  const body = new Response(lines).body;
  return await ChatCompletionStream.fromReadableStream(body).finalChatCompletion();
}

/** What the issue names: per choice, the message (content, refusal, tool calls with id,
 * name, arguments) and the finish reason; the completion's id and model. */
function choices(completion) {
  return {
    id: completion.id,
    model: completion.model,
    choices: completion.choices.map((choice) => ({
      index: choice.index,
      role: choice.message.role,
      content: choice.message.content,
      refusal: choice.message.refusal,
      tool_calls: (choice.message.tool_calls ?? []).map((call) => ({
        id: call.id,
        type: call.type,
        name: call.function.name,
        arguments: call.function.arguments,
      })),
      finish_reason: choice.finish_reason,
    })),
  };
}

/** Checks the recording's own facts on the direct completion, then the relayed one against it. */
function assertSameCompletion(relayed, direct, name) {
  const expected = choices(direct);
  RECORDINGS[name](direct);
  for (const choice of expected.choices) {
    for (const call of choice.tool_calls) {
      // the recording's ids, not ids the SDK made up (it invents `call_<uuid>` for a missing one)
      assert.ok(recording(name).includes(`"id":"${call.id}"`), call.id);
      JSON.parse(call.arguments);
    }
  }
  assert.deepEqual(choices(relayed), expected);
  // and everything else the SDK kept: created, usage, ... but OpenAI's random `obfuscation`
  // padding, which the relay drops (the SDK keeps the last chunk's)
  const { obfuscation: _padding, ...kept } = direct;
  assert.deepEqual(relayed, kept);
}

/** SSE events ({id, data}) of a fetch body, parsed as the spec says; comments skipped. */
async function* sseEvents(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let event = { id: null, data: [] };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      buffer += decoder.decode(value ?? new Uint8Array(), { stream: !done });
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = done ? "" : lines.pop();
      for (const line of lines) {
        if (line === "") {
          if (event.data.length) yield { id: event.id, data: event.data.join("\n") };
          event = { id: null, data: [] };
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "id") event.id = text;
        else if (field === "data") event.data.push(text);
      }
      if (done) return;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}

/** Offsets `<ms>-<seq>` (Redis stream ids) in order. */
function offsetAfter(a, b) {
  const [am, as] = a.split("-").map(BigInt);
  const [bm, bs] = b.split("-").map(BigInt);
  return am > bm || (am === bm && as > bs);
}

for (const name of Object.keys(RECORDINGS)) {
  const model = `replay:${name}`;

  test(`${name}: ChatCompletionStream accumulates the same choices through the gateway`, async () => {
    const direct = await streamed(UPSTREAM, model);
    const relayed = await streamed(GATEWAY, model);
    assertSameCompletion(relayed, direct, name);
  });

  test(`${name}: create({stream: true}) through the gateway names the stream; the same chunks`, async () => {
    const direct = await streamed(UPSTREAM, model);
    const { data: stream, response } = await sdk(GATEWAY)
      .chat.completions.create({
        model,
        messages: MESSAGES,
        stream: true,
        stream_options: STREAM_OPTIONS,
      })
      .withResponse();
    assert.equal(response.status, 200);
    assert.match(response.headers.get("x-tokenrelay-stream-id") ?? "", /\S/);
    assert.match(response.headers.get("x-tokenrelay-read-token") ?? "", /\S/);
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    assert.ok(chunks.length > 1);
    assertSameCompletion(await accumulated(chunks), direct, name);
  });

  test(`${name}: a reader that hangs up resumes with Last-Event-ID and accumulates the same`, async () => {
    const direct = await streamed(UPSTREAM, model);
    const auth = { authorization: `Bearer ${API_KEY}` };
    const first = await fetch(`${GATEWAY}/v1/chat/completions`, {
      method: "POST",
      headers: { ...auth, "content-type": "application/json" },
      body: JSON.stringify({
        model: `${model}?delay_ms=10`, // still streaming when the reader comes back
        messages: MESSAGES,
        stream: true,
        stream_options: STREAM_OPTIONS,
      }),
    });
    assert.equal(first.status, 200);
    const streamId = first.headers.get("x-tokenrelay-stream-id");
    const readToken = first.headers.get("x-tokenrelay-read-token");
    assert.ok(streamId && readToken);
    const head = [];
    for await (const event of sseEvents(first.body)) {
      assert.notEqual(event.data, "[DONE]");
      head.push(event);
      if (head.length === 3) break; // hang up: the body is cancelled
    }
    assert.equal(head.length, 3);
    const lastId = head.at(-1).id;
    assert.ok(lastId, "every event carries an id");

    // the read token is enough to read on, with the id of the last event received
    const rest = await fetch(
      `${GATEWAY}/v1/chat/completions/${encodeURIComponent(streamId)}/stream`,
      { headers: { authorization: `Bearer ${readToken}`, "last-event-id": lastId } },
    );
    assert.equal(rest.status, 200);
    assert.match(rest.headers.get("content-type"), /^text\/event-stream/);

    // the same body twice: its SSE ids by hand, its chunks by the SDK's own SSE parser
    const events = [];
    const sdkChunks = [];
    await Promise.all([
      (async () => {
        for await (const event of sseEvents(rest.clone().body)) events.push(event);
      })(),
      (async () => {
        for await (const chunk of Stream.fromSSEResponse(rest, new AbortController())) {
          sdkChunks.push(chunk);
        }
      })(),
    ]);
    assert.equal(events.at(-1)?.data, "[DONE]");
    const restEvents = events.slice(0, -1);
    assert.ok(restEvents.length > 0);
    assert.deepEqual(sdkChunks, restEvents.map((event) => JSON.parse(event.data)));

    // every event once, in order, after the last one received (the frames of the stream's
    // end -- the last finish chunk, the usage chunk -- share one offset, which the gateway
    // writes on their [DONE] alone: a reader cut among them reads them again)
    const ids = [...head, ...events].map((event) => event.id).filter(Boolean);
    assert.ok(restEvents.some((event) => event.id), "the resumed events carry ids");
    for (let i = 1; i < ids.length; i++) {
      assert.ok(offsetAfter(ids[i], ids[i - 1]), `${ids[i]} after ${ids[i - 1]}`);
    }

    const chunks = [...head.map((event) => JSON.parse(event.data)), ...sdkChunks];
    assertSameCompletion(await accumulated(chunks), direct, name);
  });
}

test("an upstream's 429 rejects with OpenAI.RateLimitError and its Retry-After", async () => {
  const request = sdk(GATEWAY).chat.completions.create({
    model: "replay:openai-text?status=429&retry_after=3",
    messages: MESSAGES,
    stream: true,
  });
  await assert.rejects(request, (error) => {
    assert.ok(error instanceof OpenAI.RateLimitError, `${error?.constructor?.name}: ${error}`);
    assert.ok(error instanceof OpenAI.APIError);
    assert.equal(error.status, 429);
    assert.equal(error.headers.get("retry-after"), "3");
    assert.equal(error.type, "requests");
    return true;
  });
  // the ChatCompletionStream helper rejects the same way
  const stream = sdk(GATEWAY).chat.completions.stream({
    model: "replay:openai-text?status=429&retry_after=3",
    messages: MESSAGES,
  });
  await assert.rejects(stream.finalChatCompletion(), OpenAI.RateLimitError);
});
