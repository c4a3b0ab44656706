"""The job queue between gateway and workers: arq today, behind this one seam.

The gateway only enqueues (``JobQueue``); ``producer.arq_worker`` is the other half.

arq's workers look for new jobs every ``poll_delay``, so a new generation would wait for the
next look (half of it on average) before its first token. So each enqueue is also announced
on a pub/sub channel (``wake_channel``), with its job id, and a worker that hears it takes
that job at once (``Wakeups``), without first asking the queue what is in it; the polling
stays, for announcements lost to a reconnect.
"""

from __future__ import annotations

import asyncio
import logging

from arq.connections import ArqRedis
from arq.constants import expires_extra_ms, in_progress_key_prefix, job_key_prefix
from arq.jobs import serialize_job
from arq.utils import timestamp_ms
from redis.exceptions import RedisError

from shared.background import Background
from shared.redis import bounded_pool, client_name

log = logging.getLogger("tokenrelay.queue")

GENERATE_JOB = "generate"
EXACT_DEPTH_UP_TO = 10_000
"""The arq function name of a generation job; its one argument is the stream id."""


def queue_redis(url: str, queue_name: str, *, role: str, max_connections: int) -> ArqRedis:
    """arq's client of the queue's Redis (one server, or a master named by Sentinel; never a
    Cluster): a bounded pool of connections named for ``role`` in ``CLIENT LIST``, whose
    callers wait their turn (arq's own pool would grow with every job finishing at once)."""
    pool = bounded_pool(url, max_connections=max_connections, client_name=client_name(role))
    return ArqRedis(pool, default_queue_name=queue_name)


def wake_channel(queue_name: str) -> str:
    """The pub/sub channel on which new jobs of ``queue_name`` are announced."""
    return f"{queue_name}:wake"


class JobQueue:
    """Enqueues generation jobs; one job per stream, named by the stream id."""

    def __init__(self, pool: ArqRedis, queue_name: str) -> None:
        self._pool = pool
        self.queue_name = queue_name

    @classmethod
    def connect(cls, url: str, queue_name: str, *, role: str) -> JobQueue:
        """A queue on a small pool (enqueues are short)."""
        return cls(queue_redis(url, queue_name, role=role, max_connections=2), queue_name)

    async def enqueue_generation(self, stream_id: str) -> None:
        """Queue the job, as arq's ``enqueue_job`` writes it, and announce it: one round trip.

        The job id is the stream id. arq's own enqueue WATCHes the job's key to refuse a
        second job of one id (three round trips); a stream id is new and random, so ``NX``
        on the job's key is all the care that remains (a second job would find its stream
        claimed and do nothing)."""
        now_ms = timestamp_ms()
        job = serialize_job(GENERATE_JOB, (stream_id,), {}, None, now_ms)
        async with self._pool.pipeline(transaction=True) as pipe:
            pipe.set(job_key_prefix + stream_id, job, px=expires_extra_ms, nx=True)
            pipe.zadd(self.queue_name, {stream_id: now_ms})
            pipe.publish(wake_channel(self.queue_name), stream_id)
            await pipe.execute()

    async def depth(self) -> int:
        """Jobs waiting for a worker (arq keeps running jobs in its queue too)."""
        queued: list[bytes] = await self._pool.zrange(self.queue_name, 0, EXACT_DEPTH_UP_TO)
        if len(queued) > EXACT_DEPTH_UP_TO:
            approximate: int = await self._pool.zcard(self.queue_name)
            return approximate
        async with self._pool.pipeline(transaction=False) as pipe:
            for job_id in queued:
                pipe.exists(in_progress_key_prefix + job_id.decode())
            running: int = sum(await pipe.execute())
        return len(queued) - running

    async def close(self) -> None:
        await self._pool.aclose()
        await self._pool.connection_pool.disconnect()  # given a pool, the client leaves it open


class Wakeups(Background):
    """Collects the job ids announced on ``queue_name``'s channel and sets ``event`` for
    each. Holds one connection of ``pool`` (a subscription) while it runs; reconnects after
    a failure (what was announced meanwhile, the worker's next poll finds)."""

    task_name = "job wakeups"

    def __init__(self, pool: ArqRedis, queue_name: str) -> None:
        super().__init__()
        self._pool = pool
        self._channel = wake_channel(queue_name)
        self.event = asyncio.Event()
        self._announced: list[bytes] = []

    def take_announced(self) -> list[bytes]:
        """The job ids announced since the last call."""
        announced, self._announced = self._announced, []
        return announced

    async def _run(self) -> None:
        while True:
            try:
                async with self._pool.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._channel)
                    while True:
                        # waits within the pool's socket timeout, which would end listen()
                        message = await pubsub.get_message(timeout=1.0)
                        if message is not None:
                            if message["data"]:
                                self._announced.append(message["data"])
                            self.event.set()
            except RedisError as exc:
                log.warning("job wakeups: %s; polling alone until Redis answers", exc)
                await asyncio.sleep(1.0)
