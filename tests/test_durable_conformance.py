"""ElectricSQL's public Durable Streams conformance suite against ``/v1/ds``.

``@durable-streams/server-conformance-tests`` (pinned in tests/node/package.json, run through
vitest with tests/node/durable/vitest.config.mjs and a JSON reporter) against real gateway
processes with ``TOKENRELAY_DS_OPEN`` (the suite sends no credentials), ``CORS_ORIGINS=*``
(it checks a preflight) and a 2 s long-poll (its live tests wait at most 5 s):

* one gateway;
* two gateways on one Redis behind nginx, which sends every write (PUT, POST, DELETE) to one
  and every read (GET, HEAD, OPTIONS) to the other: whatever a read sees, a write made through
  the other replica put there, and a live read hears of it across replicas.

Every test must pass, at least 332 of them, and the only ones skipped are the suite's
"Reserved subscription APIs" (run only when asked for programmatically).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.node_tests import NODE_MODULES, node_with
from tests.processes import Process, Stack, free_port, running, wait_http
from tests.topology import nginx_binary

SUITE = "@durable-streams/server-conformance-tests"
NODE_DIR = NODE_MODULES.parent
VITEST = NODE_MODULES / "vitest" / "vitest.mjs"
VITEST_CONFIG = NODE_DIR / "durable" / "vitest.config.mjs"
SUITE_ENV = {
    "TOKENRELAY_DS_OPEN": "true",
    "TOKENRELAY_CORS_ORIGINS": "*",
    "TOKENRELAY_DS_LONG_POLL_S": "2",
}
NO_UPSTREAM = "http://127.0.0.1:9/v1"  # durable streams need no worker, so no model
MIN_PASSED = 332
RESERVED = "Reserved subscription APIs"
WRITES = {"PUT", "POST", "DELETE"}
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class Outcome:
    """What one run of the suite came to (from vitest's JSON report)."""

    passed: int
    failed: list[str]
    """Each failing test's full name and its first failure message."""
    skipped: list[tuple[str, ...]]
    """Each skipped (or todo) test's describe blocks and title."""
    total: int
    duration_s: float
    """The suite's own run time, as vitest reports it."""
    wall_s: float
    """Starting vitest to its exit."""

    def summary(self, where: str) -> str:
        return (
            f"Durable Streams conformance, {where}: {self.passed} passed, "
            f"{len(self.failed)} failed, {len(self.skipped)} skipped of {self.total} "
            f"in {self.duration_s:.1f} s ({self.wall_s:.1f} s with vitest's start)"
        )


def first_message(test: dict[str, Any]) -> str:
    """A failure's message without its stack trace (and without colours)."""
    messages = test.get("failureMessages") or ["(no message)"]
    lines = ANSI.sub("", str(messages[0])).splitlines()
    kept = []
    for line in lines:
        if line.lstrip().startswith("at "):
            break
        kept.append(line)
    return "\n".join(kept).strip()[:1500]


def parse_report(report: dict[str, Any], wall_s: float) -> Outcome:
    passed, failed, skipped, total = 0, [], [], 0
    ends: list[float] = []
    for file in report["testResults"]:
        ends.append(float(file.get("endTime") or 0))
        if file.get("status") == "failed" and not file["assertionResults"]:
            failed.append(f"{file['name']}: {ANSI.sub('', file.get('message') or '')}")
        for test in file["assertionResults"]:
            total += 1
            name = (*test["ancestorTitles"], test["title"])
            if test["status"] == "passed":
                passed += 1
            elif test["status"] == "failed":
                failed.append(f"{' > '.join(name)}\n    {first_message(test)}")
            else:  # skipped, pending, todo
                skipped.append(name)
    duration_s = (max(ends, default=0) - float(report["startTime"])) / 1000
    return Outcome(passed, failed, skipped, total, max(duration_s, 0), wall_s)


def run_suite(node: str, url: str, tmp: Path) -> Outcome:
    """The whole suite against ``url`` (``.../v1/ds``, no trailing slash), through vitest;
    its console output goes to ``tmp/vitest.log``."""
    report_path, log_path = tmp / "conformance.json", tmp / "vitest.log"
    command = [
        node, str(VITEST), "run",
        "--config", str(VITEST_CONFIG),
        "--no-coverage",
        "--reporter=dot", "--reporter=json", f"--outputFile.json={report_path}",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENRELAY_", "FORCE_COLOR"))}
    env.update({"CONFORMANCE_TEST_URL": url, "NO_COLOR": "1", "CI": "true"})
    started = time.monotonic()
    with log_path.open("wb") as log:
        try:
            result = subprocess.run(
                command, cwd=NODE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=150
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"the suite did not end within 150 s:\n{tail(log_path)}")
    wall_s = time.monotonic() - started
    if not report_path.exists():
        pytest.fail(f"vitest exited {result.returncode} without a report:\n{tail(log_path)}")
    outcome = parse_report(json.loads(report_path.read_text()), wall_s)
    if result.returncode != 0 and not outcome.failed:
        pytest.fail(f"vitest exited {result.returncode}, no test failed:\n{tail(log_path)}")
    return outcome


def tail(path: Path, lines: int = 60) -> str:
    return "\n".join(ANSI.sub("", path.read_text(errors="replace")).splitlines()[-lines:])


def check(outcome: Outcome, where: str, record_property: Callable[[str, object], None]) -> None:
    """Every test passed (at least ``MIN_PASSED``) but the reserved subscription ones."""
    summary = outcome.summary(where)
    record_property("conformance", summary)
    print(summary)  # shown with the test's output (on a failure, or with -s / -rA)
    for failure in outcome.failed:
        print(f"FAILED {failure}")
    assert not outcome.failed, f"{summary}; failing:\n" + "\n".join(outcome.failed)
    assert outcome.passed >= MIN_PASSED, summary
    others = [" > ".join(name) for name in outcome.skipped if name[0] != RESERVED]
    assert not others, f"{summary}; skipped besides {RESERVED!r}: {others}"
    assert outcome.passed + len(outcome.skipped) == outcome.total, summary


# -- one gateway ---------------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_the_conformance_suite_passes_against_one_gateway(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    node = node_with(SUITE)  # before starting anything
    with running(Stack(tmp=tmp_path, mock_url=NO_UPSTREAM, extra_env=SUITE_ENV)) as stack:
        _, base = stack.gateway()
        outcome = run_suite(node, f"{base}/v1/ds", tmp_path)
        check(outcome, "one gateway", record_property)


# -- two gateways, writes to one and reads from the other ------------------------------------


def method_router_config(tmp: Path, writer: str, reader: str, listen: int) -> Path:
    """nginx in front of two gateways: PUT, POST and DELETE to ``writer``, every other
    method (GET, HEAD, OPTIONS) to ``reader``; set up for long-lived responses as
    deploy/nginx/tokenrelay.conf is; each request's method and upstream logged."""
    config = tmp / "nginx.conf"
    config.write_text(
        f"""daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log info;
worker_processes 1;
events {{ worker_connections 4096; }}
http {{
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    log_format routed '$request_method $upstream_addr $status';
    access_log {tmp}/nginx-access.log routed;

    upstream writer {{ server {writer}; keepalive 64; }}
    upstream reader {{ server {reader}; keepalive 64; }}
    map $request_method $gateway {{
        default reader;
        PUT writer;
        POST writer;
        DELETE writer;
    }}

    server {{
        listen 127.0.0.1:{listen};
        # bigger than the suite's 10 MiB append: the gateway answers 413 itself; held in
        # memory (nginx's workers may not write into the test's private tmp directory)
        client_max_body_size 16m;
        client_body_buffer_size 16m;

        location / {{
            proxy_pass http://$gateway;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_buffering off;
            proxy_cache off;
            gzip off;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
            proxy_next_upstream off;
            proxy_connect_timeout 2s;
        }}
    }}
}}
"""
    )
    return config


@contextmanager
def method_router(tmp: Path, writer: str, reader: str) -> Iterator[tuple[Process, str]]:
    """nginx (the process and its base URL) routing writes to ``writer`` and reads to
    ``reader`` (``host:port`` each); stopped on exit."""
    listen = free_port()
    config = method_router_config(tmp, writer, reader, listen)
    argv = [nginx_binary(), "-c", str(config), "-e", str(tmp / "nginx-error.log")]
    nginx = Process("nginx", argv, {}, tmp / "nginx.log").start()
    try:
        url = f"http://127.0.0.1:{listen}"
        wait_http(f"{url}/healthz", nginx)
        yield nginx, url
    finally:
        if nginx.alive():
            assert nginx.popen is not None
            nginx.popen.send_signal(signal.SIGQUIT)  # nginx's graceful stop
            try:
                nginx.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                nginx.kill()


@pytest.mark.timeout(180)
def test_the_conformance_suite_passes_with_writes_and_reads_on_different_gateways(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    node = node_with(SUITE)
    with running(Stack(tmp=tmp_path, mock_url=NO_UPSTREAM, extra_env=SUITE_ENV)) as stack:
        writer = stack.gateway()[1].removeprefix("http://")
        reader = stack.gateway()[1].removeprefix("http://")
        with method_router(tmp_path, writer, reader) as (nginx, url):
            outcome = run_suite(node, f"{url}/v1/ds", tmp_path)
            routed = Counter(
                tuple(line.split(" ")[:2])
                for line in (tmp_path / "nginx-access.log").read_text().splitlines()
            )
            if outcome.failed:
                print(f"--- nginx ---\n{nginx.log_tail()}\n{tail(tmp_path / 'nginx-error.log')}")
        check(outcome, "writes on one gateway, reads on another (nginx)", record_property)
    # the harness did route: each write to the writer, each read to the reader, many of each
    wrong = {
        route: n for route, n in routed.items() if (route[0] in WRITES) != (route[1] == writer)
    }
    assert not wrong, f"requests on the wrong gateway (method, upstream: count): {wrong}"
    per_method = Counter[str]()
    for (method, _), count in routed.items():
        per_method[method] += count
    assert min(per_method[m] for m in ("PUT", "POST", "GET", "HEAD")) >= 20, per_method
