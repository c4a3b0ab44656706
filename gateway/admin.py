"""The admin API (``/admin/api/``): every stream, reader and process, and actions on one
stream. Guarded by ``TOKENRELAY_ADMIN_TOKEN``; documented in docs/ADMIN.md."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response

from gateway import formats
from gateway.api import events_response
from gateway.auth import credential_check
from gateway.context import Gateway, gateway_of
from gateway.ids import checked_id
from gateway.inspection import Inspector
from gateway.models import API_ERRORS
from gateway.streams import cancel
from shared import offsets
from shared.errors import StreamNotFound
from shared.status import Status, StreamStatus

log = logging.getLogger("tokenrelay.gateway")


@credential_check
def admin_gateway(request: Request) -> Gateway:
    gw = gateway_of(request)
    gw.auth.admin(request)
    return gw


Admin = Annotated[Gateway, Depends(admin_gateway)]

router = APIRouter(prefix="/admin/api", tags=["admin"], responses=API_ERRORS)


@router.get("/streams")
async def list_streams(
    gw: Admin,
    status: Status | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,16}$")] = None,
) -> dict[str, Any]:
    """Streams newest first; pass ``next_cursor`` back as ``cursor`` for the next page."""
    streams, next_cursor = await Inspector(gw.store, gw.queue).page(status, limit, cursor)
    return {"streams": streams, "next_cursor": next_cursor}


@router.get("/streams/{stream_id}")
async def show_stream(stream_id: str, gw: Admin) -> dict[str, Any]:
    """One stream: status, readers with their lag, worker, bytes, time to first token."""
    detail = await Inspector(gw.store, gw.queue).detail(checked_id(stream_id))
    if detail is None:
        raise StreamNotFound(stream_id)
    return detail


@router.get("/streams/{stream_id}/events")
async def stream_events(
    stream_id: str,
    gw: Admin,
    after: Annotated[str | None, Query(max_length=64)] = None,
    count: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Stored events after an offset (from the start by default)."""
    checked_id(stream_id)
    if not await gw.store.meta(stream_id):
        raise StreamNotFound(stream_id)
    start = offsets.validate(after or offsets.START)
    if start == offsets.NOW:
        return {"events": []}
    return {"events": await Inspector(gw.store, gw.queue).events(stream_id, start, count)}


@router.get("/streams/{stream_id}/tail")
async def tail_stream(
    stream_id: str,
    gw: Admin,
    after: Annotated[str | None, Query(max_length=64)] = None,
    last_event_id: Annotated[str | None, Header(max_length=64)] = None,
) -> Response:
    """Follow the stream live, as SSE (like ``/v1/streams/{id}/events``)."""
    return await events_response(
        gw, checked_id(stream_id), last_event_id or after, formats.Format.SSE
    )


@router.post("/streams/{stream_id}/cancel", status_code=202)
async def cancel_stream(stream_id: str, gw: Admin) -> StreamStatus:
    return await cancel(gw, checked_id(stream_id))


@router.delete("/streams/{stream_id}")
async def purge_stream(stream_id: str, gw: Admin) -> dict[str, Any]:
    """Delete every key of the stream."""
    purged = await Inspector(gw.store, gw.queue).purge(checked_id(stream_id))
    if purged == 0:
        raise StreamNotFound(stream_id)
    log.info("stream=%s purged keys=%d", stream_id, purged)
    return {"id": stream_id, "purged_keys": purged}


@router.get("/system")
async def system(gw: Admin) -> dict[str, Any]:
    """Queue depth, jobs in progress, live workers and gateways, Redis memory and version."""
    return await Inspector(gw.store, gw.queue).system()
