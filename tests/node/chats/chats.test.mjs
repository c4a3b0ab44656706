// The `ai` npm package's DefaultChatTransport, as a browser's useChat drives it, against
// tokenrelay's /v1/chats (run by tests/test_ai_sdk_chats.py, which starts the mock model, a
// gateway with API keys and a worker). Every test takes the documented browser path: a chat
// token minted with the API key for one chat, sent as `Authorization: Bearer` through the
// transport's `headers`, and `model` in its `body`. Every chunk a test receives is checked
// against the fields AI SDK 5's strict chunk schema allows (AI SDK 7, pinned here, accepts
// extra fields; an AI SDK 5 page would reject the whole stream).

import assert from "node:assert/strict";
import { test } from "node:test";

import { DefaultChatTransport, readUIMessageStream } from "ai";

import {
  GATEWAY,
  mintChatToken,
  mockRecords,
  newChatId,
  waitForMockRecord,
} from "./stack.mjs";

// --- what AI SDK 5 accepts ------------------------------------------------------------------

const TEXT_PART = { required: ["id"], optional: ["providerMetadata"] };
const TEXT_DELTA = { required: ["id", "delta"], optional: ["providerMetadata"] };

/** Per chunk type: the fields AI SDK 5's strictObject schema requires, and the others it
 * allows; any other field (or type) makes an AI SDK 5 client reject the stream. */
const AI_SDK_5_CHUNKS = {
  start: { required: [], optional: ["messageId", "messageMetadata"] },
  "start-step": { required: [], optional: [] },
  "finish-step": { required: [], optional: [] },
  "text-start": TEXT_PART,
  "text-end": TEXT_PART,
  "reasoning-start": TEXT_PART,
  "reasoning-end": TEXT_PART,
  "text-delta": TEXT_DELTA,
  "reasoning-delta": TEXT_DELTA,
  "tool-input-start": {
    required: ["toolCallId", "toolName"],
    optional: ["providerExecuted", "dynamic"],
  },
  "tool-input-delta": { required: ["toolCallId", "inputTextDelta"], optional: [] },
  "tool-input-available": {
    required: ["toolCallId", "toolName", "input"],
    optional: ["providerExecuted", "providerMetadata", "dynamic"],
  },
  "tool-input-error": {
    required: ["toolCallId", "toolName", "input", "errorText"],
    optional: ["providerExecuted", "providerMetadata", "dynamic"],
  },
  finish: { required: [], optional: ["finishReason", "messageMetadata"] },
  abort: { required: [], optional: ["reason"] },
  error: { required: ["errorText"], optional: [] },
};

const FINISH_REASONS = [
  "stop",
  "length",
  "content-filter",
  "tool-calls",
  "error",
  "other",
  "unknown",
];

function assertAiSdk5Chunk(chunk, where) {
  const shape = AI_SDK_5_CHUNKS[chunk?.type];
  assert.ok(shape, `${where}: a chunk of a type AI SDK 5 does not know: ${JSON.stringify(chunk)}`);
  const allowed = new Set(["type", ...shape.required, ...shape.optional]);
  const unknown = Object.keys(chunk).filter((name) => !allowed.has(name));
  assert.deepEqual(unknown, [], `${where}: fields AI SDK 5 rejects in ${JSON.stringify(chunk)}`);
  for (const name of shape.required) {
    assert.ok(chunk[name] !== undefined, `${where}: ${name} missing in ${JSON.stringify(chunk)}`);
  }
  for (const name of ["id", "delta", "toolCallId", "toolName", "inputTextDelta", "errorText"]) {
    if (name in chunk) assert.equal(typeof chunk[name], "string", `${where}: ${name}`);
  }
  if ("finishReason" in chunk) assert.ok(FINISH_REASONS.includes(chunk.finishReason), where);
}

/** Every chunk of every response a test's transport received, as the gateway sent it; and
 * that each UI message stream ended with `[DONE]`, nothing after it, unless the test itself
 * aborted it. */
function assertEveryChunkIsAiSdk5s(http) {
  let checked = 0;
  for (const [index, response] of http.entries()) {
    const where = `${response.method} ${response.url} (response ${index})`;
    assert.deepEqual(response.unparsable, [], `${where}: frames that are not JSON`);
    assert.equal(response.afterDone, 0, `${where}: frames after [DONE]`);
    for (const chunk of response.chunks) assertAiSdk5Chunk(chunk, where);
    checked += response.chunks.length;
  }
  assert.ok(checked > 0, "no chunk was checked");
}

// --- the browser's side -----------------------------------------------------------------------

/** A fetch for the transport that keeps what it received: each response's status, headers
 * and, for a UI message stream, its raw `data:` frames parsed (the bytes pass unchanged). */
function recordingFetch() {
  const http = [];
  async function fetchAndRecord(url, init = {}) {
    const response = await fetch(url, init);
    const record = {
      url: String(url),
      method: init.method ?? "GET",
      status: response.status,
      headers: response.headers,
      chunks: [],
      unparsable: [],
      done: false,
      afterDone: 0,
    };
    http.push(record);
    const type = response.headers.get("content-type") ?? "";
    if (!response.body || !type.startsWith("text/event-stream")) return response;
    const decoder = new TextDecoder();
    let pending = "";
    const frame = (line) => {
      if (!line.startsWith("data:")) return; // a comment (keep-alive) or a blank line
      const data = line.slice(5).trim();
      if (record.done) record.afterDone += 1;
      if (data === "[DONE]") {
        record.done = true;
        return;
      }
      try {
        record.chunks.push(JSON.parse(data));
      } catch {
        record.unparsable.push(data);
      }
    };
    const recorder = new TransformStream({
      transform(bytes, controller) {
        pending += decoder.decode(bytes, { stream: true });
        const lines = pending.split("\n");
        pending = lines.pop();
        lines.forEach(frame);
        controller.enqueue(bytes);
      },
      flush() {
        frame(pending + decoder.decode());
      },
    });
    return new Response(response.body.pipeThrough(recorder), {
      status: response.status,
      statusText: response.statusText,
      headers: response.headers,
    });
  }
  return { http, fetch: fetchAndRecord };
}

/** The transport a page of this chat would build: its chat token in `headers`, the model in
 * `body`; `token: null` sends no credentials. */
async function chatTransport(chatId, model, { token, body = {} } = {}) {
  const bearer = token === undefined ? await mintChatToken(chatId) : token;
  const { http, fetch } = recordingFetch();
  const transport = new DefaultChatTransport({
    api: `${GATEWAY}/v1/chats`,
    headers: bearer === null ? {} : { Authorization: `Bearer ${bearer}` },
    body: { model, ...body },
    fetch,
  });
  return { transport, http, token: bearer };
}

function userMessage(id, text) {
  return { id, role: "user", parts: [{ type: "text", text }] };
}

function send(transport, chatId, text, abortSignal) {
  return transport.sendMessages({
    trigger: "submit-message",
    chatId,
    messageId: undefined,
    messages: [userMessage(`${chatId}-u1`, text)],
    abortSignal,
  });
}

/** The stream, with every chunk the SDK yields also pushed to `into`. */
function tap(stream, into) {
  return stream.pipeThrough(
    new TransformStream({
      transform(chunk, controller) {
        into.push(chunk);
        controller.enqueue(chunk);
      },
    }),
  );
}

const ofType = (chunks, type) => chunks.filter((chunk) => chunk.type === type);
const deltas = (chunks, type = "text-delta") =>
  ofType(chunks, type)
    .map((chunk) => chunk.delta)
    .join("");
const textOf = (message, type = "text") =>
  message.parts
    .filter((part) => part.type === type)
    .map((part) => part.text)
    .join("");

/** Reads until `enough(chunks)` holds; fails if the stream ends first. */
async function readUntil(reader, chunks, enough) {
  while (!enough(chunks)) {
    const { done } = await reader.read();
    assert.ok(!done, `the stream ended early: ${JSON.stringify(chunks)}`);
  }
}

/** Reads the rest; the stream must close cleanly. */
async function readToEnd(reader) {
  for (;;) {
    const { done } = await reader.read();
    if (done) return;
  }
}

/** What a tab that closes does: abort the fetch; the stream errors (AbortError). */
async function abortReading(aborting, reader) {
  aborting.abort();
  await assert.rejects(readToEnd(reader), (error) => error.name === "AbortError");
}

/** The message useChat would show once the stream ends: readUIMessageStream's last one. */
async function finalMessage(stream) {
  let last;
  for await (const message of readUIMessageStream({ stream, terminateOnError: true })) {
    last = message;
  }
  assert.ok(last, "readUIMessageStream yielded no message");
  return last;
}

async function waitFor(condition, what, timeoutMs = 5000) {
  const started = performance.now();
  while (!condition()) {
    assert.ok(performance.now() - started < timeoutMs, `waited ${timeoutMs} ms for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Sends a message, reads the answer until `enough(chunks)`, aborts like a closed tab, and
 * resumes with reconnectToStream while the generation still runs: what both readers got,
 * the message the resumed stream makes and the mock's record once the generation ended. */
async function interruptThenResume(label, model, { body, text, enough }) {
  const chatId = newChatId(label);
  const { transport, http } = await chatTransport(chatId, model, { body });
  const aborting = new AbortController();
  const first = [];
  const reader = tap(await send(transport, chatId, text, aborting.signal), first).getReader();
  await readUntil(reader, first, enough);
  await abortReading(aborting, reader);

  const streamId = http[0].headers.get("x-tokenrelay-stream-id");
  assert.ok(streamId, "POST /v1/chats names its stream");
  assert.equal(http[0].headers.get("x-vercel-ai-ui-message-stream"), "v1");
  const [running] = await mockRecords(streamId);
  assert.equal(running.completed, false, "the answer had ended before the resume");

  const replay = [];
  const resumed = await transport.reconnectToStream({ chatId });
  assert.notEqual(resumed, null, "reconnectToStream found nothing in progress");
  const message = await finalMessage(tap(resumed, replay));
  assert.equal(http[1].status, 200);
  assert.equal(http[1].headers.get("x-tokenrelay-stream-id"), streamId);
  assert.equal(http[1].done, true, "the resumed stream ended without [DONE]");

  const { record } = await waitForMockRecord(
    streamId,
    (r) => r.completed || r.closed_by_client_at !== null,
  );
  return { chatId, http, first, replay, message, record };
}

/** What every resumed answer shows: the replay starts with the first response's `start`
 * (same messageId), repeats what that response had read, and makes a message of that id;
 * the abort did not stop the generation. */
function assertReplayedFromStart({ first, replay, message, record }) {
  const messageId = first[0].messageId;
  assert.deepEqual(first.slice(0, 2), [{ type: "start", messageId }, { type: "start-step" }]);
  assert.match(messageId, /^\S+$/);
  assert.deepEqual(replay[0], { type: "start", messageId });
  assert.deepEqual(replay.slice(0, first.length), first, "the replay differs from what was read");
  assert.ok(replay.length > first.length, "the first response had read the whole answer");
  assert.equal(message.id, messageId);
  assert.equal(message.role, "assistant");
  assert.equal(record.completed, true, "the generation did not finish");
  assert.equal(record.closed_by_client_at, null, "the abort closed the upstream");
}

// --- the tests --------------------------------------------------------------------------------

const LIMIT = { timeout: 15_000 }; // a stream that never ends fails its test, not the run

test(
  "a: an answer read in part, aborted, then resumed from start has the model's whole text",
  LIMIT,
  async () => {
    const seen = await interruptThenResume("resume-text", "mock?tokens=40&rate=20", {
      text: "Tell me about rivers.",
      enough: (chunks) => ofType(chunks, "text-delta").length >= 3,
    });
    const { first, replay, message, record, http } = seen;
    assertReplayedFromStart(seen);
    assert.ok(record.sent_text.length > 0);
    assert.equal(textOf(message), record.sent_text);
    assert.equal(record.choices[0].content, record.sent_text);
    const readBefore = deltas(first);
    assert.ok(readBefore.length > 0 && readBefore.length < record.sent_text.length, readBefore);
    assert.ok(record.sent_text.startsWith(readBefore), "the first response's text differs");
    assert.deepEqual(
      message.parts.map((part) => [part.type, part.state]),
      [
        ["step-start", undefined],
        ["text", "done"],
      ],
    );
    assert.deepEqual(replay.slice(-2), [
      { type: "finish-step" },
      { type: "finish", finishReason: "stop" },
    ]);
    assert.deepEqual(record.messages, [{ role: "user", content: "Tell me about rivers." }]);
    assertEveryChunkIsAiSdk5s(http);
  },
);

const LOOKUP_ORDER = {
  type: "function",
  function: {
    name: "lookup_order",
    description: "Find an order by its number.",
    parameters: {
      type: "object",
      properties: {
        order_number: { type: "string" },
        region: { type: "string", enum: ["eu", "us", "apac"] },
        limit: { type: "integer", minimum: 1, maximum: 5 },
      },
      required: ["order_number", "region", "limit"],
    },
  },
};

test(
  "b: a resumed tool call (tools in the body, OpenAI's format) is a tool part with the upstream's call",
  LIMIT,
  async () => {
    const seen = await interruptThenResume("resume-tool", "mock?tools=1&text=0&rate=20", {
      body: { tools: [LOOKUP_ORDER] },
      text: "Where is order 8812?",
      enough: (chunks) => ofType(chunks, "tool-input-start").length === 1,
    });
    const { first, replay, message, record, http } = seen;
    assertReplayedFromStart(seen);
    const [call] = record.choices[0].tool_calls;
    assert.equal(record.choices[0].tool_calls.length, 1);
    assert.equal(call.name, "lookup_order", "the body's tools did not reach the upstream");
    assert.deepEqual(ofType(first, "tool-input-start"), [
      { type: "tool-input-start", toolCallId: call.id, toolName: "lookup_order" },
    ]);
    assert.equal(
      ofType(replay, "tool-input-delta")
        .map((chunk) => chunk.inputTextDelta)
        .join(""),
      call.arguments,
    );
    // as a page would store it (the SDK leaves the fields a tool part does not have undefined)
    assert.deepEqual(JSON.parse(JSON.stringify(message.parts)), [
      { type: "step-start" },
      {
        type: "tool-lookup_order",
        toolCallId: call.id,
        state: "input-available",
        input: JSON.parse(call.arguments),
      },
    ]);
    assert.equal(textOf(message), "");
    assert.deepEqual(replay.slice(-2), [
      { type: "finish-step" },
      { type: "finish", finishReason: "tool-calls" },
    ]);
    assertEveryChunkIsAiSdk5s(http);
  },
);

test(
  "c: a resumed answer with reasoning has the model's reasoning, then its text",
  LIMIT,
  async () => {
    const model = "mock?reasoning=20&tokens=10&rate=50";
    const seen = await interruptThenResume("resume-reasoning", model, {
      text: "Think first.",
      enough: (chunks) => ofType(chunks, "reasoning-delta").length >= 2,
    });
    const { first, message, record, http } = seen;
    assertReplayedFromStart(seen);
    const { reasoning, content } = record.choices[0];
    assert.ok(reasoning.length > 0 && content.length > 0, JSON.stringify(record.choices[0]));
    assert.ok(reasoning.startsWith(deltas(first, "reasoning-delta")));
    assert.deepEqual(
      message.parts.map((part) => [part.type, part.state]),
      [
        ["step-start", undefined],
        ["reasoning", "done"],
        ["text", "done"],
      ],
    );
    assert.equal(textOf(message, "reasoning"), reasoning);
    assert.equal(textOf(message), content);
    assertEveryChunkIsAiSdk5s(http);
  },
);

test(
  "d1: a chat whose answer has finished has nothing to resume (reconnectToStream is null)",
  LIMIT,
  async () => {
    const chatId = newChatId("finished");
    const { transport, http } = await chatTransport(chatId, "mock?tokens=5&rate=0");
    const message = await finalMessage(await send(transport, chatId, "Short, please."));
    const [record] = await mockRecords(http[0].headers.get("x-tokenrelay-stream-id"));
    assert.equal(textOf(message), record.sent_text);
    assert.equal(http[0].done, true);
    assert.equal(await transport.reconnectToStream({ chatId }), null);
    assert.equal(http[1].status, 204);
    assertEveryChunkIsAiSdk5s(http);
  },
);

test(
  "d2: a chat id never used has nothing to resume (reconnectToStream is null)",
  LIMIT,
  async () => {
    const chatId = newChatId("never-used");
    const { transport, http } = await chatTransport(chatId, "mock");
    assert.equal(await transport.reconnectToStream({ chatId }), null);
    assert.deepEqual(
      http.map((response) => [response.method, response.status]),
      [["GET", 204]],
    );
  },
);

test(
  "e: stop closes the upstream within a second and both readers end with abort",
  LIMIT,
  async () => {
    const chatId = newChatId("stop");
    const { transport, http, token } = await chatTransport(chatId, "mock?tokens=200&rate=20");
    const original = [];
    const answer = await send(transport, chatId, "A long story, please.");
    const reader = tap(answer, original).getReader();
    await readUntil(reader, original, (chunks) => ofType(chunks, "text-delta").length >= 2);
    const streamId = http[0].headers.get("x-tokenrelay-stream-id");

    const resumed = [];
    const resuming = await transport.reconnectToStream({ chatId });
    assert.notEqual(resuming, null);
    const resumedMessage = finalMessage(tap(resuming, resumed));
    await waitFor(() => ofType(resumed, "text-delta").length >= 3, "the resumed reader's text");

    const stopping = performance.now();
    const stop = await fetch(`${GATEWAY}/v1/chats/${chatId}/stop`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}` },
    });
    assert.equal(stop.status, 202);
    assert.deepEqual(await stop.json(), { id: chatId, stopped: true });
    const { record } = await waitForMockRecord(
      streamId,
      (r) => r.completed || r.closed_by_client_at !== null,
    );
    const closedAfterMs = performance.now() - stopping;
    assert.equal(record.completed, false, "the generation finished before the stop");
    assert.notEqual(record.closed_by_client_at, null);
    assert.ok(
      closedAfterMs < 1000,
      `the upstream was closed ${closedAfterMs.toFixed(0)} ms after the stop`,
    );

    await readToEnd(reader); // closes cleanly: no error
    const message = await resumedMessage;
    for (const chunks of [original, resumed]) {
      assert.deepEqual(chunks.slice(-2), [{ type: "finish-step" }, { type: "abort" }]);
    }
    assert.deepEqual(resumed, original, "two readers of one answer got different chunks");
    assert.deepEqual(
      http.map((response) => [response.method, response.status, response.done]),
      [
        ["POST", 200, true],
        ["GET", 200, true],
      ],
    );
    const shown = textOf(message);
    assert.equal(shown, deltas(original));
    assert.ok(shown.length > 0, "the readers got no text before the stop");
    assert.ok(record.sent_text.startsWith(shown), `${shown} | ${record.sent_text}`);
    assert.ok(record.tokens_sent < 200, `the mock sent all ${record.tokens_sent} tokens`);
    assert.equal(message.id, original[0].messageId);

    assert.equal(await transport.reconnectToStream({ chatId }), null);
    assert.equal(http[2].status, 204);
    const again = await fetch(`${GATEWAY}/v1/chats/${chatId}/stop`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}` },
    });
    assert.equal(again.status, 202);
    assert.deepEqual(await again.json(), { id: chatId, stopped: false });
    assertEveryChunkIsAiSdk5s(http);
  },
);

function rejectsWith(status, code) {
  return (error) => {
    assert.equal(error.name, "AI_APICallError");
    assert.equal(error.statusCode, status);
    assert.equal(JSON.parse(error.responseBody).error.code, code);
    return true;
  };
}

test(
  "f1: a chat token covers only its chat: another chat's send, resume and stop are 403",
  LIMIT,
  async () => {
    const chatA = newChatId("token-a");
    const chatB = newChatId("token-b");
    const tokenA = await mintChatToken(chatA);
    const { transport, http } = await chatTransport(chatB, "mock?tokens=5&rate=0", {
      token: tokenA,
    });
    await assert.rejects(send(transport, chatB, "Hello?"), rejectsWith(403, "forbidden"));
    await assert.rejects(
      transport.reconnectToStream({ chatId: chatB }),
      rejectsWith(403, "forbidden"),
    );
    const stop = await fetch(`${GATEWAY}/v1/chats/${chatB}/stop`, {
      method: "POST",
      headers: { Authorization: `Bearer ${tokenA}` },
    });
    assert.equal(stop.status, 403);
    assert.deepEqual(
      http.map((response) => [response.method, response.status]),
      [
        ["POST", 403],
        ["GET", 403],
      ],
    );
    // and the token does open its own chat
    const own = await chatTransport(chatA, "mock?tokens=5&rate=0", { token: tokenA });
    const message = await finalMessage(await send(own.transport, chatA, "Hello?"));
    const [record] = await mockRecords(own.http[0].headers.get("x-tokenrelay-stream-id"));
    assert.equal(textOf(message), record.sent_text);
    assertEveryChunkIsAiSdk5s(own.http);
  },
);

test("f2: without credentials a send and a resume are 401", LIMIT, async () => {
  const chatId = newChatId("anonymous");
  const { transport, http } = await chatTransport(chatId, "mock?tokens=5&rate=0", { token: null });
  await assert.rejects(send(transport, chatId, "Hello?"), rejectsWith(401, "unauthorized"));
  await assert.rejects(transport.reconnectToStream({ chatId }), rejectsWith(401, "unauthorized"));
  assert.deepEqual(
    http.map((response) => [response.method, response.status]),
    [
      ["POST", 401],
      ["GET", 401],
    ],
  );
});
