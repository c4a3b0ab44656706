"""The public HTTP API: create, read, cancel and inspect generations."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response

from gateway import formats
from gateway.auth import Principal, credential_check
from gateway.context import Gateway, gateway_of
from gateway.durable.access import agent_run
from gateway.durable.views import not_a_generation
from gateway.ids import checked_id
from gateway.models import API_ERRORS, Created, CreateStream
from gateway.streaming import EventStreamResponse
from gateway.streams import cancel, open_read, start_generation
from shared.errors import ShuttingDown, StreamNotFound
from shared.events import PRODUCER_LOST
from shared.status import Status, StreamStatus

log = logging.getLogger("tokenrelay.gateway")

router = APIRouter(prefix="/v1", responses=API_ERRORS)


@credential_check
def api_client(request: Request) -> Principal:
    """The API key's holder (in demo mode, also a caller without one). A dependency, for
    every route that creates: FastAPI runs it before it validates the body, so a request
    without credentials is 401 whatever its body."""
    return gateway_of(request).auth.api_client(request)


@router.post("/streams", status_code=201, response_model=Created)
async def create_stream(
    body: CreateStream,
    request: Request,
    response: Response,
    principal: Annotated[Principal, Depends(api_client)],
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> Created:
    """Start a generation. With ``Idempotency-Key``, a retry returns the same stream. With
    ``durable_stream``, its events also go into that durable stream (an agent run)."""
    gw = gateway_of(request)
    within = None
    if body.durable_stream is not None:
        within = await agent_run(gw, principal, body.durable_stream)
    started = await start_generation(gw, principal, body, idempotency_key, within=within)
    response.headers["Location"] = f"/v1/streams/{started.stream_id}"
    return Created(
        id=started.stream_id,
        status=started.status,
        created_at=started.created_at,
        read_token=started.read_token,
        events_url=f"/v1/streams/{started.stream_id}/events?token={started.read_token}",
    )


@router.get("/streams/{stream_id}", response_model=StreamStatus)
async def get_stream(stream_id: str, request: Request) -> StreamStatus:
    """The stream's status."""
    gw = gateway_of(request)
    checked_id(stream_id)
    gw.auth.reader(request, stream_id)
    meta = await gw.store.meta(stream_id)
    if meta is None:
        raise StreamNotFound(stream_id)
    not_a_generation(stream_id, meta)
    status = StreamStatus.from_meta(stream_id, meta)
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
    reading = await open_read(gw, stream_id, after, address=address)
    if reading is None:
        return Response(status_code=204)
    log.info("stream=%s step=read after=%s format=%s", stream_id, after, fmt.value)
    return EventStreamResponse(
        formats.frames(fmt, reading.batches, gw.settings.sse_retry_ms),
        fmt.media_type,
        stuck_sends=gw.stuck_sends,
        on_close=reading.release,
    )


@router.post("/streams/{stream_id}/cancel", status_code=202, response_model=StreamStatus)
async def cancel_stream(stream_id: str, request: Request) -> StreamStatus:
    """Stop the generation; the stream ends with ``done``/``cancelled``. Idempotent."""
    gw = gateway_of(request)
    checked_id(stream_id)
    gw.auth.reader(request, stream_id)
    meta = await gw.store.meta(stream_id)
    if meta is not None:
        not_a_generation(stream_id, meta)
    return await cancel(gw, stream_id)
