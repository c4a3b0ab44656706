"""What the admin view reads: the stream index, readers and their lag, the live processes."""

from __future__ import annotations

import json
import time
from typing import Any

from shared.presence import alive
from shared.queue import JobQueue
from shared.status import Status, StreamStatus
from shared.store import StreamStore

SCAN_BUDGET_PER_ITEM = 10
"""A filtered listing looks at most this many index entries per item asked for, then hands
back a cursor, so one call stays cheap however rare the status looked for."""

LAG_COUNT_CAP = 10_000


class Inspector:
    def __init__(self, store: StreamStore, queue: JobQueue) -> None:
        self.store = store
        self.redis = store.redis
        self.keys = store.keys
        self.queue = queue

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
    def summary(stream_id: str, meta: dict[str, str], readers: int) -> dict[str, Any]:
        status = StreamStatus.from_meta(stream_id, meta)
        token_events = status.event_count - (1 if status.status.is_final else 0)
        return {**status.model_dump(), "readers": readers, "token_events": token_events}

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
        streams = [
            self.summary(stream_id, meta, len(live))
            for (stream_id, meta), live in zip(found, readers, strict=True)
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
        detail = self.summary(stream_id, meta, len(readers))
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
        lower = "-" if offset == "0-0" else f"({offset}"
        ahead = await self.redis.xrange(self.keys.events(stream_id), min=lower, count=LAG_COUNT_CAP)
        return len(ahead)

    async def _bytes(self, stream_id: str) -> int:
        total = 0
        for key in self.keys.all_of(stream_id):
            total += await self.redis.memory_usage(key) or 0
        return total

    async def events(self, stream_id: str, after: str, count: int) -> list[dict[str, Any]]:
        return [event.as_dict() for event in await self.store.read(stream_id, after, count)]

    async def purge(self, stream_id: str) -> int:
        """Delete every key of the stream; its readers end, its worker is fenced off."""
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
