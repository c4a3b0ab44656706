"""Coalescing appends: the stream's parts go to Redis as fast as it takes them, never slower.

While one append is in flight, the parts that arrive meanwhile gather in a buffer and go
out together in the next append: consecutive text as one ``token`` event, consecutive
fragments of a choice merged into one ``delta`` event where a client would accumulate them
alike (``producer.chunks.merge_into``), several events in one call. An idle stream
therefore appends every part at once (no added latency), and a fast one batches by itself
(fewer entries, fewer wake-ups for readers). ``linger_s`` optionally waits a little before
each append to batch even more.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from functools import partial
from types import TracebackType
from typing import Any

from producer.chunks import Opening, Part, merge_into
from shared.events import Event
from shared.metrics import tokens_appended
from shared.retrying import until_redis_answers
from shared.store import StreamStore

MAX_EVENTS_PER_APPEND = 64


class Pending:
    """The parts not yet appended, coalesced: runs of text (their pieces) and ``delta``
    fields merged where they can be (``merge_into``), in order."""

    def __init__(self, max_chars: int) -> None:
        self._max_chars = max_chars
        self._items: list[list[str] | dict[str, Any] | Event] = []
        self._parts = 0

    def __bool__(self) -> bool:
        return bool(self._items)

    def add(self, parts: list[Part]) -> None:
        items, tokens = self._items, 0
        for part in parts:
            tail = items[-1] if items else None
            if isinstance(part, list):
                tokens += len(part)
                if type(tail) is list:
                    tail.extend(part)
                else:
                    items.append(part)
            elif isinstance(part, Event):  # a Responses event: as it is, never merged
                tokens += 1
                items.append(part)
            elif isinstance(part, Opening):  # a role, no token: not counted
                items.append(part)
            else:
                tokens += 1
                if not (type(tail) is dict and merge_into(tail, part)):
                    items.append(part)
        self._parts += tokens

    def take(self, max_events: int = MAX_EVENTS_PER_APPEND) -> list[Event]:
        """The first events, up to ``max_events``: text in events of up to ``max_chars``
        (a single longer piece goes whole)."""
        events: list[Event] = []
        items = self._items
        while items and len(events) < max_events:
            item = items[0]
            if isinstance(item, Event):
                events.append(item)
                del items[0]
                continue
            if isinstance(item, dict):
                events.append(Event.delta(item))
                del items[0]
                continue
            taken, size = 0, 0
            for piece in item:
                if taken and size + len(piece) > self._max_chars:
                    break
                taken += 1
                size += len(piece)
            events.append(Event.token("".join(item[:taken])))
            del item[:taken]
            if not item:
                del items[0]
        if not items:  # counted once per append, not once per part
            tokens_appended.inc(self._parts)
            self._parts = 0
        return events


class Appender:
    """Appends parts to one stream, in order, as its owner (the lease holder).

    Use as an async context manager: leaving it normally appends what is still buffered;
    leaving it on an exception drops the buffer. Errors of a background append (``Fenced``,
    ``StreamFull``, Redis errors) are raised by the next ``add`` or on leaving. A Redis that
    does not answer is retried for ``redis_retry_s`` (each append has its number in the
    stream, so one sent again is not applied twice), while new parts keep gathering.
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
        self._redis_retry_s = redis_retry_s
        self._linger_s = linger_s
        self._on_first = on_first
        self._pending = Pending(max_chars)
        self._completion: str | None = None
        """The stream's ``completion`` (JSON) to store with the next append, if it changed."""
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

    @property
    def completion(self) -> str | None:
        """The ``completion`` not yet stored by an append (for the terminal event's call)."""
        return self._completion

    def set_completion(self, completion: dict[str, Any]) -> None:
        self._completion = json.dumps(completion, ensure_ascii=False, separators=(",", ":"))

    def add(self, parts: list[Part]) -> None:
        if self._error is not None:
            raise self._error
        self._pending.add(parts)
        self._wake.set()

    async def _run(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self._linger_s and not self._closing:
                    await asyncio.sleep(self._linger_s)
                while self._pending:
                    events, seq = self._pending.take(), self.appended_events + 1
                    completion, self._completion = self._completion, None
                    await until_redis_answers(
                        partial(
                            self._store.append,
                            self._stream_id,
                            self._owner,
                            events,
                            seq,
                            completion=completion,
                        ),
                        self._redis_retry_s,
                        f"stream={self._stream_id} append",
                    )
                    first = self.appended_events == 0
                    self.appended_events += len(events)
                    if first and self._on_first is not None:
                        self._on_first()
                if self._closing:
                    return
        except Exception as exc:
            self._error = exc
