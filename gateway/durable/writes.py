"""Writing durable streams: ``PUT`` creates (or forks), ``POST`` appends and closes,
``DELETE`` removes — each a translation of the request into one ``DurableStore`` call and of
its outcome into the protocol's status and headers."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import APIRouter, Request, Response

from gateway.context import gateway_of
from gateway.durable import offsets, protocol
from gateway.durable.access import PREFIX, store_of, stream_path, writer
from gateway.durable.protocol import CLOSED, NEXT_OFFSET, PRODUCER_EPOCH, PRODUCER_SEQ
from gateway.durable.store import Appended, Config, Fork, Producer, stream_id_of
from gateway.models import API_ERRORS, READ_TOKEN_HEADER, STREAM_ID_HEADER
from shared.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    PayloadTooLarge,
    StreamGone,
    StreamNotFound,
)

# their answers have no JSON body (so says the schema too)
router = APIRouter(
    prefix=PREFIX,
    tags=["durable streams"],
    responses=API_ERRORS,
    default_response_class=Response,
)


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
    store = store_of(request)
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
    outcome = await store_of(request).append(
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
    await store_of(request).delete(stream_path(path))
    return Response(status_code=204)


# -- metadata and reads -------------------------------------------------------------------
