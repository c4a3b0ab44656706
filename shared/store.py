"""Redis as the only state: every read and write of a stream, as atomic commands or scripts.

The contract both sides rely on:

* A stream is a meta hash, an events Redis Stream, a lease and a notify channel
  (``shared.keys``). Only the worker holding the lease appends; every append is fenced
  by the lease inside the same script, so a second run of a job can never add a token.
* Every stream ends with exactly one terminal event, written only by ``finish.lua``,
  which also settles the status and starts the retention clock.
* Each append (and the terminal event) is published on the notify channel as
  ``<previous offset> <offset> <type> <data>``: gateways learn that a stream grew, and
  readers at the tail get the event itself, without one blocking read per client.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from shared import offsets
from shared.batching import ScriptBatcher
from shared.errors import OffsetExpired
from shared.events import Event, EventType, StreamEvent
from shared.keys import Keys, durable_stream_of
from shared.lua_source import lua_source
from shared.metrics import events_appended, streams_finished, timed_redis
from shared.settings import Settings
from shared.status import Status, StreamStatus
from shared.upstream_api import CHAT_COMPLETIONS

READER_PRESENCE_REFRESH_S = 1.0
"""How often a gateway renews "a reader is connected" on a stream with
``cancel_on_disconnect_s``; a worker allows a mark to be that much (and a little) stale."""


META_FIELDS = (
    "status",  # first: a stream without one does not exist
    "model",
    "upstream",
    "created_at",
    "started_at",
    "finished_at",
    "finish_reason",
    "error",
    "usage",
    "event_count",
    "last_offset",
    "metadata",
    "cancel_on_disconnect_ms",
    "first_token_at",
    "worker",
    "attempts",
    "completion",
    "api",
)
"""The meta fields readers of a stream use; everything but the upstream request."""


class Claim(StrEnum):
    CLAIMED = "claimed"
    MISSING = "missing"
    LEASED = "leased"
    ORPHANED = "orphaned"


@dataclass(frozen=True, slots=True)
class Claimed:
    """What a claim got: ``Claim.CLAIMED`` with the stream's upstream API
    (``shared.upstream_api``) and request, or why not (a ``Claim`` or the status of an
    already ended stream)."""

    outcome: str
    endpoint: str = CHAT_COMPLETIONS
    request: dict[str, Any] = field(default_factory=dict)


class Signal(StrEnum):
    """What a heartbeat tells the worker."""

    OK = "ok"
    FENCED = "fenced"
    CANCEL = "cancel"
    ABANDONED = "abandoned"


class Fenced(Exception):
    """This worker no longer holds the stream's lease: it must stop without writing."""


class StreamFull(Exception):
    """The stream reached its hard length cap."""


FinishMode = Literal["owner", "orphan", "queued"]


@dataclass(frozen=True, slots=True)
class Ending:
    """What ``finish`` did: wrote the terminal event at ``offset``, or ``refused`` and why
    ('missing', 'ended', 'fenced', 'alive' or 'claimed', as ``finish.lua`` says)."""

    offset: str | None = None
    refused: str | None = None


def _meta(row: list[str | None]) -> dict[str, str] | None:
    if row[0] is None:  # no status: no stream
        return None
    return {field: value for field, value in zip(META_FIELDS, row, strict=True) if value}


class StreamStore:
    """Every Redis operation on streams. ``redis`` must decode responses."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self._claim = redis.register_script(lua_source("claim"))
        self._append = redis.register_script(lua_source("append"))
        self._finish = redis.register_script(lua_source("finish"))
        self._heartbeat = redis.register_script(lua_source("heartbeat"))
        self._cancel = redis.register_script(lua_source("cancel"))
        self._touch_reader = redis.register_script(lua_source("touch_reader"))
        self.batcher = ScriptBatcher(redis)
        """Every script call of this process (``_call``, and ``DurableStore``'s writes): one
        pipeline at a time."""

    async def _call(
        self, operation: str, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        """Every script call goes through the one batcher: at once when the process is
        quiet, in a shared pipeline when it is busy (a burst of claims or finishes takes one
        connection, not one each)."""
        return await self.batcher.call(operation, script, keys, args)

    async def load_scripts(self) -> None:
        """Load every script up front, so the first calls need no NOSCRIPT round trip
        (which fakeredis's TCP server, dev mode's last resort, answers by hanging up)."""
        for script in (
            self._claim,
            self._append,
            self._finish,
            self._heartbeat,
            self._cancel,
            self._touch_reader,
        ):
            await self.redis.script_load(script.script)

    @property
    def _alive_ttl_ms(self) -> int:
        return (self.settings.job_timeout_s + self.settings.retention_s) * 1000

    # -- creating and reading status ---------------------------------------------------

    async def create(
        self,
        stream_id: str,
        *,
        model: str,
        request: Mapping[str, Any],
        metadata: Mapping[str, str],
        cancel_on_disconnect_s: float | None,
        api: Mapping[str, Any] | None = None,
        endpoint: str = CHAT_COMPLETIONS,
    ) -> float:
        """Store a new queued stream and list it in the index; returns its ``created_at``.
        ``api``: what the compatible API that created it needs to answer its readers."""
        created_at = time.time()
        sequence = await self.redis.incr(self.keys.index_sequence)
        meta: dict[str, str | int] = {
            "status": Status.QUEUED.value,
            "model": model,
            "created_at": repr(created_at),
            "event_count": 0,
            "request": json.dumps(request, ensure_ascii=False),
            "metadata": json.dumps(dict(metadata), ensure_ascii=False),
        }
        if cancel_on_disconnect_s is not None:
            meta["cancel_on_disconnect_ms"] = int(cancel_on_disconnect_s * 1000)
        if api is not None:
            meta["api"] = json.dumps(dict(api), ensure_ascii=False)
        if endpoint != CHAT_COMPLETIONS:
            meta["endpoint"] = endpoint
        key = self.keys.meta(stream_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, mapping=meta)
            pipe.expire(key, self.settings.queued_ttl_s)
            # The index lists streams newest first for the admin view; entries of expired
            # streams are dropped by the gateways' sweep (``prune_index``) and as listings
            # meet them, and the oldest beyond the cap here.
            pipe.zadd(self.keys.index, {stream_id: sequence})
            pipe.zremrangebyrank(self.keys.index, 0, -self.settings.max_indexed_streams - 1)
            await pipe.execute()
        return created_at

    async def prune_index(self, after: int | None, count: int) -> tuple[int | None, int]:
        """Drop from the index the streams whose keys have expired, among the ``count``
        entries just after the score ``after`` (the oldest without it). Returns the score
        to go on from (None: the end was reached, start again from the oldest) and how many
        entries went."""
        lower = "-inf" if after is None else f"({after}"
        batch = await self.redis.zrangebyscore(
            self.keys.index, lower, "+inf", start=0, num=count, withscores=True
        )
        if not batch:
            return None, 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream_id, _ in batch:
                pipe.exists(self.keys.meta(stream_id))
            exists: list[int] = await pipe.execute()
        gone = [stream_id for (stream_id, _), alive in zip(batch, exists, strict=True) if not alive]
        if gone:
            await self.redis.zrem(self.keys.index, *gone)
        return (int(batch[-1][1]) if len(batch) == count else None), len(gone)

    async def remember_idempotent(self, principal: str, key: str, stream_id: str) -> str | None:
        """Bind ``key`` to ``stream_id`` unless it already names a stream; returns that one."""
        previous: str | None = await self.redis.set(
            self.keys.idempotency(principal, key),
            stream_id,
            nx=True,
            get=True,
            ex=self.settings.idempotency_ttl_s,
        )
        return previous

    async def forget_idempotent(self, principal: str, key: str, stream_id: str) -> None:
        """Unbind ``key`` if it still names ``stream_id`` (a creation that was refused)."""
        name = self.keys.idempotency(principal, key)
        if await self.redis.get(name) == stream_id:
            await self.redis.delete(name)

    async def meta(self, stream_id: str) -> dict[str, str] | None:
        """The stream's meta hash without its request (which may be megabytes of prompt)."""
        row: list[str | None] = await self.redis.hmget(self.keys.meta(stream_id), list(META_FIELDS))  # type: ignore[misc]
        return _meta(row)

    async def metas(self, stream_ids: list[str]) -> list[dict[str, str] | None]:
        """``meta`` of many streams in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream_id in stream_ids:
                pipe.hmget(self.keys.meta(stream_id), list(META_FIELDS))
            rows: list[list[str | None]] = await pipe.execute()
        return [_meta(row) for row in rows]

    async def meta_and_length(self, stream_id: str) -> tuple[dict[str, str] | None, int]:
        """``meta`` and how many entries the Redis Stream holds (for ``check_resumable``),
        in one round trip: what a reader needs before it starts."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(self.keys.meta(stream_id), list(META_FIELDS))
            pipe.xlen(self.keys.events(stream_id))
            row, length = await pipe.execute()
        return _meta(row), length

    async def status(self, stream_id: str) -> StreamStatus | None:
        meta = await self.meta(stream_id)
        return StreamStatus.from_meta(stream_id, meta) if meta else None

    async def last_offset(self, stream_id: str) -> str | None:
        offset: str | None = await self.redis.hget(self.keys.meta(stream_id), "last_offset")  # type: ignore[misc]
        return offset or None

    # -- the worker's side -------------------------------------------------------------

    async def claim(self, stream_id: str, owner: str, upstream: str) -> Claimed:
        """Take the lease, and with it the stream's request; or why not."""
        result: str | list[str] = await self._call(
            "claim",
            self._claim,
            keys=self.keys.stream_keys(stream_id),
            args=[
                owner,
                int(self.settings.lease_ttl_s * 1000),
                repr(time.time()),
                upstream,
                self._alive_ttl_ms,
            ],
        )
        if isinstance(result, str):
            return Claimed(result)
        _, request, endpoint = result
        return Claimed(Claim.CLAIMED, endpoint or CHAT_COMPLETIONS, json.loads(request or "{}"))

    async def append(
        self,
        stream_id: str,
        owner: str,
        events: Sequence[Event],
        seq: int,
        *,
        completion: str | None = None,
    ) -> str:
        """Append non-terminal events, the first as the stream's ``seq``-th (from 1);
        returns the last one's offset or raises ``Fenced``/``StreamFull``. Calling again
        with the same ``seq`` (the reply was lost) appends nothing more. ``completion``: the
        stream's chunk-level fields (JSON), stored with them."""
        args: list[Any] = [
            owner,
            self.settings.max_stream_events,
            self._alive_ttl_ms,
            self.keys.notify(stream_id),
            repr(time.time()),
            seq,
            completion or "",
            *self._durable_args(stream_id),
        ]
        for event in events:
            args += (event.type.value, event.data)
        result = await self._call(
            "append", self._append, keys=self.keys.writing_keys(stream_id), args=args
        )
        if result[0] == "fenced":
            raise Fenced(stream_id)
        if result[0] == "full":
            raise StreamFull(stream_id)
        if result[0] == "gap":
            raise RuntimeError(f"stream={stream_id} append #{seq} does not follow the last one")
        events_appended.inc(len(events))
        offset: str = result[1]
        return offset

    def _durable_args(self, stream_id: str) -> tuple[str, str]:
        """What the scripts that write events need to copy them into the durable stream the
        generation writes into: its channel and the generation's id (or nothing)."""
        within = durable_stream_of(stream_id)
        return (self.keys.notify(within), stream_id) if within else ("", "")

    async def heartbeat(self, stream_id: str, owner: str) -> Signal:
        result: str = await self._call(
            "heartbeat",
            self._heartbeat,
            keys=self.keys.stream_keys(stream_id),
            args=[
                owner,
                int(self.settings.lease_ttl_s * 1000),
                int(time.time() * 1000),
                int(READER_PRESENCE_REFRESH_S * 1000) + 250,
            ],
        )
        return Signal(result)

    async def finish(
        self,
        stream_id: str,
        event: Event,
        *,
        mode: FinishMode,
        owner: str = "",
        completion: str | None = None,
    ) -> Ending:
        """Write the terminal ``event`` if ``mode`` allows (and ``completion``, the stream's
        chunk-level fields, if no append has stored them)."""
        payload = event.payload()
        if event.type is EventType.DONE:
            reason = payload["finish_reason"]
            status = Status.CANCELLED if reason == "cancelled" else Status.COMPLETED
            error_json, usage = "", payload.get("usage")
        else:
            status, reason, error_json, usage = Status.FAILED, "", event.data, None
        result = await self._call(
            "finish",
            self._finish,
            keys=self.keys.writing_keys(stream_id),
            args=[
                mode,
                owner,
                status.value,
                repr(time.time()),
                self.settings.retention_s * 1000,
                self.keys.notify(stream_id),
                event.type.value,
                event.data,
                reason,
                error_json,
                json.dumps(usage) if usage is not None else "",
                completion or "",
                *self._durable_args(stream_id),
            ],
        )
        if result[0] == "ok":
            streams_finished.labels(status.value).inc()
            return Ending(offset=result[1])
        return Ending(refused=result[0])

    # -- the gateway's side ------------------------------------------------------------

    async def request_cancel(self, stream_id: str) -> str:
        """Flag the stream for cancellation; returns its prior status or 'missing'."""
        result: str = await self._call(
            "cancel", self._cancel, keys=[self.keys.meta(stream_id)], args=[]
        )
        return result

    async def touch_reader(self, stream_id: str) -> None:
        await self._call(
            "touch_reader",
            self._touch_reader,
            keys=[self.keys.meta(stream_id)],
            args=[int(time.time() * 1000)],
        )

    async def read(self, stream_id: str, after: str, count: int) -> list[StreamEvent]:
        """Up to ``count`` events strictly after ``after``, oldest first."""
        with timed_redis("read"):
            entries = await self.redis.xrange(
                self.keys.events(stream_id), min=f"({after}", count=count
            )
        return [StreamEvent.from_entry(entry_id, fields) for entry_id, fields in entries]

    async def read_all(self, stream_id: str, page: int = 1000) -> AsyncIterator[StreamEvent]:
        """Every event the stream holds now, oldest first, read ``page`` at a time."""
        after = offsets.START
        while True:
            events = await self.read(stream_id, after, page)
            for event in events:
                yield event
            if len(events) < page:
                return
            after = events[-1].offset

    async def check_resumable(
        self, stream_id: str, after: str, event_count: int, length: int
    ) -> None:
        """Raise ``OffsetExpired`` if events after ``after`` were trimmed away.

        Entries are never trimmed one by one; they can only go missing all at once or from
        the front (eviction, a manual XTRIM, a restore from an old snapshot). The meta hash
        counts every append (``event_count``), so a Redis Stream with fewer entries
        (``length``) has lost its front.
        """
        if length >= event_count:
            return
        first = await self.redis.xrange(self.keys.events(stream_id), count=1)
        if not first or (offsets.is_after(first[0][0], after) and after != offsets.NOW):
            raise OffsetExpired(
                f"events after offset {after} were trimmed away; "
                "restart from the beginning of what remains or create a new stream"
            )
