// The `ai` npm package on recorded real streams: tests/test_chats_recordings.py replays them
// (OpenAI parallel tool calls, DeepSeek and Ollama reasoning, a vLLM tool call, plain text)
// as the worker's upstream and passes, in TOKENRELAY_RECORDED_ANSWERS, what each recording's
// choice 0 said (text, reasoning, tool calls with parsed arguments, finish reason). Through a
// DefaultChatTransport with a chat token, readUIMessageStream must make exactly that message.

import assert from "node:assert/strict";
import { test } from "node:test";

import { DefaultChatTransport, readUIMessageStream } from "ai";

import { GATEWAY, mintChatToken, newChatId } from "./stack.mjs";

const RECORDED = JSON.parse(process.env.TOKENRELAY_RECORDED_ANSWERS ?? "{}");
const FINISH_REASONS = { stop: "stop", length: "length", tool_calls: "tool-calls" };

for (const [name, expected] of Object.entries(RECORDED)) {
  test(`the AI SDK reads the recording ${name} through tokenrelay as it was sent`, async () => {
    const chatId = newChatId("recording");
    const transport = new DefaultChatTransport({
      api: `${GATEWAY}/v1/chats`,
      headers: { Authorization: `Bearer ${await mintChatToken(chatId)}` },
      body: { model: `replay:${name}` },
    });
    const stream = await transport.sendMessages({
      trigger: "submit-message",
      chatId,
      messageId: undefined,
      messages: [{ id: `${chatId}-u1`, role: "user", parts: [{ type: "text", text: "replay" }] }],
      abortSignal: undefined,
    });
    let finishReason;
    const watched = stream.pipeThrough(
      new TransformStream({
        transform(chunk, controller) {
          if (chunk.type === "finish") finishReason = chunk.finishReason;
          controller.enqueue(chunk);
        },
      }),
    );
    let message;
    for await (const shown of readUIMessageStream({ stream: watched, terminateOnError: true })) {
      message = shown;
    }
    assert.ok(message, "readUIMessageStream yielded no message");
    const parts = message.parts;
    const joined = (type) => parts.filter((p) => p.type === type).map((p) => p.text).join("");
    const tools = parts
      .filter((p) => p.type.startsWith("tool-"))
      .map((p) => ({ toolCallId: p.toolCallId, name: p.type.slice(5), input: p.input, state: p.state }));
    assert.equal(joined("text"), expected.text);
    assert.equal(joined("reasoning"), expected.reasoning);
    assert.deepEqual(
      tools,
      expected.tools.map((call) => ({ ...call, state: "input-available" })),
    );
    assert.equal(finishReason, FINISH_REASONS[expected.finish]);
  });
}
