"""Script calls made in one event-loop iteration go to Redis as one pipeline.

A worker runs many generations; each appends its events one at a time, in order. Sent one
by one, every append pays redis-py's whole per-command cost and a round trip. Batched here,
the appends of all streams that are ready at the same moment share one pipeline, and each
caller still awaits its own result (or exception), in its own order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from shared.metrics import redis_latency

_Call = tuple[AsyncScript, Sequence[str], Sequence[Any], "asyncio.Future[Any]"]


class ScriptBatcher:
    def __init__(self, redis: Redis, operation: str) -> None:
        self._redis = redis
        self._latency = redis_latency.labels(operation)
        self._pending: list[_Call] = []
        self._running: set[asyncio.Task[None]] = set()

    async def call(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((script, keys, args, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.create_task(self._send(batch), name="script batch")
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _send(self, batch: list[_Call]) -> None:
        started = time.perf_counter()
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for script, keys, args, _ in batch:
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
                results = await pipe.execute(raise_on_error=False)
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
