"""Script calls go to Redis in pipelines: one in flight, the next gathering meanwhile.

A worker runs many generations; each appends its events one at a time, in order, and renews
its lease a few times a second. Sent one by one, every call pays redis-py's whole
per-command cost and a round trip. Here the calls wait in a queue, and a single sender sends
everything queued as one pipeline, awaits it, and then sends what gathered while it was in
flight. An idle process sends each call at once (no added latency); a busy one sends larger
pipelines, not more of them, and holds one connection. Each caller still awaits its own
result (or exception), and the calls of one caller keep their order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from shared.metrics import redis_latency

_Call = tuple[AsyncScript, Sequence[str], Sequence[Any], "asyncio.Future[Any]"]


class ScriptBatcher:
    def __init__(self, redis: Redis, operation: str) -> None:
        self._redis = redis
        self._latency = redis_latency.labels(operation)
        self._pending: list[_Call] = []
        self._sender: asyncio.Task[None] | None = None

    async def call(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((script, keys, args, future))
        if self._sender is None:
            # The task starts on the next loop iteration: calls made in this one join it.
            self._sender = asyncio.create_task(self._send_all(), name="script batches")
        return await future

    async def _send_all(self) -> None:
        batch: list[_Call] = []
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                await self._send(batch)
        finally:  # left early only when cancelled: so are the calls it holds
            self._sender = None
            for *_, future in batch + self._pending:
                future.cancel()
            self._pending = []

    async def _send(self, batch: list[_Call]) -> None:
        started = time.perf_counter()
        try:
            results = await self._execute(batch)
        except Exception as exc:  # the connection failed: every call in it did
            results = [exc] * len(batch)
        for (script, keys, args, future), result in zip(batch, results, strict=True):
            if isinstance(result, NoScriptError):  # Redis lost its scripts (a restart)
                try:
                    result = await script(keys=keys, args=args)
                except Exception as exc:
                    result = exc
            if future.done():  # its caller was cancelled
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
        elapsed = time.perf_counter() - started
        for _ in batch:
            self._latency.observe(elapsed)

    async def _execute(self, batch: list[_Call]) -> list[Any]:
        if isinstance(self._redis, RedisCluster):
            # redis-py's cluster pipelines refuse EVALSHA: the calls go side by side instead
            # (each routed to its stream's node; one caller's calls still wait on each other)
            return await asyncio.gather(
                *(
                    self._redis.evalsha(s.sha, len(keys), *keys, *args)
                    for s, keys, args, _ in batch
                ),
                return_exceptions=True,
            )
        async with self._redis.pipeline(transaction=False) as pipe:
            for script, keys, args, _ in batch:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            results: list[Any] = await pipe.execute(raise_on_error=False)
        return results
