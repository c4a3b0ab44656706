"""One run of a generation job: from a claimed stream to its terminal event.

A run first claims the stream's lease. Only then does it call the upstream, and every
append is fenced by that lease, so a job that arq runs a second time (after a crash or a
SIGTERM) never appends anything: it finds the stream ended, or orphaned and declares it
lost. While generating, a watchdog renews the lease and polls for cancellation; whichever
of the upstream and the watchdog finishes first decides how the stream ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from contextlib import aclosing
from typing import Any, TypeVar

import redis.exceptions

from producer.appender import Appender
from producer.upstream import Completion, Upstream
from shared import metrics
from shared.errors import StreamErrorCode, UpstreamError
from shared.events import PRODUCER_LOST, Event, EventType
from shared.retrying import until_redis_answers
from shared.settings import Settings
from shared.store import Claim, Fenced, Signal, StreamFull, StreamStore

log = logging.getLogger("tokenrelay.producer")

T = TypeVar("T")


async def first_of(*aws: Awaitable[T]) -> T:
    """The result of whichever awaitable finishes first; the others are cancelled."""
    tasks = [asyncio.ensure_future(aw) for aw in aws]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        return next(iter(done)).result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Producer:
    """Runs generation jobs for one worker process (``owner`` names it in leases)."""

    def __init__(
        self, store: StreamStore, upstream: Upstream, settings: Settings, owner: str
    ) -> None:
        self.store = store
        self.upstream = upstream
        self.settings = settings
        self.owner = owner
        self.active = 0
        """Generations running in this process now."""

    async def generate(self, stream_id: str) -> None:
        self.active += 1
        try:
            await self._generate(stream_id)
        finally:
            self.active -= 1

    async def _generate(self, stream_id: str) -> None:
        claim = await self.store.claim(stream_id, self.owner, self.upstream.name)
        if claim.outcome == Claim.ORPHANED:
            # This is a second run after the first one's worker died mid-generation.
            await self.store.finish(stream_id, PRODUCER_LOST, mode="orphan")
            log.warning(
                "stream=%s step=finished declared lost: its job ran again after a crash",
                stream_id,
            )
            return
        if claim.outcome != Claim.CLAIMED:
            log.info("stream=%s not generated again: it is %s", stream_id, claim.outcome)
            return
        log.info(
            "stream=%s step=started owner=%s upstream=%s",
            stream_id,
            self.owner,
            self.upstream.name,
        )
        await Generation(self, stream_id, claim.request, claim.endpoint).run()


class Generation:
    """A claimed stream being generated."""

    def __init__(
        self, producer: Producer, stream_id: str, request: dict[str, Any], endpoint: str
    ) -> None:
        self.producer = producer
        self.store = producer.store
        self.settings = producer.settings
        self.stream_id = stream_id
        self.request = request
        self.endpoint = endpoint
        self.started = time.monotonic()

    def _first_token(self) -> None:
        elapsed = time.monotonic() - self.started
        metrics.time_to_first_token.observe(elapsed)
        log.info("stream=%s step=first_token ttft_s=%.3f", self.stream_id, elapsed)

    async def run(self) -> None:
        completion: str | None = None
        try:
            async with Appender(
                self.store,
                self.stream_id,
                self.producer.owner,
                max_chars=self.settings.coalesce_max_chars,
                redis_retry_s=self.settings.redis_retry_s,
                linger_s=self.settings.coalesce_linger_ms / 1000,
                on_first=self._first_token,
            ) as appender:
                try:
                    terminal = await first_of(self._pump(appender), self._watch())
                finally:
                    completion = appender.completion
        except Fenced:
            log.warning("stream=%s lease lost; stopping without writing", self.stream_id)
            return
        except StreamFull:
            terminal = Event.done("length")
        except asyncio.CancelledError:
            await self._finish(PRODUCER_LOST, completion)
            raise
        except Exception:
            log.exception("stream=%s failed inside the worker", self.stream_id)
            terminal = Event.error(StreamErrorCode.INTERNAL, "internal error", retryable=True)
        await self._finish(terminal, completion)

    async def _finish(self, terminal: Event, completion: str | None) -> None:
        """Write ``terminal`` (and the ``completion`` no append has stored yet)."""
        ending = await until_redis_answers(
            lambda: self.store.finish(
                self.stream_id,
                terminal,
                mode="owner",
                owner=self.producer.owner,
                completion=completion,
            ),
            self.settings.redis_retry_s,
            f"stream={self.stream_id} finish",
        )
        if ending.offset is None:
            log.warning("stream=%s could not end it (%s)", self.stream_id, ending.refused)
            return
        metrics.stream_duration.observe(time.monotonic() - self.started)
        if terminal.type is EventType.ERROR:
            metrics.upstream_errors.labels(terminal.payload()["code"]).inc()
        log.info(
            "stream=%s step=finished %s %s offset=%s",
            self.stream_id,
            terminal.type.value,
            terminal.data,
            ending.offset,
        )

    async def _pump(self, appender: Appender) -> Event:
        """Relay the upstream's parts; returns the terminal event it ended with."""
        try:
            upstream = self.producer.upstream.stream(self.request, self.stream_id, self.endpoint)
            async with aclosing(upstream) as it:
                async for item in it:
                    if isinstance(item, list):
                        appender.add(item)
                    elif isinstance(item, Completion):
                        appender.set_completion(item)
                    else:
                        return Event.done(
                            item.finish_reason, item.usage, completion=item.completion_changes
                        )
        except UpstreamError as exc:
            return Event.error(
                exc.code, exc.message, retryable=exc.retryable, upstream=exc.upstream
            )
        return Event.error(
            StreamErrorCode.UPSTREAM_ERROR,
            "the upstream stream ended without a finish_reason",
            retryable=True,
        )

    async def _watch(self) -> Event:
        """Renew the lease and wait for a cancel; closing the upstream is the caller's job."""
        while True:
            await asyncio.sleep(self.settings.cancel_poll_s)
            try:
                signal = await self.store.heartbeat(self.stream_id, self.producer.owner)
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                log.warning("stream=%s heartbeat failed: %s", self.stream_id, exc)
                continue
            if signal is Signal.FENCED:
                raise Fenced(self.stream_id)
            if signal in (Signal.CANCEL, Signal.ABANDONED):
                log.info(
                    "stream=%s %s",
                    self.stream_id,
                    "cancelled" if signal is Signal.CANCEL else "abandoned by its readers",
                )
                return Event.done("cancelled")
