"""The job queue between gateway and workers: arq today, behind this one seam.

The gateway only enqueues (``JobQueue``); ``producer.arq_worker`` is the other half.
"""

from __future__ import annotations

from arq.connections import ArqRedis, RedisSettings, create_pool

GENERATE_JOB = "generate"
"""The arq function name of a generation job; its one argument is the stream id."""


def redis_settings(url: str) -> RedisSettings:
    return RedisSettings.from_dsn(url)


class JobQueue:
    """Enqueues generation jobs; one job per stream, named by the stream id."""

    def __init__(self, pool: ArqRedis, queue_name: str) -> None:
        self._pool = pool
        self.queue_name = queue_name

    @classmethod
    async def connect(cls, url: str, queue_name: str) -> JobQueue:
        return cls(await create_pool(redis_settings(url)), queue_name)

    async def enqueue_generation(self, stream_id: str) -> None:
        # The job id is the stream id, so arq itself refuses a second job for one stream.
        await self._pool.enqueue_job(GENERATE_JOB, stream_id, _job_id=stream_id,
                                     _queue_name=self.queue_name)

    async def depth(self) -> int:
        depth: int = await self._pool.zcard(self.queue_name)
        return depth

    async def close(self) -> None:
        await self._pool.aclose()
