"""Every Redis operation on durable streams.

A durable stream is a stream like a generation's (``shared.keys``: its meta hash, its
Redis Stream of entries, its notify channel, all under one hash tag), named by its path:
its id is a digest of the path, so any gateway finds it without a lookup. Each message is
one entry (``type`` ``message``, ``data`` the message's bytes): in JSON mode one JSON value,
otherwise one append's body. Writes are Lua scripts, atomic with their checks (content type,
closure, idempotent producer, ``Stream-Seq``); a write publishes the new tail on the notify
channel, which wakes the stream's live readers through the hub.

A fork copies the entries it inherits, with their ids, and is a stream of its own from then
on. Its source only keeps a note of it: a source deleted while forks of it live stays as a
tombstone (410, and its path cannot be created again) until the last of them is gone.

Message bytes are read with redis-py's ``NEVER_DECODE``: the process's client decodes
replies as UTF-8, and a durable stream may hold any bytes.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from redis.asyncio import Redis
from redis.client import NEVER_DECODE
from redis.exceptions import NoScriptError

from gateway.durable.protocol import is_json, parse_rfc3339
from shared import metrics
from shared.batching import ScriptBatcher
from shared.errors import Conflict, InvalidInput, StreamGone, StreamNotFound
from shared.keys import Keys
from shared.lua_source import lua_source
from shared.metrics import timed_redis
from shared.settings import Settings

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_FORK_FIELD = "fork:"
"""Meta fields ``fork:<stream id>``: the forks of a stream (their paths as values)."""
_COPY_PAGE = 1000


@lru_cache(maxsize=4096)  # asked several times per request (keys, channel, token, caps)
def stream_id_of(path: str) -> str:
    """The stream id of a durable stream's path: 22 base-62 characters of its SHA-256 (131
    bits), shaped like a generation's id so that every admin view and tool takes it."""
    number = int.from_bytes(hashlib.sha256(f"durable\0{path}".encode()).digest()[:17])
    digits = []
    for _ in range(22):
        number, digit = divmod(number, 62)
        digits.append(_ALPHABET[digit])
    return "".join(digits)


def entry_order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


@dataclass(frozen=True, slots=True)
class Fork:
    """What a fork is made from: its source's path, the entry id it forks at (None: the
    source's tail), and how many units of the next message it takes too (bytes, or JSON
    values)."""

    source: str
    at: str | None = None
    sub_offset: int = 0

    def spec(self, at: str) -> str:
        return f"{self.source}\n{at}\n{self.sub_offset}"


@dataclass(frozen=True, slots=True)
class Config:
    """What a PUT sets and a second PUT must match (``closed``: created closed)."""

    content_type: str
    ttl_s: int | None = None
    expires_at: str | None = None
    closed: bool = False


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One atomic look at a stream: its configuration, its tail, and messages after an
    offset (entry ids)."""

    config: Config
    tail: str
    closed: bool
    deleted: bool
    messages: list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Creation:
    """What a PUT did: created the stream (``created``) or found it with the same
    configuration; the stream's type, tail and closure either way."""

    created: bool
    content_type: str
    tail: str
    closed: bool


@dataclass(frozen=True, slots=True)
class Producer:
    """An idempotent producer's headers."""

    id: str
    epoch: int
    seq: int


@dataclass(frozen=True, slots=True)
class Appended:
    """What a POST did: ``outcome`` as ``ds_append.lua`` names it, the tail after it, and
    the rest of its reply (``closed``, the producer's epoch and seq, the expected seq...)."""

    outcome: str
    tail: str = "0-0"
    detail: tuple[str, ...] = ()


def _count_written(messages: Sequence[bytes]) -> None:
    metrics.ds_messages_appended.inc(len(messages))
    metrics.ds_bytes_appended.inc(sum(len(message) for message in messages))


def _count_append(appended: Appended, messages: Sequence[bytes]) -> Appended:
    """Counts what an append did (metrics): wrote, was a producer's retry, or was refused."""
    if appended.outcome == "ok":
        _count_written(messages)
    elif appended.outcome == "duplicate":
        metrics.ds_appends_duplicate.inc()
    else:
        metrics.ds_appends_refused.labels(appended.outcome).inc()
    return appended


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class _Script:
    """A Lua script run by EVALSHA with any client options (``NEVER_DECODE``), loaded on
    first use."""

    def __init__(self, redis: Redis, name: str) -> None:
        self._redis = redis
        self.source = lua_source(name)
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    async def __call__(self, keys: Sequence[str], args: Sequence[Any], **options: Any) -> Any:
        command = (len(keys), *keys, *args)
        try:
            return await self._redis.execute_command(  # type: ignore[no-untyped-call]
                "EVALSHA", self.sha, *command, **options
            )
        except NoScriptError:
            return await self._redis.execute_command(  # type: ignore[no-untyped-call]
                "EVAL", self.source, *command, **options
            )


class DurableStore:
    """Durable streams in Redis. ``redis`` is the process's shared (decoding) client."""

    def __init__(self, redis: Redis, settings: Settings, batcher: ScriptBatcher) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self._batcher = batcher
        """The process's script batcher (``StreamStore``'s): writes go out together under load."""
        self._create = redis.register_script(lua_source("ds_create"))
        self._append = redis.register_script(lua_source("ds_append"))
        self._read = _Script(redis, "ds_read")  # its replies hold bytes: NEVER_DECODE

    async def load_scripts(self) -> None:
        """Load the scripts up front, as ``StreamStore.load_scripts`` does its own."""
        for source in (self._create.script, self._append.script, self._read.source):
            await self.redis.script_load(source)

    def _keys(self, path: str) -> tuple[str, str]:
        stream_id = stream_id_of(path)
        return self.keys.meta(stream_id), self.keys.events(stream_id)

    # -- create ------------------------------------------------------------------------

    async def create(
        self,
        path: str,
        config: Config,
        messages: Sequence[bytes],
        *,
        api: str,
        fork: Fork | None = None,
    ) -> Creation:
        """Create the stream, or confirm the one at ``path`` if it was made the same way
        (``Conflict`` if not; a tombstone's path cannot be created again)."""
        if fork is None:
            return await self._run_create(path, config, messages, api=api)
        existing = await self.read(path, None)
        if existing is not None:  # compare, copying nothing
            return await self._run_create(path, config, messages, api=api, fork=fork)
        source = await self._live(fork.source, touch=False)
        if source is None:
            raise StreamNotFound(fork.source)
        if source.deleted:
            raise Conflict("the source stream was deleted")
        config = replace(
            config,
            content_type=config.content_type or source.config.content_type,
            ttl_s=config.ttl_s
            if config.ttl_s is not None or config.expires_at is not None
            else source.config.ttl_s,
            expires_at=config.expires_at
            if config.ttl_s is not None or config.expires_at is not None
            else source.config.expires_at,
        )
        if config.content_type != source.config.content_type:
            raise Conflict("a fork has its source's Content-Type")
        at = fork.at or source.tail
        if entry_order(at) > entry_order(source.tail):
            raise InvalidInput("Stream-Fork-Offset is beyond the source's tail")
        fork_tail = await self._copy(fork, path, at, is_json(config.content_type))
        created = await self._run_create(
            path, config, messages, api=api, fork=fork, fork_at=at, fork_tail=fork_tail
        )
        if created.created:
            await self.redis.hset(  # type: ignore[misc]
                self._keys(fork.source)[0], _FORK_FIELD + stream_id_of(path), path
            )
        return created

    async def _run_create(
        self,
        path: str,
        config: Config,
        messages: Sequence[bytes],
        *,
        api: str,
        fork: Fork | None = None,
        fork_at: str = "",
        fork_tail: str = "",
    ) -> Creation:
        content_type = config.content_type or "application/octet-stream"
        expire_at_ms = ""
        if config.expires_at is not None:
            expire_at_ms = str(int(parse_rfc3339(config.expires_at).timestamp() * 1000))
        reply = await self._batcher.call(
            "ds_create",
            self._create,
            self._keys(path),
            [
                repr(time.time()),
                content_type,
                "" if config.ttl_s is None else config.ttl_s,
                config.expires_at or "",
                "1" if config.closed else "",
                api,
                expire_at_ms,
                self.settings.retention_s * 1000,
                fork_tail,
                fork.spec(fork_at) if fork else "",
                *messages,
            ],
        )
        if reply[0] == "created":
            metrics.ds_streams_created.labels("fork" if fork else "new").inc()
            _count_written(messages)
            await self._list_in_index(stream_id_of(path))
            return Creation(True, content_type, reply[1], config.closed)
        ct, ttl, expires_at, created_closed, spec, deleted, tail = reply[1:8]
        if deleted:
            raise Conflict("this path's stream was deleted while forks of it still read")
        existing = Config(ct, int(ttl) if ttl else None, expires_at or None, created_closed == "1")
        same_fork = fork is None and not spec
        if fork is not None and spec:
            source, at, sub = spec.split("\n")
            same_fork = (source, sub) == (fork.source, str(fork.sub_offset)) and (
                fork.at is None or fork.at == at
            )
        if existing != replace(config, content_type=content_type) or not same_fork:
            raise Conflict("a stream with another configuration exists at this path")
        return Creation(False, ct, tail, created_closed == "1")

    async def _list_in_index(self, stream_id: str) -> None:
        """List the stream in the admin index, as a generation is listed."""
        sequence = await self.redis.incr(self.keys.index_sequence)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(self.keys.index, {stream_id: sequence})
            pipe.zremrangebyrank(self.keys.index, 0, -self.settings.max_indexed_streams - 1)
            await pipe.execute()

    async def _copy(self, fork: Fork, path: str, at: str, json_mode: bool) -> str:
        """Copy the source's entries up to ``at`` into the fork's Redis Stream, with their
        ids, and the part of the next message ``fork.sub_offset`` asks for; returns the
        fork's tail."""
        source_events = self._keys(fork.source)[1]
        fork_events = self._keys(path)[1]
        await self.redis.delete(fork_events)
        after = "0-0"
        while after != at:
            entries = await self._entries(source_events, after, at, _COPY_PAGE)
            if not entries:
                break
            await self._add(fork_events, entries)
            after = entries[-1][0]
        if fork.sub_offset == 0:
            return at
        wanted = fork.sub_offset if json_mode else 1
        following = await self._entries(source_events, at, "+", wanted)
        if len(following) < wanted:
            raise InvalidInput("Stream-Fork-Sub-Offset is beyond the message after the offset")
        if not json_mode:
            entry_id, data = following[0]
            if fork.sub_offset > len(data):
                raise InvalidInput("Stream-Fork-Sub-Offset is beyond the message's length")
            following = [(entry_id, data[: fork.sub_offset])]
        await self._add(fork_events, following)
        return following[-1][0]

    async def _entries(
        self, events: str, after: str, until: str, count: int
    ) -> list[tuple[str, bytes]]:
        entries = await self.redis.execute_command(  # type: ignore[no-untyped-call]
            "XRANGE", events, f"({after}", until, "COUNT", count, **{NEVER_DECODE: True}
        )
        return [(_text(entry_id), fields[b"data"]) for entry_id, fields in entries]

    async def _add(self, events: str, entries: list[tuple[str, bytes]]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry_id, data in entries:
                pipe.xadd(events, {"type": "message", "data": data}, id=entry_id)
            await pipe.execute()

    # -- append ------------------------------------------------------------------------

    async def append(
        self,
        path: str,
        content_type: str,
        messages: Sequence[bytes],
        *,
        close: bool = False,
        producer: Producer | None = None,
        stream_seq: str | None = None,
    ) -> Appended:
        reply = await self._batcher.call(
            "ds_append",
            self._append,
            self._keys(path),
            [
                content_type,
                "1" if close else "",
                producer.id if producer else "",
                producer.epoch if producer else 0,
                producer.seq if producer else 0,
                stream_seq if stream_seq is not None else "",
                repr(time.time()),
                self.settings.max_stream_events,
                self.keys.notify(stream_id_of(path)),
                *messages,
            ],
        )
        if reply[0] == "missing":
            return _count_append(Appended("missing"), messages)
        if reply[0] == "gone" and await self._collect(path):
            return _count_append(Appended("missing"), messages)
        appended = Appended(reply[0], reply[1] if len(reply) > 1 else "0-0", tuple(reply[2:]))
        return _count_append(appended, messages)

    # -- read --------------------------------------------------------------------------

    async def read(
        self,
        path: str,
        after: str | None,
        *,
        count: int = 1000,
        max_bytes: int = 1 << 20,
        touch: bool = False,
    ) -> Snapshot | None:
        """The stream now, and up to ``count`` messages (at most ``max_bytes`` of them, at
        least one) after the entry id ``after``; None if there is no stream. ``touch``: a
        read, which renews a sliding TTL."""
        with timed_redis("ds_read"):
            reply = await self._read(
                self._keys(path),
                [after or "", count, max_bytes, "1" if touch else ""],
                **{NEVER_DECODE: True},
            )
        if not reply:
            return None
        content_type, tail, closed, ttl, expires_at = (_text(value) for value in reply[:5])
        config = Config(content_type, int(ttl) if ttl else None, expires_at or None)
        entries = reply[7:]
        messages = [(_text(entries[i]), entries[i + 1]) for i in range(0, len(entries), 2)]
        return Snapshot(config, tail, closed == "1", bool(reply[6]), messages)

    async def _live(self, path: str, *, touch: bool) -> Snapshot | None:
        """The stream's configuration and tail; a tombstone whose forks are all gone is
        collected first (None)."""
        snapshot = await self.read(path, None, touch=touch)
        if snapshot is not None and snapshot.deleted and await self._collect(path):
            return None
        return snapshot

    async def look(self, path: str, after: str | None, *, touch: bool) -> Snapshot:
        """``read`` for a request: ``StreamNotFound`` if there is no stream, ``StreamGone``
        for a tombstone."""
        snapshot = await self.read(path, after, touch=touch)
        if snapshot is not None and snapshot.deleted:
            if await self._collect(path):
                snapshot = None
            else:
                raise StreamGone("this stream was deleted (forks of it still read)")
        if snapshot is None:
            raise StreamNotFound(path)
        return snapshot

    # -- delete ------------------------------------------------------------------------

    async def delete(self, path: str) -> None:
        """Delete the stream: every key, or, while forks of it live, all but a tombstone.
        Its live readers are woken (they find it gone)."""
        snapshot = await self.look(path, None, touch=False)
        del snapshot
        meta, events = self._keys(path)
        if await self._live_forks(path):
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hset(meta, "deleted", "1")
                pipe.delete(events)
                pipe.publish(self.keys.notify(stream_id_of(path)), "deleted")
                await pipe.execute()
            metrics.ds_streams_deleted.labels("tombstoned").inc()
            return
        await self._remove(path)
        metrics.ds_streams_deleted.labels("removed").inc()

    async def _live_forks(self, path: str) -> bool:
        meta = self._keys(path)[0]
        fields: dict[str, str] = await self.redis.hgetall(meta)  # type: ignore[misc]
        forks = {f: p for f, p in fields.items() if f.startswith(_FORK_FIELD)}
        if not forks:
            return False
        async with self.redis.pipeline(transaction=False) as pipe:
            for fork_path in forks.values():
                pipe.exists(self._keys(fork_path)[0])
            alive: list[int] = await pipe.execute()
        gone = [f for f, exists in zip(forks, alive, strict=True) if not exists]
        if gone:
            await self.redis.hdel(meta, *gone)  # type: ignore[misc]
        return any(alive)

    async def _remove(self, path: str) -> None:
        """Delete every key of the stream, and let its source know (collecting the source
        too if it was a tombstone kept only for this fork)."""
        stream_id = stream_id_of(path)
        meta = self._keys(path)[0]
        spec: str | None = await self.redis.hget(meta, "fork")  # type: ignore[misc]
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(*self.keys.all_of(stream_id))
            pipe.publish(self.keys.notify(stream_id), "deleted")
            await pipe.execute()
        if spec:
            source = spec.split("\n")[0]
            await self.redis.hdel(self._keys(source)[0], _FORK_FIELD + stream_id)  # type: ignore[misc]
            await self._collect(source)

    async def _collect(self, path: str) -> bool:
        """Remove a tombstone none of whose forks lives any more; whether it is gone."""
        deleted = await self.redis.hget(self._keys(path)[0], "deleted")  # type: ignore[misc]
        if deleted is None:
            return not await self.redis.exists(self._keys(path)[0])
        if await self._live_forks(path):
            return False
        await self._remove(path)
        return True
