// What tests/test_ai_sdk_chats.py started for the chats tests: the mock model, a gateway (with
// API keys, not demo mode) and a worker, named by TOKENRELAY_GATEWAY_URL, TOKENRELAY_MOCK_URL
// and TOKENRELAY_API_KEY (URLs without /v1); and the application backend's part: minting a
// chat token with the API key, as a browser's page would be given one.

import { randomBytes } from "node:crypto";

function fromEnv(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(
      `${name} is not set: run tests/test_ai_sdk_chats.py (it starts the mock model, a gateway, a worker)`,
    );
  }
  return value.replace(/\/+$/, "");
}

export const GATEWAY = fromEnv("TOKENRELAY_GATEWAY_URL");
export const MOCK = fromEnv("TOKENRELAY_MOCK_URL");
export const API_KEY = fromEnv("TOKENRELAY_API_KEY");

/** A chat id the AI SDK could have generated (1-128 of A-Z a-z 0-9 _ -), new each call. */
export function newChatId(label) {
  return `${label}-${randomBytes(6).toString("hex")}`;
}

/** What the application's backend does for a page: a chat token for this one chat. */
export async function mintChatToken(chatId) {
  const response = await fetch(`${GATEWAY}/v1/chats/${chatId}/token`, {
    method: "POST",
    headers: { Authorization: `Bearer ${API_KEY}` },
  });
  if (response.status !== 201) {
    throw new Error(`minting a chat token: ${response.status} ${await response.text()}`);
  }
  const minted = await response.json();
  if (minted.chat_id !== chatId || typeof minted.token !== "string") {
    throw new Error(`minting a chat token: ${JSON.stringify(minted)}`);
  }
  return minted.token;
}

/** The mock model's record of the request a generation (its stream id) made upstream. */
export async function mockRecords(streamId) {
  const url = `${MOCK}/_mock/requests?stream=${encodeURIComponent(streamId)}`;
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

/** Polls the generation's one mock record until `done(record)`; the record and the
 * milliseconds waited (from the call). */
export async function waitForMockRecord(streamId, done, timeoutMs = 5000) {
  const started = performance.now();
  let records = [];
  while (performance.now() - started < timeoutMs) {
    records = await mockRecords(streamId);
    if (records.length === 1 && done(records[0])) {
      return { record: records[0], waitedMs: performance.now() - started };
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(
    `the mock's record of stream ${streamId} did not get there in ${timeoutMs} ms: ${JSON.stringify(records)}`,
  );
}
