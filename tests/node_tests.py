"""Running ``node --test`` files against a stack this process started (tests/node/)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.processes import REPO, Stack, running

NODE_MODULES = REPO / "tests" / "node" / "node_modules"


def node_with(package: str) -> str:
    """node's path; fails (not skips) when node or the pinned npm ``package`` is missing."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (.ci/run installs it)")
    if not (NODE_MODULES / package).is_dir():
        pytest.fail(
            "tests/node/node_modules is missing: run `npm ci --prefix tests/node` "
            "(`make test` does it)"
        )
    return node


def run_node_tests(
    node: str, files: list[Path], env: dict[str, str], stack: Stack, *, timeout: float
) -> dict[str, int]:
    """Run ``files`` (named one by one: a directory argument means different things to node 20
    and 22) with ``env`` added; node's TAP counts (``tests``, ``pass``, ``fail``...). On a
    failure the stack's logs are printed, then node's output."""
    command = [node, "--test", "--test-reporter=tap", *(str(f.relative_to(REPO)) for f in files)]
    try:
        result = subprocess.run(
            command,
            cwd=REPO,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        print(stack.logs(), exc.stdout, exc.stderr, sep="\n")
        raise
    if result.returncode != 0:
        print(stack.logs(), result.stdout, result.stderr, sep="\n")  # node's output last
    assert result.returncode == 0, "node --test failed (its output is above)"
    return {
        name: int(count)
        for name, count in re.findall(
            r"^# (tests|pass|fail|cancelled|skipped|todo) (\d+)$", result.stdout, re.M
        )
    }


@contextmanager
def gateway_on(upstream: str, tmp: Path) -> Iterator[tuple[str, Stack]]:
    """A gateway (its base URL) and a worker whose upstream is ``upstream`` (no ``/v1``);
    stopped and their keys deleted on exit."""
    with running(Stack(tmp=tmp, mock_url=f"{upstream}/v1")) as stack:
        _, gateway = stack.gateway()
        stack.worker()
        yield gateway, stack
