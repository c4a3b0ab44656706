"""Every Redis operation on durable streams.

A durable stream is a stream like a generation's (``shared.keys``: its meta hash, its
Redis Stream of entries, its notify channel, all under one hash tag), named by its path:
its id is a digest of the path, so any gateway finds it without a lookup. Each message is
one entry (``type`` ``message``, ``data`` the message's bytes): in JSON mode one JSON value,
otherwise one append's body. Writes are Lua scripts, atomic with their checks (content type,
closure, idempotent producer, ``Stream-Seq``); a write publishes the new tail on the notify
channel, which wakes the stream's live readers through the hub.

Message bytes are read with redis-py's ``NEVER_DECODE``: the process's client decodes
replies as UTF-8, and a durable stream may hold any bytes.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.client import NEVER_DECODE
from redis.exceptions import NoScriptError

from gateway.durable.protocol import parse_rfc3339
from shared.errors import InvalidInput
from shared.keys import Keys
from shared.metrics import timed_redis
from shared.settings import Settings

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def stream_id_of(path: str) -> str:
    """The stream id of a durable stream's path: 22 base-62 characters of its SHA-256 (131
    bits), shaped like a generation's id so that every admin view and tool takes it."""
    number = int.from_bytes(hashlib.sha256(f"durable\0{path}".encode()).digest()[:17])
    digits = []
    for _ in range(22):
        number, digit = divmod(number, 62)
        digits.append(_ALPHABET[digit])
    return "".join(digits)


@dataclass(frozen=True, slots=True)
class Config:
    """What a PUT sets and a second PUT must match."""

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
    remaining_ms: int | None
    messages: list[tuple[str, bytes]]

    @property
    def closed(self) -> bool:
        return self.config.closed


@dataclass(frozen=True, slots=True)
class Creation:
    """What a PUT did: created the stream, or found one (``existing``) at its path."""

    tail: str
    existing: Config | None = None


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


def entry_order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


def _script(name: str) -> str:
    return resources.files("shared").joinpath("lua", f"{name}.lua").read_text()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class _Script:
    """A Lua script run by EVALSHA with any client options (``NEVER_DECODE``), loaded on
    first use."""

    def __init__(self, redis: Redis, name: str) -> None:
        self._redis = redis
        self.source = _script(name)
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    async def __call__(self, keys: Sequence[str], args: Sequence[Any], **options: Any) -> Any:
        command = (len(keys), *keys, *args)
        try:
            return await self._redis.execute_command("EVALSHA", self.sha, *command, **options)
        except NoScriptError:
            return await self._redis.execute_command("EVAL", self.source, *command, **options)


class DurableStore:
    """Durable streams in Redis. ``redis`` is the process's shared (decoding) client."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self._create = _Script(redis, "ds_create")
        self._append = _Script(redis, "ds_append")
        self._read = _Script(redis, "ds_read")

    def _keys(self, stream_id: str) -> tuple[str, str]:
        return self.keys.meta(stream_id), self.keys.events(stream_id)

    def _expiry(self, config: Config, now: float) -> tuple[str, int]:
        """(expire_at_ms or '', idle_ms) for the scripts."""
        retention_ms = self.settings.retention_s * 1000
        if config.ttl_s is not None:
            return str(int((now + config.ttl_s) * 1000)), retention_ms
        if config.expires_at is not None:
            return str(int(parse_rfc3339(config.expires_at).timestamp() * 1000)), retention_ms
        return "", retention_ms

    async def create(
        self,
        path: str,
        config: Config,
        messages: Sequence[bytes],
        *,
        api: str,
        fork_tail: str = "",
    ) -> Creation:
        stream_id = stream_id_of(path)
        now = time.time()
        expire_at_ms, idle_ms = self._expiry(config, now)
        with timed_redis("ds_create"):
            reply = await self._create(
                self._keys(stream_id),
                [
                    repr(now),
                    config.content_type,
                    "" if config.ttl_s is None else config.ttl_s,
                    config.expires_at or "",
                    "1" if config.closed else "",
                    api,
                    expire_at_ms,
                    idle_ms,
                    fork_tail,
                    *messages,
                ],
            )
        if reply[0] == "created":
            await self._list_in_index(stream_id)
            return Creation(reply[1])
        content_type, ttl, expires_at, closed, tail = reply[1:6]
        existing = Config(
            content_type, int(ttl) if ttl else None, expires_at or None, closed == "1"
        )
        return Creation(tail, existing)

    async def _list_in_index(self, stream_id: str) -> None:
        """List the stream in the admin index, as a generation is listed."""
        sequence = await self.redis.incr(self.keys.index_sequence)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(self.keys.index, {stream_id: sequence})
            pipe.zremrangebyrank(self.keys.index, 0, -self.settings.max_indexed_streams - 1)
            await pipe.execute()

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
        stream_id = stream_id_of(path)
        with timed_redis("ds_append"):
            reply = await self._append(
                self._keys(stream_id),
                [
                    content_type,
                    "1" if close else "",
                    producer.id if producer else "",
                    producer.epoch if producer else 0,
                    producer.seq if producer else 0,
                    stream_seq if stream_seq is not None else "",
                    repr(time.time()),
                    self.settings.max_stream_events,
                    self.settings.retention_s * 1000,
                    self.keys.notify(stream_id),
                    *messages,
                ],
            )
        if reply[0] == "missing":
            return Appended("missing")
        return Appended(reply[0], reply[1], tuple(reply[2:]))

    async def read(
        self, path: str, after: str | None, *, count: int = 1000, max_bytes: int = 1 << 20
    ) -> Snapshot | None:
        """The stream now, and up to ``count`` messages (at most ``max_bytes`` of them, at
        least one) after the entry id ``after``; None if there is no stream."""
        stream_id = stream_id_of(path)
        with timed_redis("ds_read"):
            reply = await self._read(
                self._keys(stream_id),
                [after or "", count, max_bytes],
                **{NEVER_DECODE: True},
            )
        if not reply:
            return None
        content_type, tail, closed, ttl, expires_at = (_text(value) for value in reply[:5])
        pttl = int(reply[5])
        config = Config(content_type, int(ttl) if ttl else None, expires_at or None, closed == "1")
        entries = reply[6:]
        messages = [(_text(entries[i]), entries[i + 1]) for i in range(0, len(entries), 2)]
        return Snapshot(config, tail, pttl if pttl >= 0 else None, messages)

    async def copy_for_fork(self, source_path: str, fork_path: str, at: str | None) -> str | None:
        """Copy the source's messages up to the entry id ``at`` (its tail if None) into the
        fork's Redis Stream, with their ids, before ``create`` makes the fork exist; returns
        the entry id it forks at, None if there is no source. A fork is a stream of its own
        from then on: deleting or expiring its source takes nothing from it. Nothing is
        copied if a stream exists at the fork's path (``create`` then compares them)."""
        source = await self.read(source_path, None)
        if source is None:
            return None
        at = at or source.tail
        if entry_order(at) > entry_order(source.tail):
            raise InvalidInput("Stream-Fork-Offset is beyond the source's tail")
        fork_id = stream_id_of(fork_path)
        if await self.redis.exists(self.keys.meta(fork_id)):
            return at
        source_events = self.keys.events(stream_id_of(source_path))
        fork_events = self.keys.events(fork_id)
        await self.redis.delete(fork_events)
        after = "0-0"
        while True:
            entries = await self.redis.execute_command(
                "XRANGE", source_events, f"({after}", at, "COUNT", 1000, **{NEVER_DECODE: True}
            )
            if not entries:
                return at
            async with self.redis.pipeline(transaction=False) as pipe:
                for entry_id, fields in entries:
                    pipe.xadd(
                        fork_events, dict(zip(fields[::2], fields[1::2], strict=True)), id=entry_id
                    )
                await pipe.execute()
            after = _text(entries[-1][0])

    async def delete(self, path: str) -> bool:
        """Delete every key of the stream; whether it existed. Its live readers are woken
        (they find it gone)."""
        stream_id = stream_id_of(path)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(*self.keys.all_of(stream_id))
            pipe.publish(self.keys.notify(stream_id), "deleted")
            deleted, _ = await pipe.execute()
        return bool(deleted)
