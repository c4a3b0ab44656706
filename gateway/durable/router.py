"""``/v1/ds/{path}``: the Durable Streams protocol over HTTP, a thin translation of its
requests into ``DurableStore`` calls and of their outcomes into the protocol's statuses and
headers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import replace

from fastapi import APIRouter, Request, Response

from gateway.auth import Principal
from gateway.context import Gateway, gateway_of
from gateway.durable import live, offsets, protocol
from gateway.durable.protocol import (
    CLOSED,
    CURSOR,
    NEXT_OFFSET,
    PRODUCER_EPOCH,
    PRODUCER_SEQ,
    UP_TO_DATE,
)
from gateway.durable.store import (
    Appended,
    Config,
    DurableStore,
    Fork,
    Producer,
    Snapshot,
    stream_id_of,
)
from gateway.models import API_ERRORS, READ_TOKEN_HEADER, STREAM_ID_HEADER
from gateway.streaming import EventStreamResponse
from shared.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    PayloadTooLarge,
    ShuttingDown,
    StreamGone,
    StreamNotFound,
    Unauthorized,
)

PREFIX = "/v1/ds"
MAX_PATH = 1024

EXPOSED_HEADERS = (
    NEXT_OFFSET,
    UP_TO_DATE,
    CLOSED,
    CURSOR,
    protocol.TTL,
    protocol.EXPIRES_AT,
    PRODUCER_EPOCH,
    PRODUCER_SEQ,
    protocol.PRODUCER_EXPECTED_SEQ,
    protocol.PRODUCER_RECEIVED_SEQ,
    "ETag",
    "Location",
    "Stream-SSE-Data-Encoding",
    STREAM_ID_HEADER,
    READ_TOKEN_HEADER,
)
"""What a browser's script may read of the answers (CORS)."""

REQUEST_HEADERS = (
    protocol.TTL,
    protocol.EXPIRES_AT,
    CLOSED,
    protocol.STREAM_SEQ,
    protocol.FORKED_FROM,
    protocol.FORK_OFFSET,
    protocol.FORK_SUB_OFFSET,
    protocol.PRODUCER_ID,
    PRODUCER_EPOCH,
    PRODUCER_SEQ,
    "If-None-Match",
)
"""What a browser's script may send (CORS)."""

router = APIRouter(prefix=PREFIX, tags=["durable streams"], responses=API_ERRORS)


def stream_path(path: str) -> str:
    """The stream's path, as the URL names it below ``/v1/ds/``."""
    if not path or len(path) > MAX_PATH or not path.isprintable():
        raise InvalidInput(f"a stream path is 1 to {MAX_PATH} printable characters")
    return path


def writer(request: Request) -> Principal:
    """Who may create, append, close and delete: an API key's holder (not a demo caller),
    or anyone where ``TOKENRELAY_DS_OPEN`` is on. Called first thing by each handler, which
    reads its body itself afterwards: credentials come before the body. (Not a FastAPI
    dependency: a plain ``def`` one runs in a worker thread, a third of an append's CPU.)"""
    gw = gateway_of(request)
    if gw.settings.ds_open:
        return Principal("open")
    principal = gw.auth.api_client(request)
    if principal.anonymous:
        raise Unauthorized("writing a durable stream takes an API key: 'Authorization: Bearer'")
    return principal


async def agent_run(gw: Gateway, principal: Principal, path: str) -> str:
    """The id of the durable stream at ``path`` (``/v1/ds/`` optional) that a generation
    started by ``principal`` is to write into: it must be open and hold JSON."""
    if principal.anonymous and not gw.settings.ds_open:
        raise Unauthorized("writing a durable stream takes an API key: 'Authorization: Bearer'")
    path = stream_path(path.removeprefix(PREFIX + "/").lstrip("/"))
    snapshot = await gw.durable.look(path, None, touch=False)
    if snapshot.closed:
        raise Conflict(f"the durable stream {path[:64]!r} is closed", {CLOSED: "true"})
    if not protocol.is_json(snapshot.config.content_type):
        raise Conflict(f"the durable stream {path[:64]!r} does not hold JSON")
    return stream_id_of(path)


def reader(request: Request, path: str) -> Principal:
    """Who may read: an API key's holder or the stream's read token, or anyone where
    ``TOKENRELAY_DS_OPEN`` is on."""
    gw = gateway_of(request)
    if gw.settings.ds_open:
        return Principal("open")
    return gw.auth.reader(request, stream_id_of(stream_path(path)))


def _store(request: Request) -> DurableStore:
    return gateway_of(request).durable


# -- create -------------------------------------------------------------------------------


@router.put("/{path:path}", status_code=201, responses={200: {}, 409: {}})
async def create(path: str, request: Request) -> Response:
    """Create a stream (or confirm one with the same configuration: 200), optionally with
    its first messages, closed, or forked from another stream."""
    writer(request)
    path = stream_path(path)
    headers = request.headers
    fork = _fork(headers)
    content_type = protocol.media_type(headers.get("content-type"))
    if content_type is None and fork is None:
        content_type = protocol.DEFAULT_CONTENT_TYPE
    ttl_s = protocol.ttl_seconds(headers.get(protocol.TTL))
    expires_at = protocol.expires_at(headers.get(protocol.EXPIRES_AT))
    if ttl_s is not None and expires_at is not None:
        raise InvalidInput("give Stream-TTL or Stream-Expires-At, not both")
    config = Config(content_type or "", ttl_s, expires_at, protocol.flag(headers.get(CLOSED)))
    body = await request.body()
    store = _store(request)
    if fork is not None and content_type is None:  # the fork's type is its source's
        source = await store.look(fork.source, None, touch=False)
        content_type = source.config.content_type
    messages = _messages(content_type or "", body, creating=True)
    created = await store.create(path, config, messages, api=protocol.api_json(path), fork=fork)
    answer = _write_headers(request, path, created.content_type, created.tail, created.closed)
    if created.created:
        answer["Location"] = str(request.url.replace(query=""))
        return Response(status_code=201, headers=answer)
    return Response(status_code=200, headers=answer)


def _fork(headers: Mapping[str, str]) -> Fork | None:
    forked_from = headers.get(protocol.FORKED_FROM)
    offset = headers.get(protocol.FORK_OFFSET)
    sub = headers.get(protocol.FORK_SUB_OFFSET)
    if forked_from is None:
        if offset is not None or sub is not None:
            raise InvalidInput("Stream-Fork-Offset and -Sub-Offset need Stream-Forked-From")
        return None
    sub_offset = 0 if sub is None else protocol.integer(protocol.FORK_SUB_OFFSET, sub)
    if sub_offset and offset is None:
        raise InvalidInput("Stream-Fork-Sub-Offset needs Stream-Fork-Offset")
    return Fork(
        stream_path(forked_from.removeprefix(PREFIX).lstrip("/")),
        None if offset is None else offsets.to_entry_id(offset),
        sub_offset,
    )


def _messages(content_type: str, body: bytes, *, creating: bool) -> list[bytes]:
    if not body:
        return []
    if protocol.is_json(content_type):
        return protocol.json_messages(body, allow_empty_array=creating)
    return [body]


def _write_headers(
    request: Request, path: str, content_type: str, tail: str, closed: bool
) -> dict[str, str]:
    """What every successful write answers: the stream's type and tail, whether it is
    closed, and its id and a read token (to hand to a browser)."""
    gw = gateway_of(request)
    stream_id = stream_id_of(path)
    headers = {
        "Content-Type": content_type,
        NEXT_OFFSET: offsets.from_entry_id(tail),
        STREAM_ID_HEADER: stream_id,
        READ_TOKEN_HEADER: gw.auth.tokens.issue(stream_id),
    }
    if closed:
        headers[CLOSED] = "true"
    return headers


# -- append and close ---------------------------------------------------------------------


@router.post("/{path:path}", status_code=204, responses={200: {}, 403: {}, 409: {}})
async def append(path: str, request: Request) -> Response:
    """Append the body (a JSON array is one message per element), close the stream
    (``Stream-Closed: true``), or both at once; idempotent with ``Producer-*`` headers."""
    writer(request)
    path = stream_path(path)
    headers = request.headers
    close = protocol.flag(headers.get(CLOSED))
    producer = _producer(headers)
    stream_seq = headers.get(protocol.STREAM_SEQ)
    body = await request.body()
    content_type = protocol.media_type(headers.get("content-type"))
    if not body and not close:
        raise InvalidInput("an append needs a body (or Stream-Closed: true to close)")
    messages: list[bytes] = []
    if body:
        if content_type is None:
            raise InvalidInput("an append needs a Content-Type")
        messages = _messages(content_type, body, creating=False)
    outcome = await _store(request).append(
        path,
        content_type or "",
        messages,
        close=close,
        producer=producer,
        stream_seq=stream_seq,
    )
    return _appended(outcome, producer, bool(messages))


def _producer(headers: Mapping[str, str]) -> Producer | None:
    given = [headers.get(name) for name in (protocol.PRODUCER_ID, PRODUCER_EPOCH, PRODUCER_SEQ)]
    if all(value is None for value in given):
        return None
    producer_id, epoch, seq = given
    if producer_id is None or epoch is None or seq is None:
        raise InvalidInput("Producer-Id, Producer-Epoch and Producer-Seq go together")
    if not producer_id:
        raise InvalidInput("Producer-Id must not be empty")
    return Producer(
        producer_id,
        protocol.integer(PRODUCER_EPOCH, epoch),
        protocol.integer(PRODUCER_SEQ, seq),
    )


def _appended(outcome: Appended, producer: Producer | None, wrote: bool) -> Response:
    headers = {NEXT_OFFSET: offsets.from_entry_id(outcome.tail)}
    match outcome.outcome:
        case "ok":
            if outcome.detail and outcome.detail[0] == "1":
                headers[CLOSED] = "true"
            if producer is None:
                return Response(status_code=204, headers=headers)
            headers[PRODUCER_EPOCH] = str(producer.epoch)
            headers[PRODUCER_SEQ] = str(producer.seq)
            return Response(status_code=200 if wrote else 204, headers=headers)
        case "duplicate":
            closed, epoch, seq = outcome.detail
            if closed == "1":
                headers[CLOSED] = "true"
            headers[PRODUCER_EPOCH], headers[PRODUCER_SEQ] = epoch, seq
            return Response(status_code=204, headers=headers)
        case "missing":
            raise StreamNotFound("")
        case "gone":
            raise StreamGone("this stream was deleted (forks of it still read)")
        case "closed":
            raise Conflict("the stream is closed", {**headers, CLOSED: "true"})
        case "content_type":
            raise Conflict("the body's Content-Type is not the stream's", headers)
        case "stale_epoch":
            raise Forbidden(
                "a newer epoch of this producer has written", {PRODUCER_EPOCH: outcome.detail[0]}
            )
        case "epoch_seq":
            raise InvalidInput("a new producer epoch starts at Producer-Seq 0")
        case "gap":
            assert producer is not None
            raise Conflict(
                "Producer-Seq skips ahead of what this producer sent",
                {
                    protocol.PRODUCER_EXPECTED_SEQ: outcome.detail[0],
                    protocol.PRODUCER_RECEIVED_SEQ: str(producer.seq),
                },
            )
        case "stream_seq":
            raise Conflict("Stream-Seq must increase", headers)
        case "full":
            raise PayloadTooLarge(
                "the stream reached its length cap (TOKENRELAY_MAX_STREAM_EVENTS)"
            )
    raise AssertionError(outcome.outcome)


# -- delete -------------------------------------------------------------------------------


@router.delete("/{path:path}", status_code=204)
async def delete(path: str, request: Request) -> Response:
    """Delete the stream and its messages; its live readers end."""
    writer(request)
    await _store(request).delete(stream_path(path))
    return Response(status_code=204)


# -- metadata and reads -------------------------------------------------------------------


@router.head("/{path:path}")
async def head(path: str, request: Request) -> Response:
    """The stream's type, tail, closure and expiry, without a body."""
    reader(request, path)
    snapshot = await _store(request).look(stream_path(path), None, touch=False)
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
            async with gw.hub.watch(stream_id_of(path)) as topic:
                waited = await live.wait_for_data(
                    topic, read_after, after, gw.settings.ds_long_poll_s
                )
        finally:
            release()
        if waited is None:
            raise StreamNotFound(path)
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
        headers["Stream-SSE-Data-Encoding"] = "base64"
    release = gw.reader_caps.admit(stream_id_of(path), _address(request))

    async def body() -> AsyncIterator[bytes]:
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
