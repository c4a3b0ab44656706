// Unit tests of web/agent_timeline.js: `node --test web/tests/`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Timeline, shownJson } from "../agent_timeline.js";

const G1 = "gen-1";
const G2 = "gen-2";
const ARGS = '{"city":"Zürich"}';
/** An agent run's messages, as the durable stream holds them (arguments in fragments). */
const RUN = [
  { type: "user", text: "Weather in Zürich?" },
  { type: "delta", generation: G1, choice: 0, role: "assistant", tool_calls: [{ index: 0, id: "call_1", type: "function", function: { name: "get_weather", arguments: "" } }] },
  ...['{"', "city", '":"', "Zürich", '"}'].map((fragment) => ({ type: "delta", generation: G1, choice: 0, tool_calls: [{ index: 0, function: { arguments: fragment } }] })),
  { type: "done", generation: G1, finish_reason: "tool_calls", usage: null },
  { type: "tool_result", tool_call_id: "call_1", name: "get_weather", content: '{"city": "Zürich", "temperature_c": 18}' },
  ...["It", " is", " sunny."].map((text) => ({ type: "token", generation: G2, text })),
  { type: "done", generation: G2, finish_reason: "stop", usage: { total_tokens: 3 } },
  { type: "status", text: "done" },
];

const build = (messages) => {
  const timeline = new Timeline();
  const changed = messages.map((message) => timeline.add(message));
  return { timeline, changed };
};

test("a run makes one item per application message and one per generation, in order", () => {
  const { timeline, changed } = build(RUN);
  assert.deepEqual(timeline.items.map((item) => item.kind), ["user", "generation", "tool_result", "generation", "status"]);
  assert.deepEqual(changed, [0, 1, 1, 1, 1, 1, 1, 1, 2, 3, 3, 3, 3, 4]);
  const [user, first, result, second, status] = timeline.items;
  assert.equal(user.text, "Weather in Zürich?");
  assert.equal(first.id, G1);
  assert.equal(first.ended, true);
  assert.deepEqual(first.answer.toolCalls, [{ index: 0, id: "call_1", type: "function", name: "get_weather", arguments: ARGS }]);
  assert.equal(first.answer.finishReason, "tool_calls");
  assert.equal(first.answer.text, "");
  assert.deepEqual(result, { kind: "tool_result", toolCallId: "call_1", name: "get_weather", content: '{"city": "Zürich", "temperature_c": 18}' });
  assert.equal(second.answer.text, "It is sunny.");
  assert.equal(second.ended, true);
  assert.deepEqual(status, { kind: "status", text: "done", detail: null });
});

test("a generation's item is a new object after each change; unchanged items keep theirs", () => {
  const timeline = new Timeline();
  RUN.slice(0, 3).forEach((message) => timeline.add(message));
  const [user, before] = timeline.items;
  timeline.add(RUN[3]);
  assert.equal(timeline.items[0], user);
  assert.notEqual(timeline.items[1], before);
  assert.equal(before.answer.toolCalls[0].arguments, '{"');
  assert.equal(timeline.items[1].answer.toolCalls[0].arguments, '{"city');
  assert.equal(timeline.items[1].ended, false);
});

test("a run rebuilt from any split of its messages is the same (a reload resumes it)", () => {
  const whole = build(RUN).timeline.items;
  for (let cut = 0; cut <= RUN.length; cut++) {
    const timeline = new Timeline();
    for (const message of JSON.parse(JSON.stringify(RUN.slice(0, cut)))) timeline.add(message); // as kept
    for (const message of RUN.slice(cut)) timeline.add(message); // as read on
    assert.deepEqual(JSON.parse(JSON.stringify(timeline.items)), JSON.parse(JSON.stringify(whole)), `cut at ${cut}`);
  }
});

test("a generation's error ends it with its code; unknown messages change nothing", () => {
  const { timeline, changed } = build([
    { type: "token", generation: G1, text: "Half" },
    { type: "error", generation: G1, code: "upstream_error", message: "the upstream failed", retryable: true },
    { type: "something_else", text: "?" },
    "not an object",
    null,
    [1, 2],
    { type: "status", text: "failed", detail: "upstream_error: the upstream failed" },
  ]);
  assert.deepEqual(changed, [0, 0, -1, -1, -1, -1, 1]);
  assert.equal(timeline.items[0].answer.text, "Half");
  assert.equal(timeline.items[0].ended, true);
  assert.deepEqual(timeline.items[0].error, { code: "upstream_error", message: "the upstream failed" });
  assert.deepEqual(timeline.items[1], { kind: "status", text: "failed", detail: "upstream_error: the upstream failed" });
});

test("the generation id is not taken for a field of the answer", () => {
  const { timeline } = build([{ type: "delta", generation: G1, choice: 0, content: "a" }, { type: "delta", generation: G1, choice: 0, content: "b" }]);
  assert.equal(timeline.items[0].answer.text, "ab");
  assert.equal(Object.hasOwn(timeline.items[0].answer.message, "generation"), false);
});

test("shownJson: pretty once whole, as it is before", () => {
  assert.deepEqual(shownJson(ARGS), { text: '{\n  "city": "Zürich"\n}', complete: true });
  assert.deepEqual(shownJson('{"city":"Zü'), { text: '{"city":"Zü', complete: false });
  assert.deepEqual(shownJson("18 °C"), { text: "18 °C", complete: false });
  assert.deepEqual(shownJson("3"), { text: "3", complete: false });
  assert.deepEqual(shownJson(""), { text: "", complete: false });
});
