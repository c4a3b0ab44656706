"""Script calls go to Redis in pipelines: one in flight, the next gathering meanwhile.

A worker runs many generations; each appends its events one at a time, in order, and renews
its lease a few times a second. Sent one by one, every call pays redis-py's whole
per-command cost and a round trip. Here the calls wait in a queue, and a single sender sends
everything queued as one pipeline, awaits it, and then sends what gathered while it was in
flight. An idle process sends each call at once (no added latency); a busy one sends larger
pipelines, not more of them, and holds one connection. Each caller still awaits its own
result (or exception), and the calls of one caller keep their order.

A busy process also sends at most one pipeline per ``min_interval_s``: with a fast Redis,
"one in flight" alone would send a pipeline for nearly every call (10,000 a second at
10,000 tokens a second), and each costs a write and a read on both sides, which on a
loopback connection is most of a worker's CPU per token. A call made after a quiet spell
(the first token of a generation) still goes at once.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from functools import cache
from typing import Any, cast

from prometheus_client import Histogram
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript
from redis.exceptions import DataError, NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.metrics import redis_latency

_Call = tuple[str, AsyncScript, Sequence[str], Sequence[Any], "asyncio.Future[Any]"]


MIN_INTERVAL_S = 0.001
"""Between the starts of two pipelines of a busy batcher: a millisecond, the event loop's
timer resolution (uvloop's timers count whole milliseconds)."""


class ScriptBatcher:
    def __init__(self, redis: Redis, min_interval_s: float = MIN_INTERVAL_S) -> None:
        self._redis = redis
        self._min_interval_s = min_interval_s
        self._pending: list[_Call] = []
        self._sender: asyncio.Task[None] | None = None
        self._last_sent = -math.inf

    async def call(
        self, operation: str, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        """``script``'s result; ``operation`` names it in the latency metric."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((operation, script, keys, args, future))
        if self._sender is None:
            # The task starts on the next loop iteration: calls made in this one join it.
            self._sender = asyncio.create_task(self._send_all(loop), name="script batches")
        return await future

    async def _send_all(self, loop: asyncio.AbstractEventLoop) -> None:
        batch: list[_Call] = []
        try:
            while self._pending:
                wait = self._last_sent + self._min_interval_s - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                self._last_sent = loop.time()
                batch, self._pending = self._pending, []
                await self._send(batch)
        finally:  # left early only when cancelled: so are the calls it holds
            self._sender = None
            for *_, future in batch + self._pending:
                future.cancel()
            self._pending = []

    async def _send(self, batch: list[_Call]) -> None:
        started = time.perf_counter()
        try:
            results = await self._execute(batch)
        except Exception as exc:  # the connection failed: every call in it did
            results = [exc] * len(batch)
        for (_, script, keys, args, future), result in zip(batch, results, strict=True):
            if isinstance(result, NoScriptError):  # Redis lost its scripts (a restart)
                try:
                    result = await script(keys=keys, args=args)
                except Exception as exc:
                    result = exc
            if future.done():  # its caller was cancelled
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
        elapsed = time.perf_counter() - started
        for operation, *_ in batch:
            _latency(operation).observe(elapsed)

    async def _execute(self, batch: list[_Call]) -> list[Any]:
        if isinstance(self._redis, RedisCluster):
            # redis-py's cluster pipelines refuse EVALSHA: the calls go side by side instead
            # (each routed to its stream's node; one caller's calls still wait on each other)
            return await asyncio.gather(
                *(
                    self._redis.evalsha(s.sha, len(keys), *keys, *args)
                    for _, s, keys, args, _ in batch
                ),
                return_exceptions=True,
            )
        pool = self._redis.connection_pool
        connection = await pool.get_connection()
        try:
            await connection.send_packed_command(pack_evalsha(batch), check_health=False)
            return await _replies(connection, len(batch))
        except BaseException:
            await connection.disconnect()  # what is left unread of the replies goes with it
            raise
        finally:
            await pool.release(connection)


async def _replies(connection: AbstractConnection, count: int) -> list[Any]:
    """The next ``count`` replies on ``connection``, an error reply as its exception.

    One timer for them all: a read with a timeout sets and cancels a timer of its own, and
    the connection's ``socket_timeout`` is lifted for the reads and set around them instead.
    """
    timeout = connection.socket_timeout
    connection.socket_timeout = None
    results: list[Any] = []
    try:
        async with asyncio.timeout(timeout):
            for _ in range(count):
                try:
                    results.append(await connection.read_response())
                except ResponseError as exc:
                    results.append(exc)
    except TimeoutError as exc:  # as redis-py says it, so callers retry it as they would
        raise RedisTimeoutError(f"no reply from Redis within {timeout} s") from exc
    finally:
        connection.socket_timeout = timeout
    return results


def pack_evalsha(batch: Sequence[_Call]) -> bytes:
    """The calls as one buffer of RESP ``EVALSHA`` commands, as redis-py would pack them
    (``tests/test_batching.py`` compares), in about a third of its time: redis-py looks at
    each argument's type through its encoder and joins each command's pieces on its own."""
    out: list[bytes] = []
    for _, script, keys, args, _ in batch:
        items = [b"EVALSHA", script.sha.encode(), b"%d" % len(keys)]
        items += [key.encode() for key in keys]
        items += [_encode(arg) for arg in args]
        out.append(b"*%d\r\n" % len(items))
        out += [b"$%d\r\n%s\r\n" % (len(item), item) for item in items]
    return b"".join(out)


def _encode(value: Any) -> bytes:
    kind = type(value)
    if kind is str:
        encoded: bytes = value.encode()
        return encoded
    if kind is int or kind is float:
        return repr(value).encode()
    if kind is bytes:
        return cast(bytes, value)
    raise DataError(f"a script argument of type {kind.__name__}: pass str, bytes, int or float")


@cache
def _latency(operation: str) -> Histogram:
    return redis_latency.labels(operation)
