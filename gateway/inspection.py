"""What the admin view reads: the stream index, readers and their lag, the live processes.

Durable streams are listed in the same index: every view asks ``durable_path`` of a stream's
meta before it reads entries, and shows a durable stream's own fields
(``gateway.durable.inspection``) in ``durable`` (null for a generation).
"""

from __future__ import annotations

import json
import time
from typing import Any

from redis.client import NEVER_DECODE

from gateway.durable import inspection as durable_inspection
from gateway.durable.store import DurableStore
from gateway.durable.views import durable_path
from shared.presence import alive
from shared.queue import JobQueue
from shared.status import Status, StreamStatus
from shared.store import StreamStore

SCAN_BUDGET_PER_ITEM = 10
"""A filtered listing looks at most this many index entries per item asked for, then hands
back a cursor, so one call stays cheap however rare the status looked for."""

LAG_COUNT_CAP = 10_000


class Inspector:
    def __init__(self, store: StreamStore, queue: JobQueue, durable: DurableStore) -> None:
        self.store = store
        self.redis = store.redis
        self.keys = store.keys
        self.queue = queue
        self.durable = durable

    async def _live_gateways(self) -> set[str]:
        return set(await alive(self.redis, self.keys.gateways))

    async def _reader_entries(self, stream_ids: list[str]) -> list[list[dict[str, Any]]]:
        """The live readers of each stream (their gateway's heartbeat is fresh)."""
        live = await self._live_gateways()
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream_id in stream_ids:
                pipe.hvals(self.keys.readers(stream_id))
            raw: list[list[str]] = await pipe.execute()
        entries = [[json.loads(value) for value in values] for values in raw]
        return [[e for e in stream if e["gateway"] in live] for stream in entries]

    @staticmethod
    def summary(
        stream_id: str, meta: dict[str, str], readers: int, durable: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The status object, its readers' count, its events but the terminal one (a
        durable stream's messages: it has no terminal event), and ``durable``: a durable
        stream's own fields (null for a generation)."""
        status = StreamStatus.from_meta(stream_id, meta)
        final = status.status.is_final and durable is None
        token_events = status.event_count - (1 if final else 0)
        return {
            **status.model_dump(),
            "readers": readers,
            "token_events": token_events,
            "durable": durable,
        }

    async def _durable_summaries(
        self, found: list[tuple[str, dict[str, str]]]
    ) -> list[dict[str, Any] | None]:
        """The ``durable`` field of each listed stream: one round trip for the durable ones."""
        paths = [durable_path(stream_id, meta) for stream_id, meta in found]
        wanted = [(i, stream_id) for i, (stream_id, _) in enumerate(found) if paths[i]]
        fields: list[dict[str, Any] | None] = [None] * len(found)
        if not wanted:
            return fields
        async with self.redis.pipeline(transaction=False) as pipe:
            for _, stream_id in wanted:
                pipe.hmget(self.keys.meta(stream_id), list(durable_inspection.SUMMARY_EXTRA))
            extras: list[list[str | None]] = await pipe.execute()
        for (i, _), extra in zip(wanted, extras, strict=True):
            path = paths[i]
            assert path is not None
            fields[i] = durable_inspection.summary_fields(found[i][1], path, extra)
        return fields

    async def page(
        self, status: Status | None, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Streams newest first, from just below ``cursor`` (an index score)."""
        upper = "+inf" if cursor is None else f"({int(cursor)}"
        found: list[tuple[str, dict[str, str]]] = []
        budget = limit * SCAN_BUDGET_PER_ITEM if status else limit
        scanned, last = 0, None
        exhausted = False
        while len(found) < limit and scanned < budget:
            batch = await self.redis.zrevrangebyscore(
                self.keys.index,
                upper,
                "-inf",
                start=0,
                num=min(budget - scanned, 500),
                withscores=True,
            )
            if not batch:
                exhausted = True
                break
            metas = await self.store.metas([stream_id for stream_id, _ in batch])
            expired = []
            for (stream_id, score), meta in zip(batch, metas, strict=True):
                scanned += 1
                last = int(score)
                if not meta:
                    expired.append(stream_id)
                elif status is None or meta.get("status") == status.value:
                    found.append((stream_id, meta))
                    if len(found) == limit:
                        break
            if expired:
                await self.redis.zrem(self.keys.index, *expired)
            upper = f"({last}"
        if last is not None and not exhausted:
            exhausted = await self.redis.zcount(self.keys.index, "-inf", f"({last}") == 0
        readers = await self._reader_entries([stream_id for stream_id, _ in found])
        durables = await self._durable_summaries(found)
        streams = [
            self.summary(stream_id, meta, len(live), durable)
            for (stream_id, meta), live, durable in zip(found, readers, durables, strict=True)
        ]
        return streams, None if exhausted or last is None else str(last)

    async def detail(self, stream_id: str) -> dict[str, Any] | None:
        meta = await self.store.meta(stream_id)
        if meta is None:
            return None
        (entries,) = await self._reader_entries([stream_id])
        readers = [
            {
                "gateway": e["gateway"],
                "offset": e["offset"],
                "since": e["since"],
                "lag": await self._lag(stream_id, e["offset"]),
            }
            for e in entries
        ]
        path = durable_path(stream_id, meta)
        durable = None
        if path is not None:
            durable = await durable_inspection.detail_fields(self.redis, self.keys, stream_id, path)
        detail = self.summary(stream_id, meta, len(readers), durable)
        first_token_at = float(meta["first_token_at"]) if meta.get("first_token_at") else None
        detail.update(
            readers=readers,
            worker=meta.get("worker"),
            attempts=int(meta.get("attempts", "0")),
            bytes=await self._bytes(stream_id),
            first_token_at=first_token_at,
            time_to_first_token_s=_ttft(detail["started_at"], first_token_at),
            tokens_per_s=_rate(detail, first_token_at),
        )
        return detail

    async def _lag(self, stream_id: str, offset: str) -> int:
        """The entries after ``offset``, counted (not decoded: a durable stream's may be any
        bytes)."""
        lower = "-" if offset == "0-0" else f"({offset}"
        ahead = await self.redis.execute_command(  # type: ignore[no-untyped-call]
            "XRANGE",
            self.keys.events(stream_id),
            lower,
            "+",
            "COUNT",
            LAG_COUNT_CAP,
            **{NEVER_DECODE: True},
        )
        return len(ahead)

    async def _bytes(self, stream_id: str) -> int:
        total = 0
        for key in self.keys.all_of(stream_id):
            total += await self.redis.memory_usage(key) or 0
        return total

    async def events(self, stream_id: str, after: str, count: int) -> list[dict[str, Any]]:
        """A generation's events (a durable stream's: ``durable_inspection.events``)."""
        return [event.as_dict() for event in await self.store.read(stream_id, after, count)]

    async def purge(self, stream_id: str) -> int:
        """Delete every key of the stream; its readers end, its worker is fenced off (a
        durable stream: ``durable_inspection.purge``)."""
        meta = await self.store.meta(stream_id)
        if meta is not None and durable_path(stream_id, meta) is not None:
            return await durable_inspection.purge(self.redis, self.keys, self.durable, stream_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(*self.keys.all_of(stream_id))
            pipe.zrem(self.keys.index, stream_id)
            deleted, _ = await pipe.execute()
        return int(deleted)

    async def system(self) -> dict[str, Any]:
        now = time.time()
        workers = await alive(self.redis, self.keys.workers)
        gateways = await alive(self.redis, self.keys.gateways)
        server = await self.redis.info("server")
        memory = await self.redis.info("memory")
        return {
            "queue_depth": await self.queue.depth(),
            "jobs_in_progress": sum(int(w.get("jobs", 0)) for w in workers.values()),
            "workers": [
                {
                    "id": wid,
                    "jobs": w.get("jobs", 0),
                    "upstream": w.get("upstream"),
                    "last_heartbeat": w["seen"],
                    "age_s": round(now - w["seen"], 3),
                }
                for wid, w in sorted(workers.items())
            ],
            "gateways": [
                {
                    "id": gid,
                    "readers": g.get("readers", 0),
                    "last_heartbeat": g["seen"],
                    "age_s": round(now - g["seen"], 3),
                }
                for gid, g in sorted(gateways.items())
            ],
            "redis": {
                "version": server.get("redis_version"),
                "used_memory": memory.get("used_memory"),
                "used_memory_human": memory.get("used_memory_human"),
            },
        }


def _ttft(started_at: float | None, first_token_at: float | None) -> float | None:
    if started_at is None or first_token_at is None:
        return None
    return round(first_token_at - started_at, 4)


def _rate(detail: dict[str, Any], first_token_at: float | None) -> float | None:
    """Tokens per second since the first token: the upstream's count once finished."""
    if first_token_at is None:
        return None
    end = detail["finished_at"] or time.time()
    usage = detail["usage"] or {}
    tokens = usage.get("completion_tokens") or detail["token_events"]
    elapsed = end - first_token_at
    return round(tokens / elapsed, 2) if elapsed > 0 else None
