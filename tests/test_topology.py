"""The Compose topology as local processes, broken on purpose (tests/chaos.py): a gateway and
a worker SIGKILLed and Redis restarted from its AOF while 50 generations are read through
nginx by clients that reconnect and resume."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from rich.console import Console

from tests.chaos import CHAOS_ENV, TERMINAL_ERRORS, run_chaos
from tests.processes import API_KEY
from tests.topology import topology


async def test_requests_through_nginx_reach_both_gateways(tmp_path: Path, mock_model: str) -> None:
    with topology(tmp_path, f"{mock_model}/v1") as topo:
        async with httpx.AsyncClient(base_url=topo.url, timeout=30) as http:
            body = {"model": "mock?tokens=5", "messages": [{"role": "user", "content": "hi"}]}
            auth = {"Authorization": f"Bearer {API_KEY}"}
            for _ in range(6):
                r = await http.post("/v1/streams", json=body, headers=auth)
                assert r.status_code == 201
                read = await http.get(r.json()["events_url"])
                assert read.status_code == 200 and "event: done" in read.text
            # nginx passes a live stream through as it is written, not when it ends
            body["model"] = "mock?tokens=20&rate=10"
            r = await http.post("/v1/streams", json=body, headers=auth)
            started = time.monotonic()
            async with http.stream("GET", r.json()["events_url"]) as live:
                async for chunk in live.aiter_text():
                    if "event: token" in chunk:
                        break
            first_token_s = time.monotonic() - started
            assert first_token_s < 1.0, f"the first token came after {first_token_s:.1f} s of 2"
        served = [
            gateway.log_text().count("step=created") + gateway.log_text().count("step=read")
            for gateway in topo.gateways
        ]
        assert sum(served) == 14 and min(served) >= 5, f"requests served per gateway: {served}"


async def test_chaos_every_stream_ends_exact_or_with_a_spec_error(
    tmp_path: Path, mock_model: str
) -> None:
    with topology(tmp_path, f"{mock_model}/v1", **CHAOS_ENV) as topo:
        outcome = await run_chaos(
            topo,
            mock_model,
            generations=50,
            tokens=120,
            rate=30,
            chaos_at=(1.0, 2.0, 3.0),
            within_s=60,
        )
        Console(width=120).print(outcome.table())
        assert outcome.problems() == [], topo.logs()
    assert outcome.hung == 0
    assert [what.split(" (")[0] for _, what in outcome.timeline] == [
        "gateway 1 SIGKILLed",
        "worker 1 SIGKILLed",
        "Redis restarted from its AOF",
    ]
    endings = [r.terminal for r in outcome.readers]
    assert all(t is not None for t in endings)
    completed = [r for r in outcome.readers if r.terminal and r.terminal.type == "done"]
    failed = [r for r in outcome.readers if r.terminal and r.terminal.type == "error"]
    assert len(completed) + len(failed) == 50
    assert {r.terminal.data["code"] for r in failed if r.terminal} <= TERMINAL_ERRORS
    assert completed, "no stream survived the chaos"
    # the faults reached the readers: some were cut and resumed
    assert sum(r.connects for r in outcome.readers) > 50
