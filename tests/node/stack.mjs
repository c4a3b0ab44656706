// What tests/test_node_sdk.py started for the node tests: the replay upstream, a gateway
// and a worker, named by TOKENRELAY_UPSTREAM_URL, TOKENRELAY_GATEWAY_URL and
// TOKENRELAY_API_KEY (URLs without /v1).

function fromEnv(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(
      `${name} is not set: run tests/test_node_sdk.py (it starts the replay upstream, a gateway and a worker)`,
    );
  }
  return value.replace(/\/+$/, "");
}

export const GATEWAY = fromEnv("TOKENRELAY_GATEWAY_URL");
export const UPSTREAM = fromEnv("TOKENRELAY_UPSTREAM_URL");
export const API_KEY = fromEnv("TOKENRELAY_API_KEY");
