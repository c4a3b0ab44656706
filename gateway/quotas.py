"""Quotas that hold across gateway replicas, kept in Redis: how many streams a client may
create per minute, and how many of its generations may be queued or running at once.

A client is an API key (by a digest of it), or in demo mode an address. Each refusal is
``429 rate_limited`` with ``Retry-After``.
"""

from __future__ import annotations

import time

from gateway.auth import Principal
from shared.errors import RateLimited
from shared.settings import Settings
from shared.store import StreamStore

WINDOW_S = 60


class Quotas:
    def __init__(self, store: StreamStore, settings: Settings) -> None:
        self._store = store
        self._settings = settings

    async def admit(self, principal: Principal, stream_id: str) -> None:
        """Count a new stream against ``principal``'s quotas, or raise ``RateLimited``.

        Both counts move in one round trip (no MULTI: Redis Cluster has none across nodes;
        each key's TTL is set when it is made)."""
        per_minute = (
            self._settings.demo_creates_per_minute
            if principal.anonymous
            else self._settings.creates_per_minute
        )
        max_active = self._settings.max_active_generations
        if not (per_minute or max_active):
            return
        now = time.time()
        window = self._store.keys.rate_window(principal.name, int(now // WINDOW_S))
        active = self._store.keys.active(principal.name)
        async with self._store.redis.pipeline(transaction=False) as pipe:
            if per_minute:
                pipe.set(window, 0, ex=2 * WINDOW_S, nx=True)
                pipe.incr(window)
            if max_active:
                pipe.sadd(active, stream_id)
                pipe.expire(active, self._settings.job_timeout_s + self._settings.queued_ttl_s)
                pipe.scard(active)
            counts = await pipe.execute()
        if per_minute and counts[1] > per_minute:
            if max_active:
                await self._store.redis.srem(active, stream_id)  # type: ignore[misc]
            who = "address" if principal.anonymous else "API key"
            raise RateLimited(
                f"more than {per_minute} streams created this minute by this {who}; "
                "try again shortly",
                retry_after_s=WINDOW_S - int(now) % WINDOW_S,
            )
        if max_active:
            await self._active(principal, stream_id, max_active, listed=counts[-1])

    async def _active(self, principal: Principal, stream_id: str, limit: int, listed: int) -> None:
        """The client's streams are a set (``listed`` long, this one included), which may
        still list streams that have ended: only when it holds ``limit`` others are those
        looked up (at most ``limit`` meta lookups, in one round trip) and dropped, so a
        create costs one round trip until the client is near its limit."""
        key = self._store.keys.active(principal.name)
        redis = self._store.redis
        if listed - 1 < limit:  # fewer others than the limit, ended or not
            return
        others = sorted(await redis.smembers(key) - {stream_id})  # type: ignore[misc]
        metas = await self._store.metas(others) if others else []
        ended = [
            other
            for other, meta in zip(others, metas, strict=True)
            if meta is None or meta["status"] not in ("queued", "running")
        ]
        if ended:
            await redis.srem(key, *ended)  # type: ignore[misc]
        if len(others) - len(ended) >= limit:
            await redis.srem(key, stream_id)  # type: ignore[misc]
            raise RateLimited(
                f"{limit} generations of this client are already queued or running; "
                "wait for one to end",
                retry_after_s=1,
            )
