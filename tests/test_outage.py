"""Redis stopped for 10 s under load, then back (from its append-only file): the gateway answers
503 quickly while it is gone (never 500), clients resume, and no stream loses an event that a
reader had already received (an acknowledged append)."""

from __future__ import annotations

import asyncio
import collections
import time
from pathlib import Path

import httpx

from tests.chaos import AUTH, Outcome, Reader, _sent, _stored
from tests.processes import Stack
from tests.topology import RedisServer

OUTAGE_S = 10


async def test_redis_down_for_10_s_mid_load(tmp_path: Path, mock_model: str) -> None:
    redis = RedisServer(tmp_path).start()
    stack = Stack(
        tmp=tmp_path,
        mock_url=f"{mock_model}/v1",
        extra_env={"TOKENRELAY_REDIS_URL": redis.url, "TOKENRELAY_LEASE_S": "20"},
    )
    try:
        _, base = stack.gateway()
        stack.worker()
        readers = [Reader(i) for i in range(10)]
        statuses: collections.Counter[int] = collections.Counter()
        slowest_refusal = 0.0
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            model = "mock?tokens=360&rate=20"  # 18 s: the outage falls in the middle
            for reader in readers:
                await reader.create(http, model)
            following = [asyncio.create_task(reader.read(http)) for reader in readers]
            await asyncio.sleep(3)
            received_before = {r.stream_id: len(r.events) for r in readers}
            redis.stop()
            down_at = time.monotonic()
            while time.monotonic() - down_at < OUTAGE_S:  # clients keep asking meanwhile
                asked = time.monotonic()
                answer = await http.get(f"/v1/streams/{readers[0].stream_id}", headers=AUTH)
                slowest_refusal = max(slowest_refusal, time.monotonic() - asked)
                statuses[answer.status_code] += 1
                if answer.status_code == 503:
                    assert answer.json()["error"]["code"] == "redis_unavailable"
                    assert int(answer.headers["retry-after"]) > 0
                await asyncio.sleep(0.2)
            redis.start()
            await asyncio.wait_for(asyncio.gather(*following), 60)
            ids = [r.stream_id for r in readers]
            stored = {i: await _stored(http, i) for i in ids}
        sent = {i: await _sent(mock_model, i) for i in ids}
        outcome = Outcome(readers, sent, stored, [], 0, 0.0)
        assert outcome.problems() == [], stack.logs()
    finally:
        stack.stop_all()
        redis.stop()

    assert set(statuses) == {503}, statuses  # never a 500, never an answer from nowhere
    assert slowest_refusal < 1.0, f"a refusal took {slowest_refusal:.2f} s"
    for reader in readers:  # everything received before the outage is still the stream's start
        assert len(reader.events) > received_before[reader.stream_id] > 0
        assert reader.connects > 1  # the outage cut every reader; each resumed
    endings = collections.Counter(r.terminal.type if r.terminal else "none" for r in readers)
    assert endings == {"done": 10}, endings  # every generation rode it out
    for reader in readers:
        assert reader.text == sent[reader.stream_id]
