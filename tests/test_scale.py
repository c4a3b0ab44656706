"""The read path scales from day one: 200 concurrent SSE clients on one gateway process are
served through a fixed handful of Redis connections."""

from __future__ import annotations

import asyncio

import httpx
import redis.asyncio as aioredis

from tests.client import Relay
from tests.processes import API_KEY, REDIS_URL, Stack

READER_POOL_SIZE = 5
MAX_GATEWAY_CONNECTIONS = READER_POOL_SIZE + 1 + 2
"""The shared pool, the hub's one pub/sub connection, the job queue's pool of two."""


async def gateway_connections(redis: aioredis.Redis, pid: int) -> int:
    clients = await redis.client_list()
    return sum(
        1
        for c in clients
        if c.get("name", "").endswith(f":{pid}") and c["name"].startswith("tokenrelay-gateway")
    )


async def test_200_sse_clients_share_a_fixed_number_of_redis_connections(
    stack: Stack,
) -> None:
    gateway, base = stack.gateway(TOKENRELAY_READER_POOL_SIZE=str(READER_POOL_SIZE))
    stack.worker()
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
    redis = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:
        relay = Relay(http, stack.mock_url.removesuffix("/v1"), API_KEY)
        streams = [
            await relay.create(f"scale {i}", model="mock?tokens=60&rate=25") for i in range(20)
        ]
        readers = [asyncio.create_task(relay.read_sse(s["id"])) for s in streams for _ in range(10)]
        samples = []
        while not all(r.done() for r in readers):
            samples.append(await gateway_connections(redis, gateway.pid))
            await asyncio.sleep(0.1)
        reads = [r.result() for r in readers]
        sent = {s["id"]: (await relay.mock_record(s["id"]))["sent_text"] for s in streams}
    await redis.aclose()

    assert len(reads) == 200
    for index, read in enumerate(reads):
        assert read.terminal.data["finish_reason"] == "stop"
        assert read.text == sent[streams[index // 10]["id"]]
    print(
        f"gateway Redis connections while serving 200 SSE clients: max {max(samples)}, "
        f"samples {sorted(set(samples))}"
    )
    assert 2 <= max(samples) <= MAX_GATEWAY_CONNECTIONS
