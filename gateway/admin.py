"""The admin API (``/admin/api/``): every stream, reader and process, and actions on one
stream. Guarded by ``TOKENRELAY_ADMIN_TOKEN``; documented in docs/ADMIN.md.

A durable stream (``/v1/ds``) is listed, shown, read, tailed and purged here like a
generation (its messages as ``message`` events: ``gateway.durable.views``); it cannot be
cancelled (409): its writer closes it."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response

from gateway import formats
from gateway.api import events_response
from gateway.auth import credential_check
from gateway.context import Gateway, gateway_of
from gateway.durable import inspection as durable_inspection
from gateway.durable.views import durable_path, entry_id_after, url_of
from gateway.ids import checked_id
from gateway.inspection import Inspector
from gateway.models import API_ERRORS
from gateway.streams import cancel
from shared import offsets
from shared.errors import Conflict, StreamNotFound
from shared.status import Status, StreamStatus

log = logging.getLogger("tokenrelay.gateway")


@credential_check
def admin_gateway(request: Request) -> Gateway:
    gw = gateway_of(request)
    gw.auth.admin(request)
    return gw


Admin = Annotated[Gateway, Depends(admin_gateway)]


def inspector(gw: Gateway) -> Inspector:
    return Inspector(gw.store, gw.queue, gw.durable)


async def durable_stream(gw: Gateway, stream_id: str) -> str | None:
    """The path of the stream if it is a durable one, None for a generation;
    ``StreamNotFound`` if there is no such stream."""
    meta = await gw.store.meta(stream_id)
    if meta is None:
        raise StreamNotFound(stream_id)
    return durable_path(stream_id, meta)


router = APIRouter(prefix="/admin/api", tags=["admin"], responses=API_ERRORS)


@router.get("/streams")
async def list_streams(
    gw: Admin,
    status: Status | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,16}$")] = None,
) -> dict[str, Any]:
    """Streams newest first; pass ``next_cursor`` back as ``cursor`` for the next page."""
    streams, next_cursor = await inspector(gw).page(status, limit, cursor)
    return {"streams": streams, "next_cursor": next_cursor}


@router.get("/streams/{stream_id}")
async def show_stream(stream_id: str, gw: Admin) -> dict[str, Any]:
    """One stream: status, readers with their lag, worker, bytes, time to first token."""
    detail = await inspector(gw).detail(checked_id(stream_id))
    if detail is None:
        raise StreamNotFound(stream_id)
    return detail


@router.get("/streams/{stream_id}/events", response_model=None)
async def stream_events(
    stream_id: str,
    gw: Admin,
    after: Annotated[str | None, Query(max_length=64)] = None,
    count: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any] | Response:
    """Stored events after an offset (from the start by default). A durable stream's
    messages are ``message`` events (``after`` may also be one of its Durable Streams
    offsets), at most 4 MiB of them a page."""
    checked_id(stream_id)
    path = await durable_stream(gw, stream_id)
    if path is not None:
        body = await durable_inspection.events(gw.durable, path, entry_id_after(after), count)
        return Response(body, media_type="application/json")
    start = offsets.validate(after or offsets.START)
    if start == offsets.NOW:
        return {"events": []}
    return {"events": await inspector(gw).events(stream_id, start, count)}


@router.get("/streams/{stream_id}/tail")
async def tail_stream(
    stream_id: str,
    gw: Admin,
    after: Annotated[str | None, Query(max_length=64)] = None,
    last_event_id: Annotated[str | None, Header(max_length=64)] = None,
) -> Response:
    """Follow the stream live, as SSE (like ``/v1/streams/{id}/events``); a durable
    stream's messages as ``message`` events, then ``closed`` once it is closed."""
    checked_id(stream_id)
    path = await durable_stream(gw, stream_id)
    if path is not None:
        start = entry_id_after(last_event_id or after)
        return await durable_inspection.tail(gw, stream_id, path, start)
    return await events_response(gw, stream_id, last_event_id or after, formats.Format.SSE)


@router.post("/streams/{stream_id}/cancel", status_code=202, responses={409: {}})
async def cancel_stream(stream_id: str, gw: Admin) -> StreamStatus:
    """Stop the generation (409 for a durable stream: its writer closes it)."""
    checked_id(stream_id)
    path = await durable_stream(gw, stream_id)
    if path is not None:
        raise Conflict(
            "a durable stream is not cancelled: its writer closes it "
            f"(POST {url_of(path)} with 'Stream-Closed: true'), or purge it"
        )
    return await cancel(gw, stream_id)


@router.delete("/streams/{stream_id}")
async def purge_stream(stream_id: str, gw: Admin) -> dict[str, Any]:
    """Delete every key of the stream."""
    purged = await inspector(gw).purge(checked_id(stream_id))
    if purged == 0:
        raise StreamNotFound(stream_id)
    log.info("stream=%s purged keys=%d", stream_id, purged)
    return {"id": stream_id, "purged_keys": purged}


@router.get("/system")
async def system(gw: Admin) -> dict[str, Any]:
    """Queue depth, jobs in progress, live workers and gateways, Redis memory and version."""
    return await inspector(gw).system()
