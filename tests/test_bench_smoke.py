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
    for process in ("gateway-0", "worker-0"):  # both report their event loop's lag
        assert 0 <= result["event_loop_lag"][process]["mean_ms"] < 1000


@needs_redis_server
def test_throughput_scenario(tmp_path: Path) -> None:
    result = bench(tmp_path, "throughput", "--streams", "3", "--tokens", "2000")
    assert result["ok"]
    sent = 3 * 2000
    assert result["tokens_sent_by_mock"] == result["tokens_appended_metric"] == sent
    assert result["tokens_received"] == sent and result["lost_tokens"] == 0
    assert result["appended_per_s"] > 0 and result["delivered_per_s"] > 0
    assert result["cpu_percent"]["worker"] > 0


@needs_redis_server
@pytest.mark.parametrize("naive", [False, True], ids=["tokenrelay", "naive"])
def test_connections_scenario(tmp_path: Path, naive: bool) -> None:
    argv = ["--readers", "30", "--streams", "3", "--idle", "3.5", "--ping-interval", "1"]
    result = bench(tmp_path, "connections", *argv, *(["--naive"] if naive else []))
    assert result["ok"] and result["gateway_kind"] == ("naive" if naive else "tokenrelay")
    assert result["readers_connected"] == result["readers_held_after_idle"] == 30
    assert result["readers_without_token"] == result["readers_without_ping"] == 0
    assert result["pings_per_reader"]["min"] >= 1
    assert result["readers_ended_after_cancel"] == 30
    assert 0 < result["rss_before_mb"] and 0 < result["rss_with_mb"]
    assert 0 <= result["idle_gateway_cpu_percent"] < 100
    if naive:  # one Redis connection per client, unnamed
        assert result["gateway_redis_tcp"] >= 30 and result["gateway_redis_named"] == 0
    else:
        assert 0 < result["gateway_redis_named"] == result["gateway_redis_tcp"] <= 8


@needs_redis_server
@pytest.mark.parametrize("naive", [False, True], ids=["tokenrelay", "naive"])
def test_fanout_scenario(tmp_path: Path, naive: bool) -> None:
    argv = ["--readers", "30", "--tokens", "40", "--rate", "100", "--ttft", "1"]
    result = bench(tmp_path, "fanout", *argv, *(["--naive"] if naive else []))
    assert result["ok"]
    assert result["tokens_received"] == result["expected_tokens"] == 30 * 40
    assert result["stream_tokens"] == 40
    assert result["readers_finished"] == 30 and result["readers_wrong"] == 0
    assert result["lost_tokens"] == 0
    lat = result["latency"]
    assert 0 < lat["p50_ms"] <= lat["p99_ms"] <= lat["max_ms"] < 5000
    assert result["cpu_percent"]["gateway"] > 0


@needs_redis_server
def test_fanout_over_two_gateways(tmp_path: Path) -> None:
    argv = ["--readers", "20", "--tokens", "30", "--rate", "100", "--ttft", "1", "--gateways", "2"]
    result = bench(tmp_path, "fanout", *argv)
    assert result["ok"] and result["tokens_received"] == 20 * 30
    assert result["cpu_percent"]["gateway"] > 0 and result["cpu_percent"]["gateway-1"] > 0


@needs_redis_server
def test_memory_profile_per_reader() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.memory", "--readers", "60", "--top", "5"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=45,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    per_reader = re.search(r"60 readers: Python heap \+([\d.]+) KB per reader", done.stdout)
    assert per_reader is not None, done.stdout
    assert 1 < float(per_reader.group(1)) < 200
    assert "by allocation site:" in done.stdout


@needs_redis_server
@pytest.mark.parametrize("naive", [False, True], ids=["tokenrelay", "naive"])
def test_catchup_scenario(tmp_path: Path, naive: bool) -> None:
    argv = ["--readers", "30", "--streams", "3", "--tokens", "100"]
    result = bench(tmp_path, "catchup", *argv, *(["--naive"] if naive else []))
    assert result["ok"]
    assert result["tokens_received"] == result["expected_tokens"] == 30 * 100
    assert result["readers_finished"] == 30 and result["readers_wrong"] == 0
    assert result["lost_tokens"] == 0
    assert result["all_done_s"] > 0 and result["delivered_per_s"] > 0


@needs_redis_server
def test_latency_and_throughput_on_the_naive_gateway(tmp_path: Path) -> None:
    latency = bench(
        tmp_path, "latency", "--streams", "3", "--tokens", "20", "--rate", "100", "--naive"
    )
    assert latency["ok"] and latency["gateway_kind"] == "naive"
    assert latency["relay"]["tokens"] == 3 * 20 and latency["lost_tokens"] == 0
    assert "naive-gateway" in latency["cpu_percent"]
    throughput = bench(tmp_path, "throughput", "--streams", "3", "--tokens", "2000", "--naive")
    assert throughput["ok"] and throughput["gateway_kind"] == "naive"
    assert throughput["tokens_received"] == 3 * 2000 and throughput["delivered_per_s"] > 0


@needs_redis_server
def test_bytes_per_token(tmp_path: Path) -> None:
    out = tmp_path / "bytes.json"
    argv = ["--runs", "1", "--streams", "2", "--tokens", "300", "--paced-streams", "3"]
    argv += ["--paced-tokens", "20", "--paced-spread", "4", "--paced-rate", "200"]
    done = subprocess.run(
        [sys.executable, "-m", "bench.bytes_per_token", *argv, "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| paced: Redis bytes per token (events + meta) |" in done.stdout
    result = json.loads(out.read_text())
    paced, full = result["runs"][0]["paced"], result["runs"][0]["full"]
    assert paced["streams"] == 3 and paced["tokens"] == 18 + 19 + 20  # spread over 4 lengths
    assert paced["token_events_per_token"] == 1  # one token per event, as asked
    assert paced["events_per_stream"] >= paced["tokens_per_stream"] + 1  # + the terminal event
    assert 10 < paced["events_bytes_per_token"] < paced["redis_bytes_per_token"] < 2000
    assert 200 < paced["meta_bytes_per_stream"] < 10_000
    assert 10 < paced["notify_bytes_per_token"] < 500
    messages = paced["notify_messages_per_token"] * paced["tokens"]
    assert messages == pytest.approx(paced["events_per_stream"] * 3)  # every event published
    assert full["tokens"] == 2 * 300 and full["token_events_per_token"] < 1  # coalesced
    assert 0 < full["redis_bytes_per_token"] < paced["redis_bytes_per_token"]
    assert full["tokens_per_s"] > 0 and full["worker_cpu_us_per_token"] > 0
    assert full["redis_cpu_us_per_token"] >= 0 and full["mock_cpu_us_per_token"] >= 0
    assert result["summary"]["full"]["tokens_per_s"]["median"] == full["tokens_per_s"]


def _durable_bench(results: Path, *argv: str) -> dict[str, Any]:
    """Run ``python -m bench.durable`` and return the JSON line it appended."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.durable", "--results", str(results), *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (line,) = (results / f"ds-{argv[0]}.jsonl").read_text().splitlines()
    record: dict[str, Any] = json.loads(line)
    return record


@needs_redis_server
def test_durable_streams_appends_and_fanout(tmp_path: Path) -> None:
    appends = _durable_bench(
        tmp_path, "appends", "--writers", "3", "--appends", "20", "--batch", "2"
    )
    assert appends["ok"] and appends["appends"] == 60 and appends["stored_wrong"] == 0
    assert appends["events_per_s"] == pytest.approx(2 * appends["appends_per_s"], rel=0.01)
    assert appends["gateway_cpu_us_per_append"] > 0
    fanout = _durable_bench(
        tmp_path, "fanout", "--readers", "5", "--events", "20", "--rate", "100", "--settle", "0.5"
    )
    assert fanout["ok"] and fanout["events_received"] == fanout["expected_events"] == 100
    assert fanout["readers_complete"] == 5 and fanout["readers_out_of_order"] == 0
    assert 0 < fanout["latency"]["p50_ms"] <= fanout["latency"]["p99_ms"]
