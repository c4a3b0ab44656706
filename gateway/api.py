"""The public HTTP API: create, read, cancel and inspect generations."""

from __future__ import annotations

import logging
import time
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response

from gateway import formats
from gateway.context import Gateway
from gateway.ids import is_stream_id, new_stream_id
from gateway.models import API_ERRORS, Created, CreateStream
from gateway.reader import ReadPolicy, follow
from gateway.streaming import EventStreamResponse
from shared import metrics, offsets
from shared.errors import (
    InvalidOffset,
    RateLimited,
    ShuttingDown,
    StreamErrorCode,
    StreamNotFound,
)
from shared.events import PRODUCER_LOST, Event
from shared.status import Status, StreamStatus

log = logging.getLogger("tokenrelay.gateway")

router = APIRouter(prefix="/v1", responses=API_ERRORS)


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def checked_id(stream_id: str) -> str:
    if not is_stream_id(stream_id):
        raise StreamNotFound(stream_id)
    return stream_id


@router.post("/streams", status_code=201, response_model=Created)
async def create_stream(
    body: CreateStream,
    request: Request,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> Created:
    """Start a generation. With ``Idempotency-Key``, a retry returns the same stream."""
    gw = gateway_of(request)
    principal = gw.auth.api_client(request)
    stream_id = new_stream_id()
    if idempotency_key is not None:
        earlier = await gw.store.remember_idempotent(principal.name, idempotency_key, stream_id)
        if earlier is not None:
            status = await gw.store.status(earlier)
            return _created(
                gw,
                response,
                earlier,
                status.status if status else Status.QUEUED,
                status.created_at if status else time.time(),
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
    )
    try:
        await gw.queue.enqueue_generation(stream_id)
    except Exception:
        failed = Event.error(StreamErrorCode.INTERNAL, "could not enqueue the job", retryable=True)
        await gw.store.finish(stream_id, failed, mode="queued")
        raise
    metrics.streams_created.inc()
    log.info("stream=%s step=created model=%s by=%s", stream_id, body.model, principal.name)
    return _created(gw, response, stream_id, Status.QUEUED, created_at)


def _created(
    gw: Gateway, response: Response, stream_id: str, status: Status, created_at: float
) -> Created:
    token = gw.auth.tokens.issue(stream_id)
    response.headers["Location"] = f"/v1/streams/{stream_id}"
    return Created(
        id=stream_id,
        status=status,
        created_at=created_at,
        read_token=token,
        events_url=f"/v1/streams/{stream_id}/events?token={token}",
    )


@router.get("/streams/{stream_id}", response_model=StreamStatus)
async def get_stream(stream_id: str, request: Request) -> StreamStatus:
    """The stream's status."""
    gw = gateway_of(request)
    checked_id(stream_id)
    gw.auth.reader(request, stream_id)
    status = await gw.store.status(stream_id)
    if status is None:
        raise StreamNotFound(stream_id)
    if status.status is Status.RUNNING:
        # A dead worker is noticed by whoever looks first.
        if (await gw.store.finish(stream_id, PRODUCER_LOST, mode="orphan")).offset:
            status = await gw.store.status(stream_id) or status
    return status


EVENTS_PATH = "/v1/streams/{stream_id}/events"
EVENTS_QUERY_LIMITS = {"after": 64, "format": 16, "token": 512}
EVENTS_HEADER_LIMITS = {"last-event-id": 64, "accept": 1024}
"""Longest values accepted; longer ones are answered by FastAPI's validation (400/401/422)."""


@router.get(
    EVENTS_PATH.removeprefix("/v1"),
    responses={
        200: {"content": {"text/event-stream": {}, "application/x-ndjson": {}, "text/plain": {}}},
        204: {"description": "the stream already ended before this offset"},
    },
)
async def stream_events(
    stream_id: str,
    request: Request,
    after: Annotated[str | None, Query(max_length=EVENTS_QUERY_LIMITS["after"])] = None,
    format: Annotated[str | None, Query(max_length=EVENTS_QUERY_LIMITS["format"])] = None,
    token: Annotated[str | None, Query(max_length=EVENTS_QUERY_LIMITS["token"])] = None,
    last_event_id: Annotated[
        str | None, Header(max_length=EVENTS_HEADER_LIMITS["last-event-id"])
    ] = None,
    accept: Annotated[str | None, Header(max_length=EVENTS_HEADER_LIMITS["accept"])] = None,
) -> Response:
    """Read the stream's events from an offset (``Last-Event-ID`` wins over ``?after=``).

    Served by ``gateway/fastpath.py`` beneath the framework; declared here for the schema
    and for requests the fast path hands back (those failing the length limits)."""
    return await read_events(
        gateway_of(request), request, stream_id, last_event_id or after, format, accept
    )


async def read_events(
    gw: Gateway,
    request: Request,
    stream_id: str,
    after: str | None,
    format: str | None,
    accept: str | None,
) -> Response:
    checked_id(stream_id)
    gw.auth.reader(request, stream_id)
    if gw.hub.draining:
        raise ShuttingDown()
    fmt = formats.negotiate(format, accept)
    address = request.client.host if request.client else "unknown"
    return await events_response(gw, stream_id, after, fmt, address=address)


async def events_response(
    gw: Gateway,
    stream_id: str,
    after: str | None,
    fmt: formats.Format,
    *,
    address: str | None = None,
) -> Response:
    """The events of ``stream_id`` after ``after`` (from the start if None), live, in ``fmt``;
    204 if the stream ended at or before that offset."""
    start = offsets.validate(after or offsets.START)
    meta, length = await gw.store.meta_and_length(stream_id)
    if meta is None:
        raise StreamNotFound(stream_id)
    status = Status(meta["status"])
    last_offset = meta.get("last_offset") or None
    if start == offsets.NOW:
        start = last_offset or offsets.START
        if status.is_final:
            return Response(status_code=204)
    if last_offset is not None and not offsets.is_after(last_offset, start):
        if status.is_final:
            return Response(status_code=204)  # resuming after the terminal event: stop
        if start != last_offset:
            raise InvalidOffset(f"offset {start} is beyond the end of this stream")
    elif last_offset is None and start != offsets.START:
        raise InvalidOffset(f"offset {start} is beyond the end of this stream")
    await gw.store.check_resumable(stream_id, start, int(meta.get("event_count", "0")), length)
    log.info("stream=%s step=read after=%s format=%s", stream_id, start, fmt.value)
    policy = ReadPolicy(
        batch=gw.settings.read_batch,
        keep_presence="cancel_on_disconnect_ms" in meta,
    )
    # counted against the caps of a client (the admin tail is not) from here to its end
    release = gw.reader_caps.admit(stream_id, address) if address is not None else None
    batches = follow(gw.store, gw.hub, gw.registry, stream_id, start, policy)
    return EventStreamResponse(
        formats.frames(fmt, batches, gw.settings.sse_retry_ms),
        fmt.media_type,
        stuck_sends=gw.stuck_sends,
        on_close=release,
    )


@router.post("/streams/{stream_id}/cancel", status_code=202, response_model=StreamStatus)
async def cancel_stream(stream_id: str, request: Request) -> StreamStatus:
    """Stop the generation; the stream ends with ``done``/``cancelled``. Idempotent."""
    gw = gateway_of(request)
    checked_id(stream_id)
    gw.auth.reader(request, stream_id)
    return await cancel(gw, stream_id)


async def cancel(gw: Gateway, stream_id: str) -> StreamStatus:
    """Ask for the stream to stop; ends a queued one at once."""
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
