"""The job queue between gateway and workers: arq today, behind this one seam.

The gateway only enqueues (``JobQueue``); ``producer.arq_worker`` is the other half.
"""

from __future__ import annotations

from arq.connections import ArqRedis, RedisSettings
from arq.constants import in_progress_key_prefix

from shared.redis import SENTINEL_SCHEME, Servers, bounded_pool, refuse_cluster_for_queue

GENERATE_JOB = "generate"
EXACT_DEPTH_UP_TO = 10_000
"""The arq function name of a generation job; its one argument is the stream id."""


def redis_settings(url: str) -> RedisSettings:
    """arq's settings for the queue's Redis (one server, or a master named by Sentinel)."""
    if url.startswith(f"{SENTINEL_SCHEME}:"):
        servers = Servers.parse(url, default_port=26379)
        service, *db = servers.path
        return RedisSettings(
            host=servers.hosts,
            password=servers.password,
            sentinel=True,
            sentinel_master=service,
            database=int(db[0]) if db else 0,
        )
    refuse_cluster_for_queue(url)
    return RedisSettings.from_dsn(url)


class JobQueue:
    """Enqueues generation jobs; one job per stream, named by the stream id."""

    def __init__(self, pool: ArqRedis, queue_name: str) -> None:
        self._pool = pool
        self.queue_name = queue_name

    @classmethod
    def connect(cls, url: str, queue_name: str, *, client_name: str) -> JobQueue:
        """A queue on a small, bounded pool (enqueues are short; callers wait their turn)."""
        pool = bounded_pool(url, max_connections=2, client_name=client_name)
        return cls(ArqRedis(pool, default_queue_name=queue_name), queue_name)

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
