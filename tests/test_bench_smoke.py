"""The benchmark scenarios keep working: tiny runs of ``bench.run``, and the mock's stamps."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from producer.mockmodel import MockModel, MockOptions, MockOptionsError

REPO = Path(__file__).resolve().parents[1]
STAMP = re.compile(r" t(\d+)")

needs_redis_server = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="the benchmarks start their own redis-server"
)


def bench(results: Path, *argv: str) -> dict[str, Any]:
    """Run ``python -m bench.run`` and return the JSON line it appended."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--results", str(results), "--grace", "15", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=45,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = (results / f"{argv[0]}.jsonl").read_text().splitlines()
    assert len(lines) == 1
    record: dict[str, Any] = json.loads(lines[0])
    return record


def test_stamp_option_parses() -> None:
    assert MockOptions.parse("mock?stamp=1").stamp
    assert not MockOptions.parse("mock?stamp=0").stamp
    assert not MockOptions.parse("mock").stamp
    with pytest.raises(MockOptionsError):
        MockOptions.parse("mock?stamp=yes")


async def test_stamped_tokens_carry_their_send_time() -> None:
    body = {"model": "mock?tokens=30&rate=200&stamp=1", "messages": [], "stream": True}
    async with MockModel() as mock, httpx.AsyncClient(base_url=mock.base_url) as http:
        before = time.time_ns()
        received: list[tuple[str, int]] = []
        async with http.stream("POST", "/chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: {"):
                    delta = json.loads(line[6:])["choices"][0]["delta"]
                    if delta.get("content"):
                        received.append((delta["content"], time.time_ns()))
        assert all(STAMP.fullmatch(text) for text, _ in received)
        stamps = [int(text.removeprefix(" t")) for text, _ in received]
        assert len(stamps) == 30
        assert before <= stamps[0] and stamps == sorted(stamps)
        assert all(stamp <= at for stamp, (_, at) in zip(stamps, received, strict=True))
        # paced at 200 tokens/s: the stamps are the send times, not the request's time
        assert (stamps[-1] - stamps[0]) / 1e9 >= 29 / 200 * 0.8
        assert mock.requests[0].sent_text == "".join(text for text, _ in received)

        plain = await http.post("/chat/completions", json=body | {"stream": False})
        text = plain.json()["choices"][0]["message"]["content"]
        assert re.fullmatch(r"( t\d+){30}", text)


async def test_without_stamp_the_text_is_unchanged() -> None:
    body = {"model": "mock?tokens=5&rate=0", "messages": [{"role": "user", "content": "hi"}]}
    async with MockModel() as mock, httpx.AsyncClient(base_url=mock.base_url) as http:
        text = (await http.post("/chat/completions", json=body)).json()["choices"][0]["message"]
        assert not STAMP.search(text["content"])


@needs_redis_server
def test_latency_scenario(tmp_path: Path) -> None:
    result = bench(tmp_path, "latency", "--streams", "3", "--tokens", "20", "--rate", "100")
    assert result["ok"]
    assert result["relay"]["tokens"] == result["direct"]["tokens"] == 3 * 20
    assert result["lost_tokens"] == 0
    for side in ("relay", "direct"):
        assert 0 < result[side]["p50_ms"] <= result[side]["p99_ms"] <= result[side]["max_ms"]
    assert result["relay"]["p50_ms"] < 1000
    assert set(result["cpu_percent"]) >= {"redis", "mock", "gateway-0", "worker-0", "loadgen"}
    assert result["redis_connections"]["gateway-0"] > 0


@needs_redis_server
def test_throughput_scenario(tmp_path: Path) -> None:
    result = bench(tmp_path, "throughput", "--streams", "3", "--tokens", "2000")
    assert result["ok"]
    sent = 3 * 2000
    assert result["tokens_sent_by_mock"] == result["tokens_appended_metric"] == sent
    assert result["tokens_received"] == sent and result["lost_tokens"] == 0
    assert result["appended_per_s"] > 0 and result["delivered_per_s"] > 0
    assert result["cpu_percent"]["worker"] > 0
