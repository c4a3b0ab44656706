"""The admin views of a durable stream (``gateway.inspection`` and ``gateway.admin`` ask here
once ``views.durable_path`` says a stream is one): what its summary and detail add to the
status object, its messages as events, the admin tail, and its purge.

Messages are read through ``DurableStore`` (``NEVER_DECODE``: any bytes), never as
generation events, and without renewing a sliding TTL (an operator looking is no reader).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import suppress
from typing import Any

from redis.asyncio import Redis
from starlette.responses import Response

from gateway.context import Gateway
from gateway.durable import offsets as ds_offsets
from gateway.durable.store import DurableStore, Snapshot, entry_order, stream_id_of
from gateway.durable.views import MESSAGE, message_event, message_fields, url_of
from gateway.streaming import EventStreamResponse
from shared.errors import InvalidOffset, ShuttingDown, StreamGone, StreamNotFound
from shared.keys import Keys

FORK_FIELD = "fork:"
"""A stream's meta fields ``fork:<fork's id>`` name its forks (``DurableStore``'s notes)."""
PRODUCER_FIELD = "producer:"
"""Meta fields ``producer:<id>`` hold an idempotent producer's ``<epoch> <seq>``."""
PRODUCERS_SHOWN = 100

EVENTS_MAX_BYTES = 4 << 20
"""The message bytes one admin page of events holds at most (at least one message): a page
may hold fewer than ``count`` events before the stream's end."""
TAIL_BATCH = 256
TAIL_MAX_BYTES = 1 << 20
CLOSED = "closed"
"""The admin tail's last SSE event when the stream is closed (it has no ``id``: the closure
is no entry of the stream)."""


def summary_fields(meta: dict[str, str], path: str, extra: list[str | None]) -> dict[str, Any]:
    """What a list item says of a durable stream: ``extra`` is its meta's ``content_type``
    and ``deleted``."""
    content_type, deleted = extra
    return {
        "path": path,
        "url": url_of(path),
        "content_type": content_type or None,
        "closed": meta.get("status") == "completed",
        "deleted": bool(deleted),
    }


SUMMARY_EXTRA = ("content_type", "deleted")
"""The meta fields ``summary_fields`` takes beyond the status object's."""


async def detail_fields(redis: Redis, keys: Keys, stream_id: str, path: str) -> dict[str, Any]:
    """Everything its meta hash says of a durable stream: its configuration, expiry, tail,
    fork source and forks, producers, ``Stream-Seq``, and whether it is a tombstone."""
    meta_key = keys.meta(stream_id)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(meta_key)
        pipe.pttl(meta_key)
        fields, pttl = await pipe.execute()
    fork_spec = fields.get("fork") or ""
    fork = None
    if fork_spec:
        source, _, rest = fork_spec.partition("\n")  # "<source path>\n<entry id>\n<sub>"
        at, _, sub_offset = rest.partition("\n")
        fork = {
            "source": source,
            "offset": ds_offsets.from_entry_id(at) if at else None,
            "sub_offset": int(sub_offset) if sub_offset.isdigit() else 0,
        }
    producers = sorted(
        (name.removeprefix(PRODUCER_FIELD), value)
        for name, value in fields.items()
        if name.startswith(PRODUCER_FIELD)
    )
    ttl_s = fields.get("ttl_s")
    return {
        "path": path,
        "url": url_of(path),
        "content_type": fields.get("content_type") or None,
        "closed": fields.get("closed") == "1",
        "deleted": "deleted" in fields,
        "ttl_s": int(ttl_s) if ttl_s else None,
        "expires_at": fields.get("expires_at") or None,
        "expires_in_s": round(pttl / 1000, 3) if pttl >= 0 else None,
        "next_offset": ds_offsets.from_entry_id(fields.get("last_offset") or "0-0"),
        "stream_seq": fields.get("stream_seq") or None,
        "fork": fork,
        "forks": sorted(v for k, v in fields.items() if k.startswith(FORK_FIELD)),
        "producer_count": len(producers),
        "producers": [
            _producer(producer_id, state) for producer_id, state in producers[:PRODUCERS_SHOWN]
        ],
    }


def _producer(producer_id: str, state: str) -> dict[str, Any]:
    epoch, _, seq = state.partition(" ")
    return {"id": producer_id, "epoch": int(epoch or 0), "seq": int(seq or 0)}


async def events(durable: DurableStore, path: str, after: str | None, count: int) -> bytes:
    """``{"events": [...]}`` (JSON): up to ``count`` messages after the entry id ``after``
    (None: ``$``, nothing), at most ``EVENTS_MAX_BYTES`` of them."""
    if after is None:
        return b'{"events":[]}'
    snapshot = await durable.read(path, after, count=count, max_bytes=EVENTS_MAX_BYTES, touch=False)
    if snapshot is None:
        raise StreamNotFound(stream_id_of(path))
    content_type = snapshot.config.content_type
    listed = (message_event(entry_id, data, content_type) for entry_id, data in snapshot.messages)
    return b'{"events":[' + b",".join(listed) + b"]}"


async def tail(gw: Gateway, stream_id: str, path: str, after: str | None) -> Response:
    """The admin tail of a durable stream: SSE, one ``message`` event per message (``id``
    its entry id, ``data`` what ``message_fields`` makes of it), ``: ping`` while it is
    quiet; ends with a ``closed`` event once the stream is closed and every message sent,
    or without one when the stream is deleted or this gateway shuts down. 204 if the stream
    was closed at ``after`` already (None: ``$``, from its tail on)."""
    if gw.hub.draining:
        raise ShuttingDown()
    durable = gw.durable
    first = await durable.read(path, None, touch=False)
    if first is None:
        raise StreamNotFound(stream_id)
    if first.deleted:
        raise StreamGone("this stream was deleted (forks of it still read)")
    start = first.tail if after is None else after
    if entry_order(start) > entry_order(first.tail):
        raise InvalidOffset(f"offset {after} is beyond the end of this stream")
    if first.closed and start == first.tail:
        return Response(status_code=204)

    async def frames() -> AsyncIterator[bytes]:
        yield f"retry: {gw.settings.sse_retry_ms}\n\n".encode()
        position = start
        async with gw.hub.watch(stream_id) as topic:
            while not topic.draining:
                version, keepalives = topic.version, topic.keepalives
                snapshot = await durable.read(
                    path, position, count=TAIL_BATCH, max_bytes=TAIL_MAX_BYTES, touch=False
                )
                if snapshot is None or snapshot.deleted:
                    return
                if snapshot.messages:
                    yield _sse(snapshot)
                    position = snapshot.messages[-1][0]
                if position != snapshot.tail:
                    continue
                if snapshot.closed:
                    yield _closed(position)
                    return
                await topic.wait_past(version, keepalives)
                if topic.keepalives != keepalives:
                    yield b": ping\n\n"

    return EventStreamResponse(
        frames(), "text/event-stream; charset=utf-8", stuck_sends=gw.stuck_sends
    )


def _sse(snapshot: Snapshot) -> bytes:
    content_type = snapshot.config.content_type
    return b"".join(
        b"id: %s\nevent: %s\ndata: %s\n\n"
        % (entry_id.encode(), MESSAGE.encode(), message_fields(entry_id, data, content_type))
        for entry_id, data in snapshot.messages
    )


def _closed(tail: str) -> bytes:
    return b'event: %s\ndata: {"offset":"%s","ds_offset":"%s"}\n\n' % (
        CLOSED.encode(),
        tail.encode(),
        ds_offsets.from_entry_id(tail).encode(),
    )


async def purge(redis: Redis, keys: Keys, durable: DurableStore, stream_id: str) -> int:
    """Delete every key of the durable stream (a tombstone's too: its path may be created
    again) and its index entry; end its live readers at once. A fork is struck off its
    source's notes, and a source kept as a tombstone only for it goes too. Returns how many
    keys were deleted."""
    spec: str | None = await redis.hget(keys.meta(stream_id), "fork")  # type: ignore[misc]
    async with redis.pipeline(transaction=False) as pipe:
        pipe.delete(*keys.all_of(stream_id))
        pipe.zrem(keys.index, stream_id)
        pipe.publish(keys.notify(stream_id), "deleted")
        deleted, _, _ = await pipe.execute()
    if spec:
        source = spec.split("\n")[0]
        await redis.hdel(keys.meta(stream_id_of(source)), FORK_FIELD + stream_id)  # type: ignore[misc]
        with suppress(StreamNotFound, StreamGone):  # a tombstone without forks is collected
            await durable.look(source, None, touch=False)
    return int(deleted)
