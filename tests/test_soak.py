"""The soak's short version (``python -m bench.soak`` runs the hour): the mixed load in
cycles, each followed by a quiet spell in which every finished stream expires. At each quiet
point the system must hold what it held at the last one: the same file descriptors and Redis
clients, no key left behind, no memory gained (beyond a little allocator noise), and every
answer of every session exact."""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing
from pathlib import Path

from bench.mix import SCENARIOS, Mix
from bench.soak import ADMIN_TOKEN, Sample, soak_env, take_sample
from bench.stack import API_KEY, Proc, Stack

CYCLES, CYCLE_S, CONCURRENCY, RETENTION_S = 6, 3.0, 12, 1
WARM = 2
"""Cycles that fill pools and caches to their working size before the comparisons start."""


async def quiet_point(stack: Stack, gateway: Proc, worker: Proc, mix: Mix, t0: float) -> Sample:
    """A sample once every stream of the cycle has expired and left the index."""
    deadline = time.monotonic() + RETENTION_S + 15
    while True:
        sample = take_sample(stack, gateway, worker, time.monotonic() - t0, mix.tally)
        streams = stack.observer.keys("bench:{*") + stack.observer.keys("bench:streams")
        if not streams:
            return sample
        assert time.monotonic() < deadline, f"keys never expired: {sorted(streams)[:5]}"
        await asyncio.sleep(0.25)


async def test_no_growth_over_repeated_cycles(tmp_path: Path) -> None:
    with Stack(tmp_path / "logs", env=soak_env(RETENTION_S)) as stack:
        stack.mock_model()
        gateway, worker = stack.gateway(), stack.worker()
        quiet: list[Sample] = []
        t0 = time.monotonic()
        async with aclosing(Mix(gateway.url, API_KEY, ADMIN_TOKEN)) as mix:
            for _ in range(CYCLES):
                await mix.run(seconds=CYCLE_S, concurrency=CONCURRENCY)
                quiet.append(await quiet_point(stack, gateway, worker, mix, t0))
    for sample in quiet:
        print(sample)

    assert mix.tally.problems == 0, mix.tally.first_problems
    assert set(mix.tally.sessions) == {name for name, _ in SCENARIOS}
    assert sum(mix.tally.sessions.values()) > CYCLES * 50
    reference, later = quiet[WARM - 1], quiet[WARM:]
    # connection pools (Redis, the worker's HTTP client to the upstream) keep what the
    # busiest moment opened, which on a loaded machine can still be a few more; a leak of one
    # per session is a hundred or more a cycle
    for sample in later:
        assert sample.gateway_fds <= reference.gateway_fds + 10, quiet
        assert sample.worker_fds <= reference.worker_fds + 10, quiet
        assert sample.redis_clients <= reference.redis_clients + 10, quiet
        assert sample.redis_keys <= reference.redis_keys, quiet
        assert sample.redis_memory_mb <= reference.redis_memory_mb + 0.5, quiet
    # a leak of 1 KB a session would add ~1.5 MB a cycle
    assert later[-1].gateway_rss_mb - reference.gateway_rss_mb < 3, quiet
    assert later[-1].worker_rss_mb - reference.worker_rss_mb < 3, quiet
