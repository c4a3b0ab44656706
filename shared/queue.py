"""The job queue between gateway and workers: arq today, behind this one seam.

The gateway only enqueues (``JobQueue``); ``producer.arq_worker`` is the other half.
"""

from __future__ import annotations

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix

from shared.redis import bounded_pool, client_name

GENERATE_JOB = "generate"
EXACT_DEPTH_UP_TO = 10_000
"""The arq function name of a generation job; its one argument is the stream id."""


def queue_redis(url: str, queue_name: str, *, role: str, max_connections: int) -> ArqRedis:
    """arq's client of the queue's Redis (one server, or a master named by Sentinel; never a
    Cluster): a bounded pool of connections named for ``role`` in ``CLIENT LIST``, whose
    callers wait their turn (arq's own pool would grow with every job finishing at once)."""
    pool = bounded_pool(url, max_connections=max_connections, client_name=client_name(role))
    return ArqRedis(pool, default_queue_name=queue_name)


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
        # The job id is the stream id, so arq itself refuses a second job for one stream.
        await self._pool.enqueue_job(
            GENERATE_JOB, stream_id, _job_id=stream_id, _queue_name=self.queue_name
        )

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
