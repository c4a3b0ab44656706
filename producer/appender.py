"""Coalescing appends: text deltas go to Redis as fast as it takes them, never slower.

While one append is in flight, the deltas that arrive meanwhile gather in a buffer and go
out together in the next append. An idle stream therefore appends every delta at once (no
added latency), and a fast one batches by itself (fewer entries, fewer wake-ups for
readers). ``linger_s`` optionally waits a little before each append to batch even more.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from types import TracebackType

from shared.events import Event
from shared.metrics import tokens_appended
from shared.retrying import until_redis_answers
from shared.store import StreamStore


class Appender:
    """Appends text to one stream, in order, as its owner (the lease holder).

    Use as an async context manager: leaving it normally appends what is still buffered;
    leaving it on an exception drops the buffer. Errors of a background append (``Fenced``,
    ``StreamFull``, Redis errors) are raised by the next ``add`` or on leaving. A Redis that
    does not answer is retried for ``redis_retry_s`` (each append has its number in the
    stream, so one sent again is not applied twice), while new deltas keep gathering.
    """

    def __init__(
        self,
        store: StreamStore,
        stream_id: str,
        owner: str,
        *,
        max_chars: int,
        redis_retry_s: float,
        linger_s: float = 0.0,
        on_first: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._stream_id = stream_id
        self._owner = owner
        self._max_chars = max_chars
        self._redis_retry_s = redis_retry_s
        self._linger_s = linger_s
        self._on_first = on_first
        self._buffer: list[str] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self.appended_events = 0

    async def __aenter__(self) -> Appender:
        self._task = asyncio.create_task(self._run(), name=f"append {self._stream_id}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._task is not None
        self._closing = True
        self._wake.set()
        if exc_type is None:
            await self._task
            if self._error is not None:
                raise self._error
        else:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def add(self, deltas: list[str]) -> None:
        if self._error is not None:
            raise self._error
        self._buffer.extend(deltas)
        self._wake.set()

    def _take(self) -> str:
        """Up to ``max_chars`` of the buffer (a single longer delta goes whole)."""
        taken, size = 0, 0
        for piece in self._buffer:
            if taken and size + len(piece) > self._max_chars:
                break
            taken += 1
            size += len(piece)
        text = "".join(self._buffer[:taken])
        del self._buffer[:taken]
        tokens_appended.inc(taken)  # once per append, not once per delta
        return text

    async def _run(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self._linger_s and not self._closing:
                    await asyncio.sleep(self._linger_s)
                while self._buffer:
                    event, seq = Event.token(self._take()), self.appended_events + 1
                    await until_redis_answers(
                        partial(self._store.append, self._stream_id, self._owner, event, seq),
                        self._redis_retry_s,
                        f"stream={self._stream_id} append",
                    )
                    self.appended_events = seq
                    if self.appended_events == 1 and self._on_first is not None:
                        self._on_first()
                if self._closing:
                    return
        except Exception as exc:
            self._error = exc
