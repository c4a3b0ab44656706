"""Heartbeats of live processes (gateways, workers) in one Redis hash each.

A process writes ``{..., "seen": <unix time>}`` under its id every ``interval_s`` and removes
it when it stops; readers of the hash ignore entries older than ``STALE_AFTER_S``, so a
process that died without cleaning up disappears on its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger("tokenrelay")

HEARTBEAT_S = 2.0
STALE_AFTER_S = 10.0


def process_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Heartbeat:
    """Keeps ``member`` of ``key`` fresh with ``describe()`` while running."""

    def __init__(
        self, redis: Redis, key: str, member: str, describe: Callable[[], dict[str, Any]]
    ) -> None:
        self._redis = redis
        self._key = key
        self._member = member
        self._describe = describe
        self._task: asyncio.Task[None] | None = None

    async def beat(self) -> None:
        entry = {**self._describe(), "seen": time.time()}
        await self._redis.hset(self._key, self._member, json.dumps(entry))  # type: ignore[misc]

    async def _run(self) -> None:
        while True:
            try:
                await self.beat()
            except RedisError as exc:
                log.warning("heartbeat to %s failed: %s", self._key, exc)
            await asyncio.sleep(HEARTBEAT_S)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"heartbeat {self._key}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        with suppress(RedisError):
            await self._redis.hdel(self._key, self._member)  # type: ignore[misc]


async def alive(redis: Redis, key: str) -> dict[str, dict[str, Any]]:
    """The live members of a heartbeat hash (stale ones are removed on the way)."""
    entries: dict[str, str] = await redis.hgetall(key)  # type: ignore[misc]
    now, live, stale = time.time(), {}, []
    for member, raw in entries.items():
        entry = json.loads(raw)
        if now - entry["seen"] <= STALE_AFTER_S:
            live[member] = entry
        else:
            stale.append(member)
    if stale:
        await redis.hdel(key, *stale)  # type: ignore[misc]
    return live
