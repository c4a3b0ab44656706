// @ts-check
// The admin pages: a live list of streams (#/), one stream with its answer (reasoning, text,
// refusal, tool calls, every choice; a Responses stream's output text, reasoning summary and
// function calls alike) and raw events growing live (#/streams/<id>), and the system (#/system).
// A durable stream (/v1/ds) shows its path, content type, expiry, fork and producers, and its
// messages as they come (a text stream's text, a JSON stream's values, other bytes' sizes),
// until it is closed; it has no cancel, only purge. Every call goes to /admin/api/ with the admin token (kept in
// sessionStorage) as `Authorization: Bearer`; a 401/403 answer forgets the token and asks for
// it again. Data is only ever inserted with textContent.
import { AnswerBuilder } from "/web/tokenrelay.js";

/** @typedef {import("/web/tokenrelay.js").Answer} Answer */
/** @typedef {import("/web/tokenrelay.js").Choice} Choice */
/** @typedef {import("/web/tokenrelay.js").ToolCall} ToolCall */

const TOKEN_KEY = "tokenrelay.admin";
const API = "/admin/api";
const LIST_LIMIT = 50;
const LIST_EVERY_MS = 1000;
const STREAM_EVERY_MS = 1000;
const SYSTEM_EVERY_MS = 2000;
const MAX_EVENT_ROWS = 2000;
const FINAL = new Set(["completed", "failed", "cancelled"]); // a durable stream: open, then completed

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));

// ---------------------------------------------------------------------------------------------
// The token and the API

/** An answer that means the token is wrong (401) or not the admin token (403). */
class AuthError extends Error {}

/** A non-2xx answer other than 401/403. */
class ApiError extends Error {
  /** @param {string} message @param {string} code @param {number} status */
  constructor(message, code, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/** @param {Response} res @returns {Promise<{code: string, message: string}>} */
async function errorOf(res) {
  /** @type {any} */ let body = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  return {
    code: String(body?.error?.code ?? `http_${res.status}`),
    message: String(body?.error?.message ?? `HTTP ${res.status} ${res.statusText}`.trim()),
  };
}

/**
 * Calls the admin API; returns the parsed JSON (null for an empty body). A 401/403 signs out.
 * @param {string} path below /admin/api
 * @param {RequestInit & {raw?: boolean}} [init]
 * @returns {Promise<any>}
 */
async function api(path, init = {}) {
  const headers = new Headers(init.headers);
  headers.set("Authorization", `Bearer ${token() ?? ""}`);
  if (!headers.has("Accept")) headers.set("Accept", "application/json");
  const res = await fetch(API + path, { ...init, headers, cache: "no-store" });
  if (res.status === 401 || res.status === 403) {
    const { code, message } = await errorOf(res);
    signOut(`${message} (${code})`);
    throw new AuthError(message);
  }
  if (init.raw) {
    if (!res.ok && res.status !== 204) {
      const { code, message } = await errorOf(res);
      throw new ApiError(message, code, res.status);
    }
    return res;
  }
  if (!res.ok) {
    const { code, message } = await errorOf(res);
    throw new ApiError(message, code, res.status);
  }
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

/** @param {unknown} error */
function describe(error) {
  if (error instanceof ApiError) return `${error.message} (${error.code})`;
  if (error instanceof TypeError) return "cannot reach the gateway";
  return String(/** @type {any} */ (error)?.message ?? error);
}

// ---------------------------------------------------------------------------------------------
// Formatting

/** @param {number | null | undefined} seconds */
function duration(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return "—";
  const s = Math.max(0, seconds);
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 60) return `${Math.floor(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

/** Seconds since a unix time, "—" when absent. @param {number | null | undefined} at */
function ago(at) {
  return at == null ? "—" : `${duration(Date.now() / 1000 - at)} ago`;
}

/** @param {number | null | undefined} at */
function when(at) {
  if (at == null) return "—";
  const date = new Date(at * 1000);
  return `${date.toLocaleString()} (${ago(at)})`;
}

/** @param {number | null | undefined} n */
function bytes(n) {
  if (n == null || !Number.isFinite(n)) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** @param {unknown} value */
function plain(value) {
  if (value == null || value === "") return "—";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/** @param {number | null | undefined} n @param {number} digits */
function fixed(n, digits) {
  return n == null || !Number.isFinite(n) ? "—" : n.toFixed(digits);
}

// ---------------------------------------------------------------------------------------------
// DOM helpers (textContent only)

/**
 * @param {string} tag
 * @param {{text?: string, className?: string, attrs?: Record<string, string>}} [options]
 * @param {Node[]} [children]
 */
function el(tag, options = {}, children = []) {
  const node = document.createElement(tag);
  if (options.text != null) node.textContent = options.text;
  if (options.className) node.className = options.className;
  for (const [name, value] of Object.entries(options.attrs ?? {})) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

/** Sets a cell's text only when it changed (keeps selections and screen readers calm). @param {Element} node @param {string} text */
function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

/**
 * Makes `tbody` hold one row per item, in order, reusing rows by key (a focused link keeps
 * its focus across refreshes).
 * @template T
 * @param {HTMLTableSectionElement} tbody
 * @param {T[]} items
 * @param {(item: T) => string} key
 * @param {(item: T) => HTMLTableRowElement} create
 * @param {(row: HTMLTableRowElement, item: T) => void} update
 */
function reconcile(tbody, items, key, create, update) {
  /** @type {Map<string, HTMLTableRowElement>} */
  const existing = new Map();
  for (const row of Array.from(tbody.rows)) existing.set(row.dataset.key ?? "", row);
  items.forEach((item, index) => {
    const k = key(item);
    let row = existing.get(k);
    existing.delete(k);
    if (!row) {
      row = create(item);
      row.dataset.key = k;
    }
    update(row, item);
    if (tbody.rows[index] !== row) tbody.insertBefore(row, tbody.rows[index] ?? null);
  });
  for (const row of existing.values()) row.remove();
}

/** @param {HTMLElement} badge @param {string} status */
function showStatus(badge, status) {
  badge.dataset.status = status;
  setText(badge, status || "…");
}

/** Whether a scrollable box is (nearly) at its bottom. @param {HTMLElement} box */
function atBottom(box) {
  return box.scrollHeight - box.scrollTop - box.clientHeight < 24;
}

// ---------------------------------------------------------------------------------------------
// Views: one at a time; leaving a view aborts its timers and its tail.

/** @type {AbortController} */
let viewAbort = new AbortController();

/** Resolves after ms, or at once when signal aborts. @param {number} ms @param {AbortSignal} signal */
function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve(undefined);
    const done = () => { clearTimeout(timer); signal.removeEventListener("abort", done); resolve(undefined); };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done);
  });
}

/**
 * Runs fn now and every `ms` after it settles, until signal aborts or fn returns false.
 * @param {number} ms @param {AbortSignal} signal @param {() => Promise<boolean | void>} fn
 * @param {HTMLElement} stateLine where refresh problems are shown
 */
async function every(ms, signal, fn, stateLine) {
  while (!signal.aborted) {
    try {
      const more = await fn();
      if (signal.aborted) return;
      setText(stateLine, "");
      stateLine.classList.remove("error");
      if (more === false) return;
    } catch (error) {
      if (error instanceof AuthError || signal.aborted) return;
      stateLine.classList.add("error");
      setText(stateLine, `Refresh failed: ${describe(error)}; retrying…`);
    }
    await sleep(ms, signal);
  }
}

const views = ["view-streams", "view-stream", "view-system", "view-missing"];

/** @param {string} id @param {string} title @param {string} nav */
function showView(id, title, nav) {
  for (const view of views) $(view).hidden = view !== id;
  document.title = `${title} — tokenrelay admin`;
  for (const link of document.querySelectorAll("#nav a")) {
    if (/** @type {HTMLElement} */ (link).dataset.nav === nav) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

/** The route of the current location: the hash (#/streams/<id>), or the path (/admin/streams/<id>). */
function route() {
  let path = location.hash.replace(/^#/, "");
  if (!path && location.pathname.startsWith("/admin")) {
    path = location.pathname.replace(/^\/admin\/?/, "/").replace(/\/+$/, "") || "/";
  }
  if (!path) path = "/";
  if (!path.startsWith("/")) path = `/${path}`;
  return path;
}

function render() {
  viewAbort.abort();
  viewAbort = new AbortController();
  if (!token()) return showLogin("");
  $("login").hidden = true;
  $("nav").hidden = false;
  const path = route();
  const signal = viewAbort.signal;
  const stream = /^\/streams\/([^/]+)$/.exec(path);
  if (path === "/" || path === "/streams") streamsView(signal);
  else if (stream) {
    let id = stream[1];
    try { id = decodeURIComponent(id); } catch { /* keep as is */ }
    streamView(id, signal);
  } else if (path === "/system") systemView(signal);
  else showView("view-missing", "Not found", "");
}

// ---------------------------------------------------------------------------------------------
// Login

/** Forgets the token and asks for it, showing why. @param {string} message */
function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  viewAbort.abort();
  showLogin(message);
}

/** @param {string} message */
function showLogin(message) {
  for (const view of views) $(view).hidden = true;
  $("nav").hidden = true;
  $("login").hidden = false;
  document.title = "Sign in — tokenrelay admin";
  const error = $("login-error");
  error.textContent = message;
  const input = /** @type {HTMLInputElement} */ ($("admin-token"));
  input.setAttribute("aria-invalid", message ? "true" : "false");
  input.focus();
}

$("login-form").addEventListener("submit", async (submitted) => {
  submitted.preventDefault();
  const input = /** @type {HTMLInputElement} */ ($("admin-token"));
  const button = /** @type {HTMLButtonElement} */ ($("admin-login"));
  const value = input.value.trim();
  if (!value) return;
  button.disabled = true;
  $("login-error").textContent = "";
  sessionStorage.setItem(TOKEN_KEY, value);
  try {
    await api("/system"); // a cheap call that tells whether the token is good
    input.value = "";
    render();
    $("content").focus();
  } catch (error) {
    if (!(error instanceof AuthError)) {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin(`Could not sign in: ${describe(error)}`);
    }
  } finally {
    button.disabled = false;
  }
});

// The skip link moves focus without touching the hash (the hash is the route).
document.querySelector(".skip")?.addEventListener("click", (clicked) => {
  clicked.preventDefault();
  $("content").focus();
});

$("logout").addEventListener("click", () => signOut("Signed out."));

// ---------------------------------------------------------------------------------------------
// Streams list

const statusFilter = /** @type {HTMLSelectElement} */ ($("status-filter"));
statusFilter.addEventListener("change", () => {
  if (route() === "/" || route() === "/streams") render();
});

/** @param {string} id */
function streamHref(id) {
  return `#/streams/${encodeURIComponent(id)}`;
}

/** @param {AbortSignal} signal */
function streamsView(signal) {
  showView("view-streams", "Streams", "streams");
  const tbody = /** @type {HTMLTableSectionElement} */ (/** @type {HTMLTableElement} */ ($("streams")).tBodies[0]);
  every(LIST_EVERY_MS, signal, async () => {
    const query = new URLSearchParams({ limit: String(LIST_LIMIT) });
    if (statusFilter.value) query.set("status", statusFilter.value);
    const page = await api(`/streams?${query}`, { signal });
    if (signal.aborted) return;
    /** @type {any[]} */
    const streams = Array.isArray(page?.streams) ? page.streams : [];
    reconcile(tbody, streams, (s) => String(s.id), createStreamRow, updateStreamRow);
    $("streams-empty").hidden = streams.length > 0;
    $("streams-more").hidden = !page?.next_cursor;
  }, $("streams-state"));
}

/** @param {any} stream */
function createStreamRow(stream) {
  const id = String(stream.id);
  const link = el("a", { text: id, attrs: { href: streamHref(id) } });
  const row = /** @type {HTMLTableRowElement} */ (el("tr", { className: "clickable" }, [
    el("td", { className: "mono" }, [link]),
    el("td", {}, [el("span", { className: "badge small" })]),
    el("td"),
    el("td", { className: "num" }),
    el("td", { className: "num" }),
    el("td", { className: "num" }),
    el("td", { className: "num" }),
  ]));
  row.dataset.streamId = id;
  row.addEventListener("click", (clicked) => {
    if (/** @type {HTMLElement} */ (clicked.target).closest("a")) return; // the link does it
    if (window.getSelection()?.toString()) return; // selecting text, not opening
    location.hash = streamHref(id);
  });
  return row;
}

/** @param {HTMLTableRowElement} row @param {any} stream */
function updateStreamRow(row, stream) {
  const [, statusCell, model, age, tokens, readers, lag] = Array.from(row.cells);
  showStatus(/** @type {HTMLElement} */ (statusCell.firstElementChild), String(stream.status ?? ""));
  setText(model, stream.durable ? plain(stream.durable.url) : plain(stream.model));
  model.title = stream.durable ? `durable stream, ${plain(stream.durable.content_type)}` : "";
  const end = stream.finished_at ?? null;
  setText(age, duration(Date.now() / 1000 - Number(stream.created_at)));
  age.title = end != null ? `finished ${ago(end)}` : "";
  setText(tokens, plain(stream.token_events ?? stream.event_count));
  setText(readers, plain(stream.readers ?? 0));
  setText(lag, "—"); // per-reader lag is on the stream's page
}

// ---------------------------------------------------------------------------------------------
// One stream

/** @param {string} id @param {AbortSignal} signal */
function streamView(id, signal) {
  showView("view-stream", `Stream ${id}`, "streams");
  setText($("stream-id"), id);
  showStatus($("stream-status"), "");
  setText($("stream-error"), "");
  $("stream-meta").replaceChildren();
  /** @type {HTMLTableElement} */ ($("readers")).tBodies[0].replaceChildren();
  /** @type {HTMLTableElement} */ ($("raw-events")).tBodies[0].replaceChildren();
  $("stream-text").textContent = "";
  $("stream-reasoning").textContent = "";
  $("stream-thinking").hidden = true;
  $("stream-refusal").hidden = true;
  $("stream-tool-calls").replaceChildren();
  $("stream-tool-calls").hidden = true;
  $("stream-choices").replaceChildren();
  $("stream-choices").hidden = true;
  $("events-note").hidden = true;
  setText($("text-heading"), "Answer");
  const cancel = /** @type {HTMLButtonElement} */ ($("cancel"));
  const purge = /** @type {HTMLButtonElement} */ ($("purge"));
  cancel.hidden = false;
  cancel.disabled = false;
  purge.disabled = false;
  delete cancel.dataset.requested;
  const path = `/streams/${encodeURIComponent(id)}`;

  cancel.onclick = async () => {
    if (!confirm(`Cancel the generation of stream ${id}?`)) return;
    cancel.disabled = true;
    setText($("stream-error"), "");
    try {
      const status = await api(`${path}/cancel`, { method: "POST" });
      cancel.dataset.requested = "true"; // stays disabled while the worker winds down
      if (!signal.aborted && status) showDetail(status);
    } catch (error) {
      if (error instanceof AuthError || signal.aborted) return;
      setText($("stream-error"), `Cancel failed: ${describe(error)}`);
      cancel.disabled = false;
    }
  };

  purge.onclick = async () => {
    if (!confirm(`Purge stream ${id}? Every key of it is deleted and its readers end.`)) return;
    purge.disabled = true;
    cancel.disabled = true;
    setText($("stream-error"), "");
    try {
      const purged = await api(path, { method: "DELETE" });
      setText($("flash"), `Purged stream ${id} (${plain(purged?.purged_keys)} keys).`);
      location.hash = "#/";
    } catch (error) {
      if (error instanceof AuthError || signal.aborted) return;
      setText($("stream-error"), `Purge failed: ${describe(error)}`);
      purge.disabled = false;
      cancel.disabled = false;
    }
  };

  every(STREAM_EVERY_MS, signal, async () => {
    try {
      const detail = await api(path, { signal });
      if (!signal.aborted) showDetail(detail);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        showStatus($("stream-status"), "gone");
        setText($("stream-error"), "No such stream: it expired, was purged, or never existed.");
        cancel.disabled = true;
        purge.disabled = true;
        return false;
      }
      throw error;
    }
  }, $("stream-state"));

  tail(id, signal);
}

/**
 * A durable stream's fields (its detail's `durable`).
 * @param {any} detail @returns {[string, string][]}
 */
function durableRows(detail) {
  const durable = detail.durable;
  const fork = durable.fork;
  /** @type {any[]} */ const producers = Array.isArray(durable.producers) ? durable.producers : [];
  const more = Number(durable.producer_count ?? 0) - producers.length;
  let expires = durable.expires_in_s == null ? "—" : `in ${duration(durable.expires_in_s)}`;
  if (durable.expires_at) expires = `at ${durable.expires_at} (${expires})`;
  else if (durable.ttl_s != null) expires = `${expires} (sliding TTL ${durable.ttl_s} s)`;
  return [
    ["Status", plain(detail.status)],
    ["Kind", durable.deleted ? "durable stream (deleted: forks of it still read)" : "durable stream"],
    ["Path", plain(durable.path)],
    ["URL", plain(durable.url)],
    ["Content type", plain(durable.content_type)],
    ["Created", when(detail.created_at)],
    ["Closed", when(detail.finished_at)],
    ["Expires", expires],
    ["Messages", plain(detail.event_count)],
    ["Next offset", plain(durable.next_offset)],
    ["Last offset", plain(detail.last_offset)],
    ["Redis bytes", detail.bytes == null ? "—" : `${bytes(detail.bytes)} (${detail.bytes})`],
    ["Forked from", fork ? `${plain(fork.source)} at ${plain(fork.offset)}${fork.sub_offset ? ` + ${fork.sub_offset}` : ""}` : "—"],
    ["Forks", Array.isArray(durable.forks) && durable.forks.length ? durable.forks.join(", ") : "—"],
    ["Producers", producers.length ? producers.map((p) => `${p.id} (epoch ${p.epoch}, seq ${p.seq})`).join(", ") + (more > 0 ? ` and ${more} more` : "") : "—"],
    ["Stream-Seq", plain(durable.stream_seq)],
  ];
}

/** @param {any} detail */
function showDetail(detail) {
  const status = String(detail.status ?? "");
  showStatus($("stream-status"), status);
  const cancel = /** @type {HTMLButtonElement} */ ($("cancel"));
  cancel.disabled = FINAL.has(status) || cancel.dataset.requested === "true";
  cancel.hidden = Boolean(detail.durable); // a durable stream's writer closes it
  if (detail.durable) setText($("text-heading"), "Messages");
  /** @type {[string, string][]} */
  const rows = detail.durable ? durableRows(detail) : [
    ["Status", plain(detail.status)],
    ["Model", plain(detail.model)],
    ["Upstream", plain(detail.upstream)],
    ["Worker", plain(detail.worker)],
    ["Attempts", plain(detail.attempts)],
    ["Created", when(detail.created_at)],
    ["Started", when(detail.started_at)],
    ["Finished", when(detail.finished_at)],
    ["Finish reason", plain(detail.finish_reason)],
    ["Error", plain(detail.error)],
    ["Time to first token", detail.time_to_first_token_s == null ? "—" : `${fixed(detail.time_to_first_token_s, 3)} s`],
    ["Tokens/s", fixed(detail.tokens_per_s, 1)],
    ["Token events", plain(detail.token_events)],
    ["Events", plain(detail.event_count)],
    ["Last offset", plain(detail.last_offset)],
    ["Redis bytes", detail.bytes == null ? "—" : `${bytes(detail.bytes)} (${detail.bytes})`],
    ["Usage", plain(detail.usage)],
    ["Metadata", detail.metadata && Object.keys(detail.metadata).length ? plain(detail.metadata) : "—"],
  ];
  const list = $("stream-meta");
  const names = rows.map(([name]) => name).join("|");
  if (list.dataset.names !== names) {
    list.replaceChildren(...rows.flatMap(([name]) => [el("dt", { text: name }), el("dd")]));
    list.dataset.names = names;
  }
  rows.forEach(([, value], index) => setText(list.children[index * 2 + 1], value));

  /** @type {any[]} */
  const readers = Array.isArray(detail.readers) ? detail.readers : [];
  const tbody = /** @type {HTMLTableElement} */ ($("readers")).tBodies[0];
  reconcile(
    tbody,
    readers,
    (r) => `${r.gateway}|${r.since}`,
    () => /** @type {HTMLTableRowElement} */ (el("tr", {}, [el("td", { className: "mono" }), el("td", { className: "mono" }), el("td", { className: "num" }), el("td", { className: "num" })])),
    (row, r) => {
      const [gateway, offset, lag, since] = Array.from(row.cells);
      setText(gateway, plain(r.gateway));
      setText(offset, plain(r.offset));
      setText(lag, plain(r.lag));
      setText(since, ago(r.since));
    },
  );
  $("readers-empty").hidden = readers.length > 0;
}

// ---------------------------------------------------------------------------------------------
// The answer, as its events build it (AnswerBuilder: the same accumulation as every client)

/** @param {string} text */
const words = (text) => (text.match(/\S+/g) ?? []).length;

/** A box that was scrolled to its bottom stays there as it grows. @param {HTMLElement} box @param {() => void} change */
function keepBottom(box, change) {
  const stick = atBottom(box);
  change();
  if (stick) box.scrollTop = box.scrollHeight;
}

/** Whether a tool call's arguments are whole JSON yet. @param {string} raw */
function parses(raw) {
  try { JSON.parse(raw); return true; } catch { return false; }
}

/** A card for one tool call: its name, id and arguments exactly as streamed. @param {ToolCall} call */
function toolCallCard(call) {
  const card = el("li", { className: "tool-call", attrs: { "data-index": String(call.index) } }, [
    el("div", { className: "tool-head" }, [
      el("span", { className: "tool-kind", text: "Tool call" }),
      el("code", { className: "tool-name" }),
      el("span", { className: "tool-id" }),
    ]),
    el("pre", { className: "tool-args" }),
  ]);
  updateToolCallCard(card, call);
  return card;
}

/** @param {Element} card @param {ToolCall} call */
function updateToolCallCard(card, call) {
  setText(/** @type {Element} */ (card.querySelector(".tool-name")), call.name || "…");
  setText(/** @type {Element} */ (card.querySelector(".tool-id")), call.id ?? "");
  setText(/** @type {Element} */ (card.querySelector(".tool-args")), call.arguments);
  /** @type {HTMLElement} */ (card).dataset.complete = String(parses(call.arguments));
}

/** @param {HTMLElement} list @param {readonly ToolCall[]} calls */
function showToolCalls(list, calls) {
  list.hidden = calls.length === 0;
  calls.forEach((call, i) => {
    const card = list.children[i];
    if (card) updateToolCallCard(card, call);
    else list.append(toolCallCard(call));
  });
}

/** One of the other choices (n > 1), made anew when it changes. @param {Choice} choice */
function otherChoice(choice) {
  const finish = choice.finishReason ? ` · ${choice.finishReason}` : "";
  const section = el("section", { className: "other-choice", attrs: { "data-choice": String(choice.index) } }, [
    el("h4", { text: `Choice ${choice.index}${finish}` }),
  ]);
  if (choice.reasoning) {
    section.append(el("details", { className: "thinking" }, [
      el("summary", {}, [el("span", { className: "thinking-title", text: "Reasoning" }), el("span", { className: "thinking-size", text: ` · ${words(choice.reasoning)} words` })]),
      el("div", { className: "reasoning", text: choice.reasoning }),
    ]));
  }
  if (choice.text) section.append(el("div", { className: "stream-text", text: choice.text }));
  if (choice.refusal != null) {
    section.append(el("div", { className: "refusal", attrs: { role: "note" } }, [
      el("p", { className: "refusal-label", text: "Refused" }), el("p", { className: "refusal-text", text: choice.refusal }),
    ]));
  }
  if (choice.toolCalls.length) {
    const list = el("ol", { className: "tool-calls", attrs: { "aria-label": `Tool calls of choice ${choice.index}` } });
    showToolCalls(list, choice.toolCalls);
    section.append(list);
  }
  return section;
}

/** Shows a stream's answer as it grows, touching only what changed. */
function answerPanel() {
  let shownText = "";
  /** @type {Map<number, Choice>} */ const shown = new Map();
  const textBox = $("stream-text");
  const thinking = $("stream-thinking");
  const reasoning = $("stream-reasoning");
  const refusal = $("stream-refusal");
  const others = $("stream-choices");

  /** @param {Answer} answer */
  return (answer) => {
    if (answer.text !== shownText) {
      keepBottom(textBox, () => {
        if (answer.text.startsWith(shownText)) textBox.append(answer.text.slice(shownText.length)); // a text node: never parsed as HTML
        else textBox.textContent = answer.text;
      });
      shownText = answer.text;
    }
    thinking.hidden = !answer.reasoning;
    if (answer.reasoning && reasoning.textContent !== answer.reasoning) {
      keepBottom(reasoning, () => { reasoning.textContent = answer.reasoning; });
      setText(/** @type {Element} */ (thinking.querySelector(".thinking-size")), `· ${words(answer.reasoning)} words`);
    }
    refusal.hidden = answer.refusal == null;
    if (answer.refusal != null) setText(/** @type {Element} */ (refusal.querySelector(".refusal-text")), answer.refusal);
    showToolCalls($("stream-tool-calls"), answer.toolCalls);

    for (const choice of answer.choices) {
      if (choice.index === 0 || shown.get(choice.index) === choice) continue; // snapshots change only when their choice does
      shown.set(choice.index, choice);
      const section = otherChoice(choice);
      const old = others.querySelector(`[data-choice="${choice.index}"]`);
      if (old) {
        // keep a reasoning section the operator opened open
        if (old.querySelector("details[open]")) section.querySelector("details")?.setAttribute("open", "");
        old.replaceWith(section);
      } else {
        const next = Array.from(others.children).find((node) => Number(/** @type {HTMLElement} */ (node).dataset.choice) > choice.index);
        others.insertBefore(section, next ?? null);
      }
      others.hidden = false;
    }
  };
}

/**
 * A delta event's data, readably: one line per field, tool-call fragments by index.
 * @param {Record<string, any>} data
 */
function describeDelta(data) {
  /** @type {string[]} */ const lines = [];
  for (const [key, value] of Object.entries(data)) {
    if (key === "choice" || value == null) continue; // null means nothing
    if (key === "tool_calls" && Array.isArray(value)) {
      for (const call of value) {
        const fn = call?.function ?? {};
        const head = [`tool_calls[${call?.index}]`];
        if (call?.id != null) head.push(`id ${call.id}`);
        if (call?.type != null) head.push(`type ${call.type}`);
        if (fn.name != null) head.push(`name ${fn.name}`);
        if (fn.arguments != null) head.push(`arguments += ${JSON.stringify(fn.arguments)}`);
        lines.push(head.join(" · "));
      }
    } else if (key === "logprobs" && typeof value === "object") {
      const counts = ["content", "refusal"].filter((k) => Array.isArray(value[k])).map((k) => `${value[k].length} ${k}`);
      lines.push(`logprobs: ${counts.join(", ") || JSON.stringify(value)}`);
    } else {
      lines.push(`${key}: ${JSON.stringify(value)}`);
    }
  }
  return lines.length ? lines.join("\n") : "(nothing: null fields only)";
}

/** @param {unknown} value @returns {value is Record<string, any>} */
const isRecord = (value) => value !== null && typeof value === "object" && !Array.isArray(value);

/** A Responses event's place: its sequence number, output item and part. @param {Record<string, any>} data */
function responseTag(data) {
  const where = [`#${plain(data.sequence_number)}`];
  if (data.output_index != null) where.push(`output ${data.output_index}`);
  if (data.content_index != null) where.push(`content ${data.content_index}`);
  if (data.summary_index != null) where.push(`summary ${data.summary_index}`);
  return where.join(" · ");
}

/** An output item in one line: its type, id and what identifies it. @param {Record<string, any>} item */
function describeItem(item) {
  const parts = [String(item.type ?? "item")];
  if (item.id != null) parts.push(`id ${item.id}`);
  if (item.type === "function_call") {
    if (item.call_id != null) parts.push(`call_id ${item.call_id}`);
    if (item.name != null) parts.push(`name ${item.name}`);
    if (item.arguments) parts.push(`arguments ${JSON.stringify(item.arguments)}`);
  } else if (item.type === "message") {
    if (item.role != null) parts.push(`role ${item.role}`);
    /** @type {any[]} */ const content = Array.isArray(item.content) ? item.content : [];
    const text = content.map((part) => part?.text ?? part?.refusal).filter((t) => typeof t === "string").join("");
    if (text) parts.push(`text ${JSON.stringify(text)}`);
  } else if (item.type === "reasoning") {
    /** @type {any[]} */ const summary = Array.isArray(item.summary) ? item.summary : [];
    const text = summary.map((part) => part?.text).filter((t) => typeof t === "string").join("\n\n");
    if (text) parts.push(`summary ${JSON.stringify(text)}`);
  }
  if (item.status != null) parts.push(`status ${item.status}`);
  return parts.join(" · ");
}

/** A Response object in one line: id, status, why it ended, usage. @param {Record<string, any>} response */
function describeResponseObject(response) {
  const parts = [String(response.id ?? "response"), `status ${plain(response.status)}`];
  if (isRecord(response.incomplete_details)) parts.push(`incomplete: ${plain(response.incomplete_details.reason)}`);
  if (isRecord(response.error)) parts.push(`error ${plain(response.error.code)}: ${plain(response.error.message)}`);
  if (Array.isArray(response.output) && response.output.length) parts.push(`${response.output.length} output items`);
  if (isRecord(response.usage)) parts.push(`usage ${JSON.stringify(response.usage)}`);
  return parts.join(" · ");
}

/**
 * A Responses API event's data, readably: the text of a delta, the item, part or Response it
 * carries, the whole text of a `.done`; the rest as JSON.
 * @param {Record<string, any>} data
 */
function describeResponseEvent(data) {
  /** @type {string[]} */ const lines = [];
  /** @type {Set<string>} */ const shown = new Set(["type", "sequence_number", "output_index", "content_index", "summary_index", "item_id", "obfuscation"]);
  const show = (/** @type {string} */ key, /** @type {string} */ line) => { shown.add(key); lines.push(line); };
  if (typeof data.delta === "string") show("delta", `delta: ${JSON.stringify(data.delta)}`);
  if (isRecord(data.item)) show("item", `item: ${describeItem(data.item)}`);
  if (isRecord(data.part)) {
    const part = data.part;
    const text = part.text ?? part.refusal;
    show("part", `part: ${plain(part.type)}${typeof text === "string" && text ? ` · ${JSON.stringify(text)}` : ""}`);
  }
  for (const key of ["text", "refusal", "arguments"]) {
    if (typeof data[key] === "string") show(key, `${key}: ${JSON.stringify(data[key])}`);
  }
  if (isRecord(data.response)) show("response", `response: ${describeResponseObject(data.response)}`);
  if (data.type === "error") {
    const error = isRecord(data.error) ? data.error : data;
    for (const key of ["error", "code", "message", "param"]) shown.add(key);
    lines.push(`error ${plain(error.code ?? error.type)}: ${plain(error.message)}`);
  }
  /** @type {Record<string, any>} */ const rest = {};
  for (const [key, value] of Object.entries(data)) if (!shown.has(key)) rest[key] = value;
  if (Object.keys(rest).length) lines.push(JSON.stringify(rest));
  return lines.join("\n") || "(nothing more)";
}

/**
 * A durable stream's message, readably (its tag says how): a JSON value as JSON, a text as it
 * is, other bytes in the base64 the admin API gives.
 * @param {Record<string, any>} data
 */
function describeMessage(data) {
  return data.encoding === "json" ? JSON.stringify(data.data) : String(data.data);
}

/** Shows a durable stream's messages in the answer's box as they come: a text stream's text
 * whole, one line per JSON value, a line per message of other bytes (their size). */
function messagePanel() {
  const textBox = $("stream-text");
  /** @param {Record<string, any>} data */
  return (data) => {
    setText($("text-heading"), "Messages");
    const text = data.encoding === "text" ? String(data.data)
      : data.encoding === "json" ? `${JSON.stringify(data.data)}\n`
      : `[${plain(data.size)} bytes]\n`;
    keepBottom(textBox, () => textBox.append(text)); // a text node: never parsed as HTML
  };
}

// ---------------------------------------------------------------------------------------------
// The tail: SSE over fetch (EventSource cannot send the Authorization header)

/** Splits text chunks into complete lines, keeping the unfinished rest. */
function lineSplitter() {
  let rest = "";
  /** @param {string} chunk */
  return (chunk) => {
    let text = rest + chunk;
    const hold = text.endsWith("\r") ? "\r" : "";
    if (hold) text = text.slice(0, -1);
    const lines = text.split(/\r\n|\r|\n/);
    rest = (lines.pop() ?? "") + hold;
    return lines;
  };
}

/**
 * An SSE frame parser: feed it lines; a blank line returns the frame, if it had data.
 * @returns {(line: string) => {id: string | null, type: string, data: string} | null}
 */
function sseParser() {
  /** @type {string | null} */ let id = null;
  let type = "";
  /** @type {string[]} */ let data = [];
  return (line) => {
    if (line === "") {
      const frame = data.length ? { id, type: type || "message", data: data.join("\n") } : null;
      type = "";
      data = [];
      return frame;
    }
    if (line.startsWith(":")) return null; // a keep-alive comment
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + (line[colon + 1] === " " ? 2 : 1));
    if (field === "id") id = value;
    else if (field === "event") type = value;
    else if (field === "data") data.push(value);
    return null;
  };
}

/** @param {string} state @param {string} label */
function tailState(state, label) {
  const badge = $("tail-state");
  badge.dataset.state = state;
  setText(badge, label);
}

/**
 * Follows the stream's events from its start until its terminal event, reconnecting from the
 * last offset after any failure.
 * @param {string} id @param {AbortSignal} signal
 */
async function tail(id, signal) {
  const showAnswer = answerPanel();
  const answer = new AnswerBuilder();
  const eventsBody = /** @type {HTMLTableElement} */ ($("raw-events")).tBodies[0];
  const eventsBox = /** @type {HTMLElement} */ (eventsBody.closest(".events-wrap"));
  /** @type {string | null} */ let offset = null;
  let attempt = 0;
  let dropped = 0;
  let ended = false;

  const showMessage = messagePanel();

  /** @param {{id: string | null, type: string, data: string}} frame */
  const receive = (frame) => {
    if (frame.id) offset = frame.id;
    attempt = 0;
    /** @type {any} */ let data = null;
    try { data = JSON.parse(frame.data); } catch { /* shown raw */ }
    const parsed = data !== null && typeof data === "object" && !Array.isArray(data);
    if (frame.type === "closed") { // a durable stream's end: closed, every message sent
      ended = true;
      tailState("done", "Closed");
      return;
    }
    if (frame.type === "message" && parsed) showMessage(data);
    // a response event keeps its own type (response.output_text.delta...), as every reader sees it
    const response = frame.type === "response" && parsed;
    const event = response ? { type: frame.type, ...data } : { ...data, type: frame.type };
    if (parsed && answer.add(event)) showAnswer(answer.answer);
    const stick = atBottom(eventsBox);
    /** @type {Record<string, string>} */ const attrs = { "data-type": frame.type };
    if (response) attrs["data-response-type"] = String(data.type ?? "");
    /** @type {HTMLElement} */ let cell;
    if (frame.type === "delta" && parsed) {
      cell = el("td", { className: "mono data", attrs: { title: frame.data } }, [
        el("span", { className: "choice-tag", text: `choice ${plain(data.choice)}` }),
        document.createTextNode(describeDelta(data)),
      ]);
    } else if (response) {
      cell = el("td", { className: "mono data", attrs: { title: frame.data } }, [
        el("span", { className: "choice-tag", text: responseTag(data) }),
        document.createTextNode(describeResponseEvent(data)),
      ]);
    } else if (frame.type === "message" && parsed) {
      cell = el("td", { className: "mono data", attrs: { title: frame.data } }, [
        el("span", { className: "choice-tag", text: `${plain(data.encoding)} · ${plain(data.size)} bytes` }),
        document.createTextNode(describeMessage(data)),
      ]);
    } else cell = el("td", { className: "mono data", text: frame.data });
    const row = el("tr", { attrs }, [
      el("td", { className: "mono", text: frame.id ?? "" }),
      el("td", { text: response ? String(data.type ?? frame.type) : frame.type }),
      cell,
    ]);
    eventsBody.append(row);
    if (eventsBody.rows.length > MAX_EVENT_ROWS) {
      eventsBody.rows[0].remove();
      dropped += 1;
      const note = $("events-note");
      note.hidden = false;
      setText(note, `Showing the last ${MAX_EVENT_ROWS} events (${dropped} earlier ones left out).`);
    }
    if (stick) eventsBox.scrollTop = eventsBox.scrollHeight;
    if (frame.type === "done" || frame.type === "error") {
      ended = true;
      tailState(frame.type === "done" ? "done" : "failed",
        frame.type === "done" ? `Ended: ${plain(data?.finish_reason)}` : `Ended with error: ${plain(data?.code)}`);
    }
  };

  while (!signal.aborted && !ended) {
    tailState(attempt ? "reconnecting" : "connecting", attempt ? `Reconnecting… (attempt ${attempt})` : "Connecting…");
    let retryAfterMs = 0;
    try {
      const query = offset ? `?${new URLSearchParams({ after: offset })}` : "";
      /** @type {Record<string, string>} */
      const headers = { Accept: "text/event-stream" };
      if (offset) headers["Last-Event-ID"] = offset;
      const res = await api(`/streams/${encodeURIComponent(id)}/tail${query}`, { headers, signal, raw: true });
      if (res.status === 204) { // the stream had already ended at our offset
        ended = true;
        tailState("done", "Ended");
        break;
      }
      if (!res.body) throw new Error("no body");
      tailState("streaming", "Live");
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      const split = lineSplitter();
      const parse = sseParser();
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done || signal.aborted) break;
          for (const line of split(decoder.decode(value, { stream: true }))) {
            const frame = parse(line);
            if (frame) receive(frame);
            if (ended) break;
          }
          if (ended) break;
        }
      } finally {
        reader.cancel().catch(() => {});
      }
    } catch (error) {
      if (signal.aborted || error instanceof AuthError) return;
      if (error instanceof ApiError && error.status !== 429 && error.status < 500) {
        // 404 (gone), 410 (offset expired), 400/422: reconnecting will not help
        tailState("failed", `Stopped: ${describe(error)}`);
        return;
      }
      if (error instanceof ApiError && error.status === 429) retryAfterMs = 1000;
    }
    if (signal.aborted || ended) break;
    attempt += 1;
    const delay = Math.max(retryAfterMs, Math.min(5000, 250 * 2 ** Math.min(attempt, 5)));
    tailState("reconnecting", `Reconnecting… (attempt ${attempt})`);
    await sleep(delay * (0.5 + Math.random() / 2), signal);
  }
}

// ---------------------------------------------------------------------------------------------
// System

/** @param {AbortSignal} signal */
function systemView(signal) {
  showView("view-system", "System", "system");
  every(SYSTEM_EVERY_MS, signal, async () => {
    const system = await api("/system", { signal });
    if (signal.aborted) return;
    /** @type {any[]} */ const workers = Array.isArray(system?.workers) ? system.workers : [];
    /** @type {any[]} */ const gateways = Array.isArray(system?.gateways) ? system.gateways : [];
    setText($("queue-depth"), plain(system?.queue_depth));
    setText($("jobs-in-progress"), plain(system?.jobs_in_progress));
    setText($("worker-count"), String(workers.length));
    setText($("gateway-count"), String(gateways.length));
    setText($("redis-version"), plain(system?.redis?.version));
    const memory = system?.redis?.used_memory;
    setText($("redis-memory"), system?.redis?.used_memory_human ? String(system.redis.used_memory_human) : bytes(memory));
    $("redis-memory").title = memory != null ? `${memory} bytes` : "";

    reconcile(
      /** @type {HTMLTableElement} */ ($("workers")).tBodies[0],
      workers,
      (w) => String(w.id),
      () => /** @type {HTMLTableRowElement} */ (el("tr", {}, [el("td", { className: "mono" }), el("td", { className: "num" }), el("td"), el("td", { className: "num" })])),
      (row, w) => {
        const [name, jobs, upstream, beat] = Array.from(row.cells);
        setText(name, plain(w.id));
        setText(jobs, plain(w.jobs));
        setText(upstream, plain(w.upstream));
        setText(beat, w.age_s != null ? `${duration(w.age_s)} ago` : ago(w.last_heartbeat));
      },
    );
    $("workers-empty").hidden = workers.length > 0;

    reconcile(
      /** @type {HTMLTableElement} */ ($("gateways")).tBodies[0],
      gateways,
      (g) => String(g.id),
      () => /** @type {HTMLTableRowElement} */ (el("tr", {}, [el("td", { className: "mono" }), el("td", { className: "num" }), el("td", { className: "num" })])),
      (row, g) => {
        const [name, readers, beat] = Array.from(row.cells);
        setText(name, plain(g.id));
        setText(readers, plain(g.readers));
        setText(beat, g.age_s != null ? `${duration(g.age_s)} ago` : ago(g.last_heartbeat));
      },
    );
    $("gateways-empty").hidden = gateways.length > 0;
  }, $("system-state"));
}

// ---------------------------------------------------------------------------------------------

window.addEventListener("hashchange", () => {
  if (route() !== "/" && route() !== "/streams") setText($("flash"), "");
  render();
});
render();
