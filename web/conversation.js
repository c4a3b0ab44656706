// @ts-check
// The demo page's conversation, apart from the page so `node --test web/tests/` can test it:
// the chat messages a new prompt sends upstream, and the earlier turns as sessionStorage keeps
// them.

/** @typedef {import("/web/tokenrelay.js").Answer} Answer */

/**
 * A finished turn: the prompt, and the answer it got (the reader's `answer`, plain JSON; null
 * when nothing came).
 * @typedef {{ prompt: string, answer: Answer | null }} Turn
 */

/**
 * What an answer says, as the conversation carries it on: choice 0's text, else its refusal;
 * "" when neither (only tool calls, or it failed or was stopped before a word).
 * @param {Answer | null} answer
 * @returns {string}
 */
export function answerText(answer) {
  return answer?.text || answer?.refusal || "";
}

/**
 * The OpenAI chat messages of `prompt` after `turns`: each turn's prompt (user) and what its
 * answer says (assistant), then the prompt. A turn whose answer says nothing is left out,
 * prompt and all: an empty assistant message is refused by some upstreams, a user message
 * without an answer would break the alternation, and its tool calls have no results to send.
 * @param {readonly Turn[]} turns
 * @param {string} prompt
 * @returns {{ role: "user" | "assistant", content: string }[]}
 */
export function chatMessages(turns, prompt) {
  /** @type {{ role: "user" | "assistant", content: string }[]} */
  const messages = [];
  for (const turn of turns) {
    const said = answerText(turn.answer);
    if (said) messages.push({ role: "user", content: turn.prompt }, { role: "assistant", content: said });
  }
  messages.push({ role: "user", content: prompt });
  return messages;
}

/**
 * The turns as kept (`storeTurns`' JSON), or none when there are none or they don't parse.
 * @param {string | null} json
 * @returns {Turn[]}
 */
export function parseTurns(json) {
  try {
    /** @type {unknown} */ const kept = JSON.parse(json ?? "[]");
    if (!Array.isArray(kept)) return [];
    return kept
      .filter((turn) => typeof turn?.prompt === "string")
      .map((turn) => ({ prompt: turn.prompt, answer: turn.answer !== null && typeof turn.answer === "object" ? turn.answer : null }));
  } catch {
    return [];
  }
}

/**
 * Keeps the turns with `write` (sessionStorage's setItem), as many of the newest as it takes:
 * when they don't fit (it throws), the oldest go first. Returns how many were kept.
 * @param {readonly Turn[]} turns
 * @param {(json: string) => void} write
 * @returns {number}
 */
export function storeTurns(turns, write) {
  for (let first = 0; first <= turns.length; first++) {
    try {
      write(JSON.stringify(turns.slice(first)));
      return turns.length - first;
    } catch { /* over the quota: without the oldest turn */ }
  }
  return 0;
}
