// Unit tests of web/conversation.js: `node --test web/tests/`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { AnswerBuilder } from "../tokenrelay.js";
import { answerText, chatMessages, parseTurns, storeTurns } from "../conversation.js";

/** An answer as the page keeps it: the reader's, through JSON. */
function answer(...events) {
  const builder = new AnswerBuilder();
  for (const event of events) builder.add(event);
  return JSON.parse(JSON.stringify(builder.answer));
}
const delta = (offset, fields, choice = 0) => ({ offset, type: "delta", choice, ...fields });
const said = (text) => answer(delta("1-0", { role: "assistant", content: text }), { offset: "2-0", type: "done", finish_reason: "stop" });

test("chatMessages: the turns alternate user and assistant, then the new prompt", () => {
  const turns = [{ prompt: "Hi", answer: said("Hello **there**") }, { prompt: "And?", answer: said("Then this.") }];
  assert.deepEqual(chatMessages(turns, "Last"), [
    { role: "user", content: "Hi" },
    { role: "assistant", content: "Hello **there**" },
    { role: "user", content: "And?" },
    { role: "assistant", content: "Then this." },
    { role: "user", content: "Last" },
  ]);
  assert.deepEqual(chatMessages([], "First"), [{ role: "user", content: "First" }]);
});

test("chatMessages: choice 0 carries the conversation on; a refusal is what was said", () => {
  const many = answer(
    delta("1-0", { content: "first" }),
    delta("1-1", { content: "second" }, 1),
  );
  const refused = answer(delta("1-0", { refusal: "I can't help with that." }));
  assert.deepEqual(chatMessages([{ prompt: "a", answer: many }, { prompt: "b", answer: refused }], "c"), [
    { role: "user", content: "a" },
    { role: "assistant", content: "first" },
    { role: "user", content: "b" },
    { role: "assistant", content: "I can't help with that." },
    { role: "user", content: "c" },
  ]);
});

test("chatMessages: a turn that said nothing is left out, prompt and all", () => {
  const calls = answer(delta("1-0", { tool_calls: [{ index: 0, id: "call_1", type: "function", function: { name: "f", arguments: "{}" } }] }));
  const turns = [{ prompt: "failed", answer: null }, { prompt: "tools", answer: calls }, { prompt: "empty", answer: answer() }, { prompt: "ok", answer: said("yes") }];
  assert.equal(answerText(calls), "");
  assert.deepEqual(chatMessages(turns, "next"), [
    { role: "user", content: "ok" },
    { role: "assistant", content: "yes" },
    { role: "user", content: "next" },
  ]);
});

test("parseTurns reads back what storeTurns wrote, and nothing from garbage", () => {
  const turns = [{ prompt: "Hi", answer: said("Hello") }, { prompt: "Nothing came", answer: null }];
  let kept = null;
  assert.equal(storeTurns(turns, (json) => { kept = json; }), 2);
  assert.deepEqual(parseTurns(kept), turns);
  for (const bad of [null, "", "{", "{}", "3", '[{"answer": {}}]']) assert.deepEqual(parseTurns(bad), [], String(bad));
  assert.deepEqual(parseTurns('[{"prompt": "p", "answer": "text"}]'), [{ prompt: "p", answer: null }]);
});

test("storeTurns keeps the newest turns that fit", () => {
  const turns = ["one", "two", "three"].map((prompt) => ({ prompt, answer: said(prompt.repeat(20)) }));
  const limit = JSON.stringify(turns.slice(1)).length;
  let kept = null;
  const write = (json) => {
    if (json.length > limit) throw new DOMException("full", "QuotaExceededError");
    kept = json;
  };
  assert.equal(storeTurns(turns, write), 2);
  assert.deepEqual(parseTurns(kept).map((turn) => turn.prompt), ["two", "three"]);
  assert.equal(storeTurns(turns, () => { throw new Error("no storage"); }), 0);
});
