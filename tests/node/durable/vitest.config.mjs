// Vitest for the Durable Streams conformance suite (@durable-streams/server-conformance-tests,
// pinned in ../package.json), run by tests/test_durable_conformance.py:
//
//   CONFORMANCE_TEST_URL=http://127.0.0.1:PORT/v1/ds \
//     npx vitest run --config durable/vitest.config.mjs   (from tests/node)
//
// The suite's own CLI finds no test files once the package sits in node_modules (vitest's
// default include is *.test.* and its default exclude is node_modules), so this names the
// suite's runner itself. It lives in a folder of its own and matches none of `node --test`'s
// file patterns; vitest, in turn, picks up none of tests/node's `node --test` files.

import { fileURLToPath } from "node:url";

import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    root: fileURLToPath(new URL("..", import.meta.url)),
    include: ["node_modules/@durable-streams/server-conformance-tests/dist/test-runner.js"],
    exclude: [],
  },
});
