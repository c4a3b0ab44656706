"""Reading durable streams: ``HEAD`` tells a stream's tail; ``GET`` reads from an offset,
catch-up by default, ``live=long-poll`` or ``live=sse`` (``gateway/durable/live.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

from fastapi import APIRouter, Request, Response

from gateway.context import Gateway, gateway_of
from gateway.durable import live, offsets, protocol
from gateway.durable.access import PREFIX, reader, store_of, stream_path
from gateway.durable.protocol import CLOSED, CURSOR, NEXT_OFFSET, UP_TO_DATE
from gateway.durable.store import Snapshot, stream_id_of
from gateway.models import API_ERRORS
from gateway.streaming import EventStreamResponse
from shared import metrics
from shared.errors import InvalidInput, ShuttingDown, StreamNotFound

# their answers are the stream's own type, not JSON (so says the schema too)
router = APIRouter(
    prefix=PREFIX,
    tags=["durable streams"],
    responses=API_ERRORS,
    default_response_class=Response,
)


@router.head("/{path:path}")
async def head(path: str, request: Request) -> Response:
    """The stream's type, tail, closure and expiry, without a body."""
    reader(request, path)
    snapshot = await store_of(request).look(stream_path(path), None, touch=False)
    headers = _metadata(snapshot)
    headers[NEXT_OFFSET] = offsets.from_entry_id(snapshot.tail)
    headers["Cache-Control"] = "no-store"
    return Response(status_code=200, headers=headers)


def _metadata(snapshot: Snapshot) -> dict[str, str]:
    headers = {"Content-Type": snapshot.config.content_type}
    if snapshot.closed:
        headers[CLOSED] = "true"
    if snapshot.config.ttl_s is not None:
        headers[protocol.TTL] = str(snapshot.config.ttl_s)
    if snapshot.config.expires_at is not None:
        headers[protocol.EXPIRES_AT] = snapshot.config.expires_at
    return headers


@router.get("/{path:path}")
async def read(path: str, request: Request) -> Response:
    """Read from ``offset`` (``-1``: the start, ``now``: the tail): catch-up by default,
    ``live=long-poll`` waits for data, ``live=sse`` streams it."""
    reader(request, path)
    path = stream_path(path)
    gw = gateway_of(request)
    query = request.query_params
    if len(query.getlist("offset")) > 1 or len(query.getlist("live")) > 1:
        raise InvalidInput("give offset and live at most once")
    offset = query.get("offset")
    mode = query.get("live")
    if mode not in (None, "long-poll", "sse"):
        raise InvalidInput("live must be 'long-poll' or 'sse'")
    if mode is not None and offset is None:
        raise InvalidInput(f"live={mode} needs an offset")
    if offset is None or offset == offsets.BEGINNING:
        after = "0-0"
    elif offset == offsets.NOW:
        after = None
    else:
        after = offsets.to_entry_id(offset)
    if mode is not None and gw.hub.draining:
        raise ShuttingDown()
    store = gw.durable

    async def read_after(entry_id: str) -> Snapshot | None:
        snapshot = await store.read(path, entry_id, touch=True)
        return None if snapshot is None or snapshot.deleted else snapshot

    first = await store.look(path, after, touch=True)
    metrics.ds_reads.labels(mode or "catch-up").inc()
    if after is None:  # now: from the tail
        after = first.tail
        first = replace(first, messages=[])
        if mode is None:
            return _catch_up(request, path, first, after, now=True)
    if mode == "sse":
        return await _sse(gw, request, path, first.config.content_type, after, read_after)
    if mode == "long-poll" and not first.messages and not first.closed:
        release = gw.reader_caps.admit(stream_id_of(path), _address(request))
        try:
            with metrics.ds_live_readers.labels("long-poll").track_inprogress():
                async with gw.hub.watch(stream_id_of(path)) as topic:
                    waited = await live.wait_for_data(
                        topic, read_after, after, gw.settings.ds_long_poll_s
                    )
        finally:
            release()
        if waited is None:
            raise StreamNotFound(path)
        if not waited.messages and not waited.closed:
            metrics.ds_long_poll_timeouts.inc()
        first = waited
    if mode == "long-poll" and not first.messages:
        headers = _metadata(first)
        headers.update(
            {
                NEXT_OFFSET: offsets.from_entry_id(after),
                UP_TO_DATE: "true",
                CURSOR: live.cursor(query.get("cursor")),
                "Cache-Control": "no-store",
            }
        )
        return Response(status_code=204, headers=headers)
    answer = _catch_up(request, path, first, after, now=False)
    if mode == "long-poll":
        answer.headers[CURSOR] = live.cursor(query.get("cursor"))
    return answer


def _catch_up(
    request: Request, path: str, snapshot: Snapshot, after: str, *, now: bool
) -> Response:
    """The messages of one read as one body, with where to read next."""
    content_type = snapshot.config.content_type
    data = [message for _, message in snapshot.messages]
    body = protocol.json_array(data) if protocol.is_json(content_type) else b"".join(data)
    end = snapshot.messages[-1][0] if snapshot.messages else after
    up_to_date = end == snapshot.tail
    headers = _metadata(snapshot)
    if not (snapshot.closed and up_to_date):
        headers.pop(CLOSED, None)
    headers[NEXT_OFFSET] = offsets.from_entry_id(end)
    if up_to_date:
        headers[UP_TO_DATE] = "true"
    if now:
        headers["Cache-Control"] = "no-store"
        return Response(body, status_code=200, headers=headers)
    etag = _etag(path, after, end, snapshot.closed and up_to_date)
    headers["ETag"] = etag
    headers["Cache-Control"] = "private, max-age=60, stale-while-revalidate=300"
    if _matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers={"ETag": etag, NEXT_OFFSET: headers[NEXT_OFFSET]})
    return Response(body, status_code=200, headers=headers)


def _etag(path: str, start: str, end: str, closed: bool) -> str:
    tag = f"{stream_id_of(path)}:{offsets.from_entry_id(start)}:{offsets.from_entry_id(end)}"
    return f'"{tag}{":c" if closed else ""}"'


def _matches(if_none_match: str | None, etag: str) -> bool:
    if if_none_match is None:
        return False
    candidates = [value.strip().removeprefix("W/") for value in if_none_match.split(",")]
    return etag in candidates or "*" in candidates


async def _sse(
    gw: Gateway, request: Request, path: str, content_type: str, after: str, read_after: live.Read
) -> Response:
    """SSE, for every type: text and JSON as they are, other bytes in base64 (as the
    protocol's reference server does, and says so in ``Stream-SSE-Data-Encoding``)."""
    headers = {}
    if not protocol.sse_text(content_type):
        headers[protocol.SSE_DATA_ENCODING] = "base64"
    release = gw.reader_caps.admit(stream_id_of(path), _address(request))

    async def body() -> AsyncIterator[bytes]:
        with metrics.ds_live_readers.labels("sse").track_inprogress():
            async with gw.hub.watch(stream_id_of(path)) as topic:
                async for frame in live.sse_events(
                    topic,
                    read_after,
                    after,
                    content_type,
                    echoed_cursor=request.query_params.get("cursor"),
                    lasts_s=gw.settings.ds_sse_s,
                ):
                    yield frame

    # the same response as every stream read's: cut when the client leaves or stops reading
    # (SEND_TIMEOUT_S), content type without a charset (the protocol's suite checks it)
    return EventStreamResponse(
        body(), "text/event-stream", headers, stuck_sends=gw.stuck_sends, on_close=release
    )


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"
