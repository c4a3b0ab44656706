"""The admin index forgets expired streams.

A stream's keys expire by themselves (``RETENTION_S`` after it ends); its entry in the index
(a sorted set, for the admin listing) does not. Each gateway walks the index from the oldest
entry, a slice a second, and drops the entries whose stream is gone, so the index holds about
the streams that exist, not every stream ever created (up to ``MAX_INDEXED_STREAMS``).
"""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from shared.background import Background
from shared.store import StreamStore

log = logging.getLogger("tokenrelay.gateway")

INTERVAL_S = 1.0
SLICE = 500


class IndexSweep(Background):
    task_name = "index sweep"

    def __init__(self, store: StreamStore) -> None:
        super().__init__()
        self._store = store

    async def _run(self) -> None:
        after: int | None = None
        while True:
            try:
                after, removed = await self._store.prune_index(after, SLICE)
            except RedisError as exc:
                log.warning("index sweep failed: %s", exc)
                removed = 0
            # a slice that was all expired: the next one at once (an index behind, after an
            # outage or a burst of creations), else wait
            await asyncio.sleep(0 if removed == SLICE else INTERVAL_S)
