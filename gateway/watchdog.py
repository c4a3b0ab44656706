"""Once a second, per stream this gateway reads (not per reader): the checks that keep idle
readers honest, so that waiting readers need no timer of their own.

* A running stream whose worker died has no lease: end it ``producer_lost``, so no reader
  waits forever. (A stream that just grew has a live worker: no need to ask.)
* A stream that expired or was purged: mark its topic gone, its readers end.
* Readers asking for ``cancel_on_disconnect_s``: renew their presence mark.
* A stream quiet for ``ping_interval_s`` (no push, no keep-alive): its waiting readers
  send a keep-alive. (A reader that joined since may send its first one early.)
* A stream whose pushes this process has not seen yet (a notification lost while
  subscribing): compare its last offset, and wake its readers if they are behind.
"""

from __future__ import annotations

import asyncio
import logging
import time

from redis.exceptions import RedisError

from gateway.hub import Hub, Topic
from shared.background import Background
from shared.events import PRODUCER_LOST
from shared.store import READER_PRESENCE_REFRESH_S, StreamStore

log = logging.getLogger("tokenrelay.gateway")

INTERVAL_S = READER_PRESENCE_REFRESH_S


class Watchdog(Background):
    task_name = "stream watchdog"

    def __init__(self, hub: Hub, store: StreamStore, ping_interval_s: float) -> None:
        super().__init__()
        self._hub = hub
        self._store = store
        self._ping_interval_s = ping_interval_s

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(INTERVAL_S)
            topics = self._hub.topics()
            # due within half a tick: keep-alives come every interval (±0.5 s), not every
            # other tick when the ticks run a little early
            due = time.monotonic() + INTERVAL_S / 2 - self._ping_interval_s
            for _, topic in topics:
                if topic.woken_at <= due:
                    topic.keep_alive()
            results = await asyncio.gather(
                *(self.check(stream_id, topic) for stream_id, topic in topics),
                return_exceptions=True,
            )
            for (stream_id, _), result in zip(topics, results, strict=True):
                if isinstance(result, RedisError):
                    log.warning("stream=%s check failed: %s", stream_id, result)
                elif isinstance(result, Exception):
                    log.error("stream=%s check failed", stream_id, exc_info=result)

    async def check(self, stream_id: str, topic: Topic) -> None:
        if topic.keep_presence:
            await self._store.touch_reader(stream_id)
        if time.monotonic() - topic.pushed_at < INTERVAL_S:
            return
        ending = await self._store.finish(stream_id, PRODUCER_LOST, mode="orphan")
        if ending.refused == "missing":
            topic.gone = True
            topic.bump()
        elif ending.offset is None and topic.tail is None:
            last = await self._store.last_offset(stream_id)
            if last is not None:
                topic.tail = last
                topic.bump()
