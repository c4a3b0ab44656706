"""Who is reading what: each gateway records its active readers in Redis for the admin view.

A reader's entry (``gateway``, ``offset``, ``since``) lives in its stream's readers hash.
Entries are written in one pipeline per flush, and only when they changed, so idle readers
cost nothing; a reader is live while its gateway's heartbeat is (``shared.presence``), so
the readers of a dead gateway disappear from the view on their own.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from contextlib import suppress
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.keys import Keys
from shared.presence import Heartbeat

log = logging.getLogger("tokenrelay.gateway")

FLUSH_INTERVAL_S = 1.0


@dataclass(eq=False)
class Reader:
    """One client following one stream through this gateway."""

    id: str
    stream_id: str
    offset: str
    since: float = field(default_factory=time.time)


class ReaderRegistry:
    def __init__(self, redis: Redis, keys: Keys, gateway_id: str, ttl_s: int) -> None:
        self._redis = redis
        self._keys = keys
        self.gateway_id = gateway_id
        self._ttl_s = ttl_s
        self._ids = itertools.count(1)
        self._readers: set[Reader] = set()
        self._dirty: set[Reader] = set()
        self._gone: list[Reader] = []
        self._task: asyncio.Task[None] | None = None
        self.heartbeat = Heartbeat(
            redis, keys.gateways, gateway_id, lambda: {"readers": len(self._readers)}
        )

    @property
    def count(self) -> int:
        return len(self._readers)

    def add(self, stream_id: str, offset: str) -> Reader:
        reader = Reader(f"{self.gateway_id}#{next(self._ids)}", stream_id, offset)
        self._readers.add(reader)
        self._dirty.add(reader)
        return reader

    def moved(self, reader: Reader, offset: str) -> None:
        reader.offset = offset
        self._dirty.add(reader)

    def remove(self, reader: Reader) -> None:
        self._readers.discard(reader)
        self._dirty.discard(reader)
        self._gone.append(reader)

    async def start(self) -> None:
        await self.heartbeat.start()
        self._task = asyncio.create_task(self._run(), name="reader registry")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        self._gone.extend(self._readers)
        self._readers.clear()
        self._dirty.clear()
        with suppress(RedisError):
            await self.flush()
        await self.heartbeat.stop()

    async def flush(self) -> None:
        dirty, gone = list(self._dirty), self._gone
        self._dirty, self._gone = set(), []
        if not dirty and not gone:
            return
        try:
            await self._write(dirty, gone)
        except RedisError:
            self._dirty.update(reader for reader in dirty if reader in self._readers)
            self._gone[:0] = gone
            raise

    async def _write(self, dirty: list[Reader], gone: list[Reader]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for reader in dirty:
                key = self._keys.readers(reader.stream_id)
                entry = {"gateway": self.gateway_id, "offset": reader.offset, "since": reader.since}
                pipe.hset(key, reader.id, json.dumps(entry))
                pipe.expire(key, self._ttl_s)
            for reader in gone:
                pipe.hdel(self._keys.readers(reader.stream_id), reader.id)
            await pipe.execute()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            try:
                await self.flush()
            except RedisError as exc:
                log.warning("could not record readers: %s", exc)
