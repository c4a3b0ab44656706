"""Riding out a short Redis outage (a restart, a failover) instead of failing the work.

Only for calls that are safe to send twice: an append carries its sequence number (sent
again, it is not applied again), ending a stream is refused once it has ended, renewing a
lease just renews it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import ConnectionError, TimeoutError

log = logging.getLogger("tokenrelay.redis")

T = TypeVar("T")

UNREACHABLE = (ConnectionError, TimeoutError)
"""Redis did not answer (``BusyLoadingError``, a restarted Redis still loading, is one)."""


async def until_redis_answers(call: Callable[[], Awaitable[T]], within_s: float, what: str) -> T:
    """``call()``, again with backoff while Redis is unreachable, for up to ``within_s``."""
    deadline = time.monotonic() + within_s
    delay = 0.05
    while True:
        try:
            return await call()
        except UNREACHABLE as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("%s: Redis unreachable (%s); trying again in %.2f s", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
