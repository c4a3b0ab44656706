"""The worker process: arq pulls generation jobs from the queue and runs them.

This is the only module of ``producer`` that knows arq (``shared.queue`` is the enqueuing
half), so replacing arq means replacing these two small modules.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

import arq.worker
from arq.connections import log_redis_info
from arq.constants import in_progress_key_prefix
from arq.worker import Worker, func
from prometheus_client import start_http_server
from redis.exceptions import RedisError

from producer.generation import Producer
from producer.upstream import open_upstream
from shared.looplag import measuring_loop_lag
from shared.presence import Heartbeat, process_id
from shared.queue import GENERATE_JOB, queue_redis
from shared.redis import shared_client
from shared.settings import Settings
from shared.store import StreamStore

log = logging.getLogger("tokenrelay.producer")

QUEUE_POOL_SIZE = 8
"""A worker's connections to the queue's Redis: arq's poll and each job's start and end,
all short; a job finishing while all are busy waits its turn."""


async def _tolerant_log_redis_info(redis: Any, log_func: Any) -> None:
    # arq logs the server's INFO at start-up; fakeredis (dev mode's last resort) has none.
    try:
        await log_redis_info(redis, log_func)
    except RedisError:
        log_func("redis: INFO not supported by this server")


setattr(arq.worker, "log_redis_info", _tolerant_log_redis_info)  # noqa: B010


class _Worker(Worker):
    """arq's worker, minus its per-job polling cost for jobs that are already running.

    Every ``poll_delay`` arq looks at each job id still in the queue, running ones included,
    with three round trips each (WATCH, EXISTS, ZSCORE): at 200 running generations and
    50 ms, most of a core. Here one pipeline asks which are in progress, and only the
    others go through arq's (still race-safe) start.
    """

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        waiting = [job_id for job_id in job_ids if job_id.decode() not in self.tasks]
        if not waiting:
            return
        async with self.pool.pipeline(transaction=False) as pipe:
            for job_id in waiting:
                pipe.exists(in_progress_key_prefix + job_id.decode())
            in_progress = await pipe.execute()
        await super().start_jobs(
            [j for j, busy in zip(waiting, in_progress, strict=True) if not busy]
        )


async def generate(ctx: dict[str, Any], stream_id: str) -> None:
    """The arq job: generate one stream."""
    producer: Producer = ctx["producer"]
    await producer.generate(stream_id)


def worker_id() -> str:
    """Names this process in leases, heartbeats and logs."""
    return f"{process_id()}:{secrets.token_hex(3)}"


async def run_worker(settings: Settings, *, handle_signals: bool = True) -> None:
    """Run a worker until SIGINT/SIGTERM (or until cancelled, with ``handle_signals=False``)."""
    owner = worker_id()
    if settings.worker_metrics_port:
        start_http_server(settings.worker_metrics_port, addr=settings.worker_metrics_host)
        log.info(
            "worker metrics on http://%s:%d/metrics",
            settings.worker_metrics_host,
            settings.worker_metrics_port,
        )
    redis = shared_client(
        settings.redis_url, max_connections=settings.worker_pool_size, role="worker"
    )
    try:
        async with open_upstream(settings) as upstream:
            producer = Producer(StreamStore(redis, settings), upstream, settings, owner)
            await producer.store.load_scripts()
            worker = _Worker(
                functions=[func(generate, name=GENERATE_JOB, timeout=settings.job_timeout_s)],
                queue_name=producer.store.keys.queue,
                redis_pool=queue_redis(
                    settings.effective_queue_redis_url,
                    producer.store.keys.queue,
                    role="worker-queue",
                    max_connections=QUEUE_POOL_SIZE,
                ),
                max_jobs=settings.max_jobs,
                job_timeout=settings.job_timeout_s,
                keep_result=0,
                poll_delay=settings.worker_poll_s,
                handle_signals=handle_signals,
                job_completion_wait=settings.worker_drain_s,
                ctx={"producer": producer},
            )
            log.info(
                "worker %s ready: queue=%s upstream=%s", owner, worker.queue_name, upstream.name
            )
            heartbeat = Heartbeat(
                redis,
                producer.store.keys.workers,
                owner,
                lambda: {"jobs": producer.active, "upstream": upstream.name},
            )
            await heartbeat.start()
            try:
                async with measuring_loop_lag():
                    await worker.async_run()
            except asyncio.CancelledError:
                if not handle_signals:
                    raise
            finally:
                await worker.close()
                await heartbeat.stop()
    finally:
        await redis.aclose()
