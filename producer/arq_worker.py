"""The worker process: arq pulls generation jobs from the queue and runs them.

This is the only module of ``producer`` that knows arq (``shared.queue`` is the enqueuing
half), so replacing arq means replacing these two small modules.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from contextlib import suppress
from typing import Any

from arq.connections import log_redis_info
from arq.constants import in_progress_key_prefix
from arq.utils import timestamp_ms
from arq.worker import Worker, func
from prometheus_client import start_http_server
from redis.exceptions import RedisError

from producer.generation import Producer
from producer.upstream import open_upstream
from shared.batching import ScriptBatcher
from shared.looplag import measuring_loop_lag
from shared.presence import Heartbeat, process_id
from shared.queue import GENERATE_JOB, Wakeups, queue_redis
from shared.redis import shared_client
from shared.settings import Settings
from shared.store import StreamStore

log = logging.getLogger("tokenrelay.producer")

QUEUE_POOL_SIZE = 9
"""A worker's connections to the queue's Redis: the wake-up subscription, then arq's poll and
each job's start and end, all short; a job finishing while all are busy waits its turn."""


async def _log_redis_info(redis: Any) -> None:
    # as arq does at start-up; fakeredis (dev mode's last resort) has no INFO
    try:
        await log_redis_info(redis, log.info)
    except RedisError:
        log.info("redis: INFO not supported by this server")


TAKE_JOB = """
-- arq's start of a job, atomic: mark it in progress unless a worker already has, or it left
-- the queue, or it is not due yet. KEYS: in-progress key, queue. ARGV: job id, now (ms),
-- in-progress TTL (ms). Returns the job's score (arq's enqueue time), or nil.
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return false end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[3])
return score
"""


class _Worker(Worker):
    """arq's worker, woken by new jobs, minus its per-job polling cost for jobs that are
    already running.

    arq looks for new jobs every ``poll_delay``; this one also takes each job announced on
    the queue's wake channel (``shared.queue.Wakeups``) as soon as it hears of it, without
    the poll's look at the queue, so a generation starts without waiting for the next poll
    (and one round trip sooner than a poll would start it). The poll still runs every
    ``poll_delay``, busy or not: it cleans up, beats arq's health check, and finds jobs
    whose announcement was lost.

    Every poll arq looks at each job id still in the queue, running ones included, and
    starts each job with four round trips (WATCH, EXISTS, ZSCORE, MULTI): at 200 running
    generations and 50 ms, most of a core, and a burst of new jobs started one after the
    other. Here jobs this process runs are skipped without asking, and the others are taken
    in one pipeline of ``TAKE_JOB``, which does atomically what arq's transaction does.
    """

    def __init__(self, *args: Any, wakeups: Wakeups, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wakeups = wakeups
        self._take_job = self.pool.register_script(TAKE_JOB)
        # the calls of one poll share a pipeline; unlike a redis-py pipeline that holds a
        # script, it does not first ask Redis whether the script exists (a round trip more)
        self._scripts = ScriptBatcher(self.pool)

    async def main(self) -> None:
        """arq's ``main`` (its pool is given, there is no burst mode), taking announced jobs
        when woken and polling every ``poll_delay``."""
        log.info(
            "Starting worker for %d functions: %s", len(self.functions), ", ".join(self.functions)
        )
        await _log_redis_info(self.pool)
        self.ctx["redis"] = self.pool
        loop = asyncio.get_running_loop()
        next_poll = 0.0
        while True:
            wake = self.wakeups.event
            wake.clear()  # a wake-up from here on is seen by the wait below
            announced = self.wakeups.take_announced()
            if loop.time() >= next_poll:  # the poll also finds the announced jobs
                next_poll = loop.time() + self.poll_delay_s
                await self._poll_iteration()
            elif announced:
                await self.start_jobs(announced)
            with suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_poll - loop.time())):
                    await wake.wait()

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """Start what the queue holds that no worker runs: as many as this worker has room
        for, all taken in one round trip (``TAKE_JOB`` for each)."""
        room = self.max_jobs - self.job_counter
        if room <= 0 or not self.allow_pick_jobs:  # (not once told to stop)
            return
        names = (job_id.decode() for job_id in job_ids)
        taking = [job_id for job_id in names if job_id not in self.tasks][:room]
        now_ms = timestamp_ms()
        in_progress_ms = int(self.in_progress_timeout_s * 1000)
        scores = await asyncio.gather(
            *(
                self._scripts.call(
                    "take_job",
                    self._take_job,
                    [in_progress_key_prefix + job_id, self.queue_name],
                    [job_id, now_ms, in_progress_ms],
                )
                for job_id in taking
            )
        )
        for job_id, score in zip(taking, scores, strict=True):
            if score is None:
                continue  # another worker's, or finished meanwhile
            await self.sem.acquire()  # never waits: there was room
            self.job_counter += 1
            task = self.loop.create_task(self.run_job(job_id, int(float(score))))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = task


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
            queue = queue_redis(
                settings.effective_queue_redis_url,
                producer.store.keys.queue,
                role="worker-queue",
                max_connections=QUEUE_POOL_SIZE,
            )
            wakeups = Wakeups(queue, producer.store.keys.queue)
            worker = _Worker(
                functions=[func(generate, name=GENERATE_JOB, timeout=settings.job_timeout_s)],
                queue_name=producer.store.keys.queue,
                redis_pool=queue,
                wakeups=wakeups,
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
            await wakeups.start()
            try:
                async with measuring_loop_lag():
                    await worker.async_run()
            except asyncio.CancelledError:
                if not handle_signals:
                    raise
            finally:
                await wakeups.stop()
                await worker.close()
                await heartbeat.stop()
    finally:
        await redis.aclose()
