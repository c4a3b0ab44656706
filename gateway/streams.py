"""What every API of the gateway does with streams: start a generation, open a read.

The native API (``gateway/api.py``) and each compatible API (``gateway/chat_completions/``)
are translations over these: a request in becomes a generation, a stream's events become
that API's frames.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.auth import Principal
from gateway.batch import Batch
from gateway.context import Gateway
from gateway.durable.views import not_a_generation
from gateway.ids import new_stream_id
from gateway.reader import ReadPolicy, follow
from gateway.streaming import EventStreamResponse
from shared import metrics, offsets
from shared.errors import InvalidOffset, RateLimited, StreamErrorCode, StreamNotFound
from shared.events import Event, EventType
from shared.status import Status, StreamStatus
from shared.upstream_api import CHAT_COMPLETIONS

log = logging.getLogger("tokenrelay.gateway")


class GenerationBody(Protocol):
    """What a request of any API gives a generation (``CreateStream`` is one)."""

    @property
    def model(self) -> str: ...
    @property
    def metadata(self) -> dict[str, str] | None: ...
    @property
    def cancel_on_disconnect_s(self) -> float | None: ...
    def upstream_request(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Started:
    """A generation, new or (for a retried ``Idempotency-Key``) the earlier one."""

    stream_id: str
    status: Status
    created_at: float
    read_token: str


async def start_generation(
    gw: Gateway,
    principal: Principal,
    body: GenerationBody,
    idempotency_key: str | None,
    *,
    api: dict[str, Any] | None = None,
    endpoint: str = CHAT_COMPLETIONS,
    within: str | None = None,
) -> Started:
    """Store a new stream and queue its job, within the caller's quotas. ``api``: what the
    compatible API that created it needs to answer its readers (kept in the stream's meta);
    ``endpoint``: the upstream API the worker calls (``shared.upstream_api``); ``within``:
    the durable stream its events also go into."""
    stream_id = new_stream_id(within)
    if idempotency_key is not None:
        earlier = await gw.store.remember_idempotent(principal.name, idempotency_key, stream_id)
        if earlier is not None:
            status = await gw.store.status(earlier)
            return Started(
                earlier,
                status.status if status else Status.QUEUED,
                status.created_at if status else time.time(),
                gw.auth.tokens.issue(earlier),
            )
    try:
        await gw.quotas.admit(principal, stream_id)
    except RateLimited:
        if idempotency_key is not None:  # a retry after the refusal must not find this id
            await gw.store.forget_idempotent(principal.name, idempotency_key, stream_id)
        raise
    created_at = await gw.store.create(
        stream_id,
        model=body.model,
        request=body.upstream_request(),
        metadata=body.metadata or {},
        cancel_on_disconnect_s=body.cancel_on_disconnect_s,
        api=api,
        endpoint=endpoint,
    )
    try:
        await gw.queue.enqueue_generation(stream_id)
    except Exception:
        failed = Event.error(StreamErrorCode.INTERNAL, "could not enqueue the job", retryable=True)
        await gw.store.finish(stream_id, failed, mode="queued")
        raise
    metrics.streams_created.inc()
    log.info("stream=%s step=created model=%s by=%s", stream_id, body.model, principal.name)
    return Started(stream_id, Status.QUEUED, created_at, gw.auth.tokens.issue(stream_id))


def meta_json(meta: dict[str, str], name: str) -> Any:
    """A JSON field of a stream's meta (``completion``, ``api``), None if absent."""
    raw = meta.get(name)
    return json.loads(raw) if raw else None


@dataclass(frozen=True, slots=True)
class Reading:
    """A read opened on a stream: its meta when it began, its batches (``None``: time for a
    keep-alive), and what to call when the response ends."""

    meta: dict[str, str]
    batches: AsyncGenerator[Batch | None]
    release: Callable[[], None] | None

    async def first_batch(self) -> Batch | None:
        """Wait for the first events (keep-alives skipped), for an answer that depends on
        them; None if the read ended first (the gateway is shutting down), and then the read
        is closed. A first batch that starts with the terminal ``error`` also closes it:
        the caller answers with that failure."""
        try:
            async for batch in self.batches:
                if batch is not None:
                    if batch.events[0].type is EventType.ERROR:
                        await self.close()
                    return batch
        except BaseException:
            await self.close()
            raise
        await self.close()
        return None

    async def close(self) -> None:
        """End the read before its stream's end (the caller answers otherwise)."""
        await self.batches.aclose()
        if self.release is not None:
            self.release()


async def open_read(
    gw: Gateway, stream_id: str, after: str | None, *, address: str | None = None
) -> Reading | None:
    """The events of ``stream_id`` after ``after`` (from the start if None), then live;
    None if the stream ended at or before that offset (a 204). ``address``: the client's,
    counted against the reader caps (the admin tail is not)."""
    start = offsets.validate(after or offsets.START)
    meta, length = await gw.store.meta_and_length(stream_id)
    if meta is None:
        raise StreamNotFound(stream_id)
    not_a_generation(stream_id, meta)
    status = Status(meta["status"])
    last_offset = meta.get("last_offset") or None
    if start == offsets.NOW:
        start = last_offset or offsets.START
        if status.is_final:
            return None
    if last_offset is not None and not offsets.is_after(last_offset, start):
        if status.is_final:
            return None  # resuming after the terminal event: stop
        if start != last_offset:
            raise InvalidOffset(f"offset {start} is beyond the end of this stream")
    elif last_offset is None and start != offsets.START:
        raise InvalidOffset(f"offset {start} is beyond the end of this stream")
    await gw.store.check_resumable(stream_id, start, int(meta.get("event_count", "0")), length)
    policy = ReadPolicy(
        batch=gw.settings.read_batch,
        keep_presence="cancel_on_disconnect_ms" in meta,
    )
    # counted against the caps of a client from here to its end
    release = gw.reader_caps.admit(stream_id, address) if address is not None else None
    batches = follow(gw.store, gw.hub, gw.registry, stream_id, start, policy)
    return Reading(meta, batches, release)


async def cancel(gw: Gateway, stream_id: str) -> StreamStatus:
    """Ask for the stream to stop; ends a queued one at once. Idempotent."""
    before = await gw.store.request_cancel(stream_id)
    if before == "missing":
        raise StreamNotFound(stream_id)
    if before == Status.QUEUED:
        # No worker has it yet: end it here; a worker that claims it later finds it ended.
        await gw.store.finish(stream_id, Event.done("cancelled"), mode="queued")
    log.info("stream=%s cancel requested (was %s)", stream_id, before)
    status = await gw.store.status(stream_id)
    if status is None:
        raise StreamNotFound(stream_id)
    return status


SSE_MEDIA_TYPE = "text/event-stream; charset=utf-8"


def event_stream(
    gw: Gateway,
    reading: Reading,
    encode: Callable[[Batch], Awaitable[bytes]],
    *,
    first: Batch | None,
    label: str,
    headers: dict[str, str],
    opening: bytes = b"",
) -> EventStreamResponse:
    """A compatible API's SSE answer: ``opening`` (what its protocol starts with), ``first``
    (if a create already took it) and the rest of ``reading``'s batches, each as ``encode``
    frames it, an SSE comment for each keep-alive; delivered events counted under ``label``."""

    async def frames() -> AsyncIterator[bytes]:
        delivered = metrics.events_delivered.labels(label)
        if opening:
            yield opening
        if first is not None:
            delivered.inc(len(first))
            yield await encode(first)
        async with aclosing(reading.batches) as batches:
            async for batch in batches:
                if batch is None:
                    yield b": ping\n\n"
                else:
                    delivered.inc(len(batch))
                    yield await encode(batch)

    return EventStreamResponse(
        frames(),
        SSE_MEDIA_TYPE,
        headers=headers,
        stuck_sends=gw.stuck_sends,
        on_close=reading.release,
    )
