"""The official ``openai`` npm SDK reads recorded streams through tokenrelay and gets what it
gets from the upstream itself (every ``tests/node/*.test.mjs``, run with ``node --test``).

``chat.test.mjs``, Chat Completions: a tool-calling stream, an ``n = 3`` stream and an
``n = 2`` stream of tool calls and multi-byte text accumulate the same choices; a resume after
a disconnect; a 429 that the SDK raises as ``RateLimitError`` with the upstream's
``Retry-After``.

``responses.test.mjs``, Responses (background mode): a function-call stream and a
reasoning-summary one yield the upstream's events (with tokenrelay's ``resp_`` id,
``background``, no ``obfuscation``, the same sequence numbers); a reader that hangs up resumes
with ``retrieve(id, {stream, starting_after})`` and gets exactly the rest; ``retrieve(id)`` is
the final Response object; the ``responses.stream()`` helper's ``finalResponse()`` equals the
upstream's; ``cancel(id)`` answers ``cancelled``.

The SDK is pinned in ``tests/node/package.json`` and ``package-lock.json``;
``npm ci --prefix tests/node`` installs it (``make test`` does).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import _delete_prefix
from tests.processes import API_KEY, REPO, Stack
from tests.replay_upstream import replay_upstream_process

NODE_TESTS = REPO / "tests" / "node"


def node_with_the_sdk() -> str:
    """node's path; fails (not skips) when node or the pinned SDK is missing."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (.ci/run installs it)")
    if not (NODE_TESTS / "node_modules" / "openai").is_dir():
        pytest.fail(
            "tests/node/node_modules is missing: run `npm ci --prefix tests/node` "
            "(`make test` does it)"
        )
    return node


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Stack]]:
    """(upstream, gateway, stack): base URLs without ``/v1``; the worker's upstream replays."""
    tmp = tmp_path_factory.mktemp("node-sdk")
    with replay_upstream_process(tmp) as (_, upstream):
        stack = Stack(tmp=tmp, mock_url=f"{upstream}/v1")
        try:
            _, base = stack.gateway()
            stack.worker()
            yield upstream, base, stack
        finally:
            stack.stop_all()
            _delete_prefix(stack.prefix)


@pytest.mark.timeout(120)
def test_the_openai_npm_sdk_reads_the_same_choices_through_tokenrelay(
    request: pytest.FixtureRequest,
) -> None:
    node = node_with_the_sdk()  # before starting anything
    # every test file, named (a directory argument means different things to node 20 and 22)
    files = sorted(path.relative_to(REPO) for path in NODE_TESTS.glob("*.test.mjs"))
    assert {path.name for path in files} >= {"chat.test.mjs", "responses.test.mjs"}, files
    upstream, gateway, stack = request.getfixturevalue("relay")
    env = {
        **os.environ,
        "TOKENRELAY_GATEWAY_URL": gateway,
        "TOKENRELAY_UPSTREAM_URL": upstream,
        "TOKENRELAY_API_KEY": API_KEY,
    }
    try:
        result = subprocess.run(
            [node, "--test", "--test-reporter=tap", *map(str, files)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=100,
        )
    except subprocess.TimeoutExpired as exc:
        print(stack.logs(), exc.stdout, exc.stderr, sep="\n")
        raise
    if result.returncode != 0:
        print(stack.logs(), result.stdout, result.stderr, sep="\n")  # node's output last
    assert result.returncode == 0, "node --test tests/node/ failed (its output is above)"
    # every test of every file ran and passed (a todo one, a known gap, may fail)
    counts = {
        name: int(count)
        for name, count in re.findall(r"^# (tests|pass|todo|cancelled) (\d+)$", result.stdout, re.M)
    }
    assert counts.get("tests", 0) > len(files), result.stdout[-3000:]
    assert counts["cancelled"] == 0, result.stdout[-3000:]
    assert counts["pass"] + counts.get("todo", 0) >= counts["tests"], result.stdout[-3000:]
