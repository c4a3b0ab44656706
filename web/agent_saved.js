// @ts-check
// agent_saved.js: what the agent page keeps of a run in sessionStorage, to show it again and
// resume it after a reload: its path, its read token, the messages received and the offset
// after the last of them. Messages and offset are always kept together (one JSON value), so
// a reload never counts a message twice nor skips one.

/**
 * @typedef {{ path: string, token: string | null, offset: string, messages: any[], closed: boolean }} SavedRun
 */

/** Where a run is kept: one key per path. @param {string} path */
export const savedKey = (path) => `tokenrelay.agent.${path}`;

/** A new run, nothing received yet. @param {string} path @param {string | null} token @returns {SavedRun} */
export const newRun = (path, token) => ({ path, token, offset: "-1", messages: [], closed: false });

/**
 * The run kept for `path` (`storeRun`'s JSON), or null when none is, or it does not parse.
 * @param {string | null} json
 * @param {string} path
 * @returns {SavedRun | null}
 */
export function parseRun(json, path) {
  try {
    /** @type {any} */ const kept = JSON.parse(json ?? "null");
    if (kept === null || typeof kept !== "object" || kept.path !== path) return null;
    const token = typeof kept.token === "string" ? kept.token : null;
    if (typeof kept.offset !== "string" || !Array.isArray(kept.messages)) return newRun(path, token);
    return { path, token, offset: kept.offset, messages: kept.messages, closed: kept.closed === true };
  } catch {
    return null;
  }
}

/**
 * Keeps `run` with `write` (sessionStorage's setItem for its key). Should it not fit (write
 * throws), only the stream is kept, without its messages: a reload then reads it from its
 * start. Returns what was kept.
 * @param {SavedRun} run
 * @param {(json: string) => void} write
 * @returns {"run" | "stream" | "nothing"}
 */
export function storeRun(run, write) {
  try {
    write(JSON.stringify(run));
    return "run";
  } catch { /* over the quota */ }
  try {
    write(JSON.stringify(newRun(run.path, run.token)));
    return "stream";
  } catch {
    return "nothing";
  }
}
