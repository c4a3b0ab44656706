"""Following one stream for one client, from an offset to the terminal event.

The loop: take what is after our offset (pushed by the hub, or one XRANGE on the shared
pool, shared with the readers at the same offset); if there is nothing, wait for the hub to
say the stream grew. Because every read starts from the
reader's own offset, each reader goes at its own pace and sees every event once, in order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing, suppress
from dataclasses import dataclass

from redis.exceptions import RedisError

from gateway.batch import Batch
from gateway.hub import Hub, Topic
from gateway.registry import ReaderRegistry
from shared import metrics
from shared.store import StreamStore

log = logging.getLogger("tokenrelay.gateway")


@dataclass(frozen=True, slots=True)
class ReadPolicy:
    batch: int
    keep_presence: bool
    """Refresh the stream's "a reader is here" mark (for ``cancel_on_disconnect_s``)."""


async def follow(
    store: StreamStore,
    hub: Hub,
    registry: ReaderRegistry,
    stream_id: str,
    after: str,
    policy: ReadPolicy,
) -> AsyncGenerator[Batch | None]:
    """Yield batches of events after ``after``, ending with the terminal event.

    Yields ``None`` when the stream has been quiet for the keep-alive interval (the
    watchdog says when): time for the response to send a keep-alive.
    """
    async with hub.watch(stream_id) as topic:
        if policy.keep_presence:
            topic.keep_presence = True
            await store.touch_reader(stream_id)
        reader = registry.add(stream_id, after)
        metrics.active_readers.inc()
        try:
            async with aclosing(_follow(store, topic, stream_id, after, policy)) as batches:
                async for batch in batches:
                    if batch is not None and not batch.lag_observed:
                        batch.lag_observed = True  # its other readers are as late
                        metrics.delivery_lag.observe(_age_s(batch.last.offset))
                    yield batch
                    if batch is not None:
                        registry.moved(reader, batch.last.offset)
        except StreamGone:
            log.info("stream=%s vanished while being read; ending the response", stream_id)
        finally:
            metrics.active_readers.dec()
            registry.remove(reader)
            if policy.keep_presence:  # absence is counted from the moment we leave
                with suppress(RedisError):
                    await store.touch_reader(stream_id)


async def _follow(
    store: StreamStore, topic: Topic, stream_id: str, after: str, policy: ReadPolicy
) -> AsyncGenerator[Batch | None]:
    async def load(offset: str) -> Batch:
        return Batch(await store.read(stream_id, offset, policy.batch))

    while True:
        if topic.gone:
            raise StreamGone(stream_id)
        if topic.draining:
            log.info("stream=%s step=read ended: this gateway is shutting down", stream_id)
            return
        version, keepalives = topic.version, topic.keepalives
        batch = await topic.read(after, load, policy.batch)
        if batch:
            yield batch
            after = batch.last.offset
            if batch.last.is_terminal:
                return
            continue
        # Nothing new: wait for a push, or for the watchdog (gateway/watchdog.py) to find
        # something or to call for a keep-alive. A reader has no timer of its own.
        await topic.wait_past(version, keepalives)
        if topic.version == version:
            yield None  # only the keep-alive moved


def _age_s(offset: str) -> float:
    """How long ago the event at ``offset`` was appended (entry ids start with Redis's ms)."""
    return max(0.0, time.time() - int(offset.split("-", 1)[0]) / 1000)


class StreamGone(Exception):
    """The stream expired or was purged while being read."""
