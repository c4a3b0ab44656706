// @ts-check
// The demo chat page: one answer at a time, resumable across reloads and reconnects.
// What it needs to resume lives in sessionStorage: the stream id, its read token, the
// offset of the last event shown and the text up to that offset.
import { StreamReader, createStream, States } from "/web/tokenrelay.js";

const SAVED = "tokenrelay.demo";
const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const form = /** @type {HTMLFormElement} */ ($("ask"));
const prompt = /** @type {HTMLTextAreaElement} */ ($("prompt"));
const model = /** @type {HTMLInputElement} */ ($("model"));
const send = /** @type {HTMLButtonElement} */ ($("send"));
const stop = /** @type {HTMLButtonElement} */ ($("stop"));
const answer = $("answer");
const state = $("state");
const share = /** @type {HTMLAnchorElement} */ ($("share"));
const offsetLabel = $("offset");

/** @type {StreamReader | null} */
let reader = null;

/**
 * @typedef {{streamId: string, token: string, offset: string | null, text: string,
 *            prompt: string, ended: boolean}} Saved
 */

/** @returns {Saved | null} */
function loadSaved() {
  try {
    return JSON.parse(sessionStorage.getItem(SAVED) || "null");
  } catch {
    return null;
  }
}

/** @param {Saved} saved */
function save(saved) {
  sessionStorage.setItem(SAVED, JSON.stringify(saved));
}

/** @param {string} name @param {string} label */
function showState(name, label) {
  state.dataset.state = name;
  state.textContent = label;
}

/** @param {string} text */
function showText(text) {
  answer.textContent = text;
}

const LABELS = {
  [States.CONNECTING]: "Connecting…",
  [States.STREAMING]: "Streaming",
  [States.RECONNECTING]: "Reconnecting…",
  [States.DONE]: "Done",
  [States.FAILED]: "Failed",
};

/**
 * Follow a stream from `offset`, showing `text` as what came before it.
 * @param {Saved} saved
 * @param {boolean} remember keep progress in sessionStorage (not for a shared view)
 */
function follow(saved, remember) {
  reader?.close();
  showText(saved.text);
  share.href = `/?stream=${encodeURIComponent(saved.streamId)}&token=${encodeURIComponent(saved.token)}`;
  share.hidden = false;
  const current = new StreamReader({
    streamId: saved.streamId,
    token: saved.token,
    offset: saved.offset,
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
    },
    onEvent(event) {
      const text = saved.text + current.text;
      showText(text);
      offsetLabel.textContent = `offset ${event.offset}`;
      if (remember) {
        save({ ...saved, offset: event.offset, text, ended: event.type !== "token" });
      }
    },
  });
  reader = current;
  current.start().catch(() => {}); // failures are shown through onState
}

form.addEventListener("submit", async (submitted) => {
  submitted.preventDefault();
  const text = prompt.value.trim();
  if (!text) return;
  send.disabled = true;
  showState(States.CONNECTING, "Starting…");
  try {
    const created = await createStream({
      body: { model: model.value || "mock", messages: [{ role: "user", content: text }] },
    });
    /** @type {Saved} */
    const saved = { streamId: created.id, token: created.read_token, offset: null, text: "", prompt: text, ended: false };
    save(saved);
    follow(saved, true);
  } catch (error) {
    send.disabled = false;
    const code = /** @type {{code?: string}} */ (error).code ?? "network_error";
    showState("failed", `Failed: ${code}`);
  }
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

// A shared link (?stream=&token=) follows that stream from its start; otherwise resume
// whatever this tab was showing before a reload.
const params = new URLSearchParams(location.search);
const sharedId = params.get("stream");
const sharedToken = params.get("token");
if (sharedId && sharedToken) {
  follow({ streamId: sharedId, token: sharedToken, offset: null, text: "", prompt: "", ended: false }, false);
} else {
  const saved = loadSaved();
  if (saved) {
    prompt.value = saved.prompt;
    follow(saved, true);
  }
}
