"""The coalescing trade-off: events written per stream and worker throughput, by linger.

Runs the real worker path in-process (mock model over HTTP, the openai SDK, the appender,
the Lua appends) against a real Redis, under a throwaway key prefix:

    .venv/bin/python -m bench.coalesce [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import redis.asyncio as aioredis

from producer.generation import Producer
from producer.mockmodel import MockModel
from producer.upstream import Upstream, build_client
from shared.settings import Settings
from shared.store import StreamStore


async def run_case(url: str, model: str, linger_ms: float, streams: int) -> tuple[float, float]:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    settings = Settings(redis_url=url, key_prefix=prefix, coalesce_linger_ms=linger_ms)
    redis = aioredis.Redis.from_url(url, decode_responses=True)
    store = StreamStore(redis, settings)
    try:
        async with MockModel() as mock:
            client = build_client(
                api_key="x",
                base_url=mock.base_url,
                timeout_s=30,
                connect_timeout_s=5,
            )
            producer = Producer(store, Upstream(client, "mock"), settings, "bench")
            ids = [uuid.uuid4().hex[:22] for _ in range(streams)]
            for stream_id in ids:
                await store.create(
                    stream_id,
                    model=model,
                    request={"model": model, "messages": [{"role": "user", "content": stream_id}]},
                    metadata={},
                    cancel_on_disconnect_s=None,
                )
            started = time.perf_counter()
            await asyncio.gather(*(producer.generate(i) for i in ids))
            elapsed = time.perf_counter() - started
            tokens = sum(r.tokens_sent for r in mock.requests)
            events = [
                int(await redis.hget(store.keys.meta(i), "event_count") or 0) - 1 for i in ids
            ]
            await client.close()
        return tokens / elapsed, sum(events) / len(events)
    finally:
        async for key in redis.scan_iter(match=f"{prefix}:*", count=1000):
            await redis.delete(key)
        await redis.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    print("| upstream | linger | token events per stream | tokens/s appended by one worker |")
    print("| --- | --- | --- | --- |")
    cases = [
        ("full speed, 20 x 5,000 tokens", "mock?tokens=5000&rate=0", 20),
        ("paced, 50 x 100 tokens at 100/s", "mock?tokens=100&rate=100", 50),
    ]
    for label, model, streams in cases:
        for linger in (0.0, 5.0, 20.0):
            rate, events = await run_case(args.redis, model, linger, streams)
            print(f"| {label} | {linger:g} ms | {events:.0f} | {rate:,.0f} |")


if __name__ == "__main__":
    asyncio.run(main())
