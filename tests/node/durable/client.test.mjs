// The Durable Streams protocol's own TypeScript client (@durable-streams/client, pinned in
// ../package.json) writing and reading tokenrelay's /v1/ds with authentication on, as
// tests/test_durable_client.py runs it: a gateway without TOKENRELAY_DS_OPEN, named by
// TOKENRELAY_GATEWAY_URL (no /v1) and TOKENRELAY_API_KEY.
//
// The writer holds the API key; each reader holds only the stream's read token, which the
// create answer carries in X-TokenRelay-Read-Token (seen through the client's `fetch` option:
// the client does not hand out its responses' headers).

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";

import {
  createFetchWithBackoff,
  DurableStream,
  FetchError,
  IdempotentProducer,
  stream,
} from "@durable-streams/client";

function fromEnv(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run tests/test_durable_client.py (it starts a gateway)`);
  }
  return value.replace(/\/+$/, "");
}

const GATEWAY = fromEnv("TOKENRELAY_GATEWAY_URL");
const API_KEY = fromEnv("TOKENRELAY_API_KEY");
const WRITER = { Authorization: `Bearer ${API_KEY}` };
const READ_TOKEN = "x-tokenrelay-read-token";
const STREAM_ID = "x-tokenrelay-stream-id";

function newUrl(label) {
  return `${GATEWAY}/v1/ds/client-tests/${label}-${randomBytes(6).toString("hex")}`;
}

/** A fetch that records each request's method, query and answer status (and headers). */
function recordingFetch() {
  const requests = [];
  const recorded = async (input, init) => {
    const url = new URL(typeof input === "string" ? input : input.url);
    const response = await fetch(input, init);
    requests.push({
      method: init?.method ?? "GET",
      offset: url.searchParams.get("offset"),
      live: url.searchParams.get("live"),
      token: url.searchParams.get("token"),
      status: response.status,
      headers: response.headers,
    });
    return response;
  };
  return { fetch: recorded, requests };
}

/** A JSON stream created with the API key and three messages appended one by one; its
 * handle, its read token and the messages. */
async function writtenStream(label) {
  const { fetch: seen, requests } = recordingFetch();
  const handle = await DurableStream.create({
    url: newUrl(label),
    headers: WRITER,
    contentType: "application/json",
    fetch: seen,
  });
  const created = requests.find((r) => r.method === "PUT");
  assert.equal(created.status, 201);
  const readToken = created.headers.get(READ_TOKEN);
  assert.match(readToken ?? "", /^[A-Za-z0-9._~+/=-]{20,}$/);
  assert.match(created.headers.get(STREAM_ID) ?? "", /^.+$/);
  const messages = [
    { n: 1, text: "hello" },
    { n: 2, text: "wörld ✓ 🚀", tags: ["a", "b"] },
    { n: 3, nested: { list: [1, 2.5, null, true], empty: {} } },
  ];
  for (const message of messages) {
    await handle.append(JSON.stringify(message)); // 0.2.6 takes JSON text, not values
  }
  const posts = requests.filter((r) => r.method === "POST").map((r) => r.status);
  assert.deepEqual(posts, [204, 204, 204]);
  return { handle, readToken, messages };
}

/** The next `count` items of a live JSON read (an async iterator of items). */
async function take(items, count) {
  const got = [];
  while (got.length < count) {
    const { value, done } = await items.next();
    assert.equal(done, false, `the read ended after ${JSON.stringify(got)}`);
    got.push(value);
  }
  return got;
}

test("a writer with the API key creates a JSON stream; a read-token holder catches up in order", async () => {
  const { handle, readToken, messages } = await writtenStream("catch-up");
  const { fetch: seen, requests } = recordingFetch();
  const res = await stream({
    url: handle.url,
    headers: { Authorization: `Bearer ${readToken}` },
    live: false,
    fetch: seen,
  });
  assert.deepEqual(await res.json(), messages);
  assert.equal(res.upToDate, true);
  assert.equal(res.streamClosed, false);
  const tail = await handle.head();
  assert.equal(tail.exists, true);
  assert.equal(tail.contentType, "application/json");
  assert.equal(res.offset, tail.offset);
  assert.deepEqual(
    requests.map((r) => [r.method, r.offset, r.live, r.status]),
    [["GET", "-1", null, 200]],
  );
});

for (const [mode, credential] of [
  ["long-poll", "bearer"],
  ["sse", "bearer"],
  ["long-poll", "query"],
  ["sse", "query"],
]) {
  test(`a read-token holder (${credential}) follows live (${mode}) and gets a later append`, async () => {
    const { handle, readToken, messages } = await writtenStream(`${mode}-${credential}`);
    const { fetch: seen, requests } = recordingFetch();
    const controller = new AbortController();
    const res = await stream({
      url: handle.url,
      ...(credential === "bearer"
        ? { headers: { Authorization: `Bearer ${readToken}` } }
        : { params: { token: readToken } }),
      live: mode,
      fetch: seen,
      signal: controller.signal,
    });
    try {
      const items = res.jsonStream()[Symbol.asyncIterator]();
      assert.deepEqual(await take(items, messages.length), messages);
      // the catch-up is over: the reader now waits on the live read
      await new Promise((resolve) => setTimeout(resolve, 300));
      const later = { n: 4, text: `appended after the ${mode} reader started` };
      await handle.append(JSON.stringify(later));
      assert.deepEqual(await take(items, 1), [later]);
      assert.equal(res.live, mode);
      const live = requests.filter((r) => r.live === mode);
      assert.ok(live.length >= 1, JSON.stringify(requests.map((r) => [r.offset, r.live])));
      assert.deepEqual(
        [...new Set(live.map((r) => r.status))],
        [200],
        `${mode} answers: ${JSON.stringify(live.map((r) => r.status))}`,
      );
      assert.deepEqual(
        [requests[0].method, requests[0].offset, requests[0].live, requests[0].status],
        ["GET", "-1", null, 200],
      );
      if (credential === "query") {
        assert.deepEqual([...new Set(requests.map((r) => r.token))], [readToken]);
      }
    } finally {
      controller.abort();
    }
  });
}

test("a reader without credentials, or with another stream's token, is refused", async () => {
  const { handle } = await writtenStream("refused");
  const { readToken: otherToken } = await writtenStream("other");
  await assert.rejects(
    stream({ url: handle.url, live: false }),
    (error) => error instanceof FetchError && error.status === 401,
  );
  await assert.rejects(
    stream({ url: handle.url, live: "long-poll", offset: "-1" }),
    (error) => error instanceof FetchError && error.status === 401,
  );
  await assert.rejects(
    stream({ url: handle.url, live: false, headers: { Authorization: `Bearer ${otherToken}` } }),
    (error) => error instanceof FetchError && error.status === 403,
  );
  // and a read token does not write
  const { readToken } = await writtenStream("read-only");
  const asReader = new DurableStream({
    url: handle.url,
    headers: { Authorization: `Bearer ${readToken}` },
    contentType: "application/json",
    batching: false,
  });
  await assert.rejects(
    asReader.append(JSON.stringify({ n: 99 })),
    (error) => error instanceof FetchError && error.status === 401,
  );
  const raw = await fetch(handle.url, { method: "HEAD" });
  assert.equal(raw.status, 401);
});

test("an idempotent producer's batch retried after a lost answer is stored once", async () => {
  const { handle, readToken, messages } = await writtenStream("producer");
  // the network loses the answer to the producer's first POST (the gateway got and stored
  // it); the client's backoff then sends the same request again
  const attempts = [];
  let lost = false;
  const lossy = async (input, init) => {
    const response = await fetch(input, init);
    const headers = new Headers(init.headers);
    attempts.push([headers.get("producer-epoch"), headers.get("producer-seq"), response.status]);
    if (!lost) {
      lost = true;
      await response.arrayBuffer();
      throw new TypeError("fetch failed (the answer was lost)");
    }
    return response;
  };
  const errors = [];
  const producer = new IdempotentProducer(handle, "producer-1", {
    fetch: createFetchWithBackoff(lossy, {
      initialDelay: 10,
      maxDelay: 50,
      multiplier: 1.3,
      maxRetries: 3,
    }),
    lingerMs: 0,
    maxInFlight: 1,
    onError: (error) => errors.push(error),
  });
  const batch = [
    { n: 10, from: "producer" },
    { n: 11, from: "producer" },
  ];
  for (const value of batch) producer.append(JSON.stringify(value)); // one batch: seq 0
  await producer.flush();
  producer.append(JSON.stringify({ n: 12, from: "producer" })); // seq 1
  await producer.flush();
  await producer.detach();
  assert.deepEqual(errors, []);
  // seq 0 stored (answer lost), seq 0 again: a duplicate (204), then seq 1
  assert.deepEqual(attempts, [
    ["0", "0", 200],
    ["0", "0", 204],
    ["0", "1", 200],
  ]);
  const res = await stream({
    url: handle.url,
    headers: { Authorization: `Bearer ${readToken}` },
    live: false,
  });
  assert.deepEqual(await res.json(), [...messages, ...batch, { n: 12, from: "producer" }]);
});
