"""The Durable Streams protocol's own TypeScript client, ``@durable-streams/client`` (pinned
in tests/node/package.json), against ``/v1/ds`` with authentication on
(tests/node/durable/client.test.mjs, run with ``node --test``).

A writer with the API key creates a JSON stream and appends to it; a reader holding only the
stream's read token (``X-TokenRelay-Read-Token`` of the create answer, as Bearer or
``?token=``) catches up in order, then follows live by long-poll and by SSE and gets an
append made after it started; a reader without credentials gets 401, one with another
stream's token 403, and a read token cannot write; an ``IdempotentProducer`` batch whose
answer is lost and which the client's backoff sends again is stored once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.node_tests import node_with, run_node_tests
from tests.processes import API_KEY, REPO, Stack, running

CLIENT_TESTS = REPO / "tests" / "node" / "durable" / "client.test.mjs"
TESTS = 7  # catch-up; live by long-poll and by SSE, with the token as Bearer and as ?token=;
# the refusals; the idempotent producer


@pytest.mark.timeout(90)
def test_the_durable_streams_client_writes_and_reads_through_tokenrelay_with_auth(
    tmp_path: Path,
) -> None:
    node = node_with("@durable-streams/client")  # before starting anything
    # no TOKENRELAY_DS_OPEN: writes need the API key, reads the key or the read token
    with running(Stack(tmp=tmp_path, mock_url="http://127.0.0.1:9/v1")) as stack:
        _, gateway = stack.gateway()
        env = {"TOKENRELAY_GATEWAY_URL": gateway, "TOKENRELAY_API_KEY": API_KEY}
        counts = run_node_tests(node, [CLIENT_TESTS], env, stack, timeout=75)
    assert counts == {
        "tests": TESTS,
        "pass": TESTS,
        "fail": 0,
        "cancelled": 0,
        "skipped": 0,
        "todo": 0,
    }, counts
