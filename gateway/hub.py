"""The per-process notification hub: how a gateway learns that a stream grew.

Each append publishes on the stream's notify channel. A gateway process holds ONE pub/sub
connection, subscribed to the channels of the streams its clients are reading, and wakes
those clients; they then read the new events through the shared, fixed-size pool. So the
number of Redis connections does not grow with the number of clients, and no client holds
a blocking XREAD.

A notification only says "look again": readers always read from their own offset, so a
lost or duplicated notification can delay a reader (until its next periodic check) but
never make it skip or repeat an event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any, TypeVar, cast

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from gateway.batch import Batch
from shared.events import Event, EventType, StreamEvent
from shared.keys import Keys

log = logging.getLogger("tokenrelay.gateway")

T = TypeVar("T")


class Topic:
    """What the readers of one stream in this process wait on."""

    __slots__ = (
        "_changed",
        "_following",
        "_reads",
        "_shared",
        "draining",
        "gone",
        "keep_presence",
        "keepalives",
        "pushed_at",
        "readers",
        "subscribed",
        "tail",
        "version",
        "woken_at",
    )

    def __init__(self) -> None:
        self.version = 0
        """Bumped whenever the stream may have changed: readers waiting here look again."""
        self.keepalives = 0
        """Bumped when the stream has been quiet for a keep-alive interval (``keep_alive``)."""
        self.woken_at = time.monotonic()
        self.readers = 0
        self.pushed_at = 0.0
        self.gone = False
        """The stream expired or was purged: its readers end."""
        self.draining = False
        """This gateway is shutting down: its readers end their responses (and resume on
        another replica)."""
        self.keep_presence = False
        """A reader here asked for presence marks (``cancel_on_disconnect_s``)."""
        self.tail: str | None = None
        """The stream's last offset as the pushes tell it; None until the first push and after
        the notification connection was lost (pushes may have been missed)."""
        self.subscribed = asyncio.Event()
        self._changed = asyncio.Event()
        self._reads: dict[str, asyncio.Future[Batch]] = {}
        self._shared: dict[str, asyncio.Future[Any]] = {}
        # offset -> the event right after it, as the notify channel pushed it
        self._following: dict[str, StreamEvent] = {}

    def bump(self) -> None:
        self.version += 1
        self._reads.clear()  # what follows any offset may have grown
        self._shared.clear()
        self._wake()

    def keep_alive(self) -> None:
        """Wake the waiting readers with nothing new: time for each to send a keep-alive."""
        self.keepalives += 1
        self._wake()

    def _wake(self) -> None:
        self.woken_at = time.monotonic()
        self._changed.set()
        self._changed = asyncio.Event()

    def push(self, previous: str, event: StreamEvent) -> None:
        """An event just appended after ``previous``: readers there need not read Redis."""
        self._following[previous] = event
        # pushes arrive in append order: the newest is the stream's last event
        self.tail = event.offset
        self.pushed_at = time.monotonic()
        if len(self._following) > PUSHED_EVENTS_KEPT:
            del self._following[next(iter(self._following))]
        self.bump()

    def _pushed_after(self, after: str, limit: int) -> Batch | None:
        events: list[StreamEvent] = []
        while after in self._following and len(events) < limit:
            event = self._following[after]
            events.append(event)
            after = event.offset
        return Batch(events) if events else None

    async def read(self, after: str, load: Callable[[str], Awaitable[Batch]], limit: int) -> Batch:
        """The events after ``after``: from what the notify channel pushed if it has them,
        else one ``load`` shared by every reader asking for the same offset until the stream
        changes."""
        if after == self.tail:
            return Batch([])  # nothing newer was pushed, and no push was missed
        shared = self._reads.get(after)
        if shared is None:
            pushed = self._pushed_after(after, limit)
            if pushed is not None:
                shared = self._reads[after] = asyncio.get_running_loop().create_future()
                shared.set_result(pushed)
                return pushed
            shared = self._reads[after] = asyncio.ensure_future(load(after))
            shared.add_done_callback(lambda done: self._forget_failed(after, done))
        # shield: one reader leaving must not cancel the read the others wait for
        return await asyncio.shield(shared)

    def _forget_failed(self, after: str, done: asyncio.Future[Batch]) -> None:
        if (done.cancelled() or done.exception() is not None) and self._reads.get(after) is done:
            del self._reads[after]

    async def shared(self, key: str, load: Callable[[], Awaitable[T]]) -> T:
        """``load()``, run once for every reader here asking for ``key`` until the stream
        changes: a durable stream's readers at one offset share one Redis read."""
        future = self._shared.get(key)
        if future is None:
            future = self._shared[key] = asyncio.ensure_future(load())
            future.add_done_callback(lambda done: self._forget_failed_load(key, done))
        # shield: one reader leaving must not cancel the read the others wait for
        return cast(T, await asyncio.shield(future))

    def _forget_failed_load(self, key: str, done: asyncio.Future[Any]) -> None:
        if (done.cancelled() or done.exception() is not None) and self._shared.get(key) is done:
            del self._shared[key]

    async def wait_past(self, version: int, keepalives: int) -> None:
        """Wait until ``version`` or ``keepalives`` moves past the values given.

        No timer per waiting reader: the watchdog calls ``keep_alive`` on quiet topics.
        """
        if self.version == version and self.keepalives == keepalives:
            await self._changed.wait()


SUBSCRIBE_WAIT_S = 1.0
PUSHED_EVENTS_KEPT = 512
"""Per stream: enough for readers a little behind the tail; further back they read Redis."""


class Hub:
    """Fans the notify channels of one Redis out to this process's readers."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._topics: dict[str, Topic] = {}
        self.draining = False
        self._pubsub: PubSub | None = None
        self._listener: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._first_channel = asyncio.Event()
        """Set on each subscription: wakes a listener that had no channel to listen to."""

    def drain(self) -> None:
        """Shutting down: every reader ends its response now, without a terminal event, so
        its client reconnects (to another replica) and resumes from its last offset."""
        self.draining = True
        for topic in self._topics.values():
            topic.draining = True
            topic.bump()

    @property
    def watched(self) -> int:
        return len(self._topics)

    def topics(self) -> list[tuple[str, Topic]]:
        """The streams this process has readers for, now."""
        return list(self._topics.items())

    async def start(self) -> None:
        self._pubsub = self._redis.pubsub()
        self._listener = asyncio.create_task(self._listen(), name="hub listener")

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with suppress(asyncio.CancelledError):
                await self._listener
        if self._pubsub is not None:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]

    @asynccontextmanager
    async def watch(self, stream_id: str) -> AsyncIterator[Topic]:
        """Be woken whenever ``stream_id`` grows, for as long as the context lasts.

        Returns once Redis confirmed the subscription, so a reader that reads *after*
        entering cannot miss an append. (Should the confirmation be slow, it goes on after
        ``SUBSCRIBE_WAIT_S``; its periodic re-read covers the gap.)
        """
        topic = self._topics.get(stream_id)
        if topic is None:
            topic = self._topics[stream_id] = Topic()
            topic.draining = self.draining
            await self._subscribe(stream_id)
        topic.readers += 1
        try:
            with suppress(TimeoutError):
                async with asyncio.timeout(SUBSCRIBE_WAIT_S):
                    await topic.subscribed.wait()
            yield topic
        finally:
            topic.readers -= 1
            if topic.readers == 0 and self._topics.get(stream_id) is topic:
                del self._topics[stream_id]
                await self._unsubscribe(stream_id)

    async def _subscribe(self, stream_id: str) -> None:
        assert self._pubsub is not None
        try:
            async with self._lock:
                await self._pubsub.subscribe(self._keys.notify(stream_id))
            self._first_channel.set()  # the listener may be idle: its confirmation comes now
        except RedisError as exc:
            # The reader still polls; the listener resubscribes on reconnect.
            log.warning("subscribe to stream=%s failed: %s", stream_id, exc)

    async def _unsubscribe(self, stream_id: str) -> None:
        assert self._pubsub is not None
        with suppress(RedisError):
            async with self._lock:
                await self._pubsub.unsubscribe(self._keys.notify(stream_id))

    async def _listen(self) -> None:
        assert self._pubsub is not None
        while True:
            self._first_channel.clear()
            if not self._pubsub.subscribed:
                # nothing to listen to (listen() would end at once): until a reader subscribes
                with suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._first_channel.wait()
                continue
            try:
                # Blocking reads, which end when the last channel is unsubscribed: the
                # connection has no socket timeout, so a message costs no timer (a read
                # with a timeout costs a timer set and cancelled, about a tenth of this
                # process's CPU per event when every token is an event).
                async for message in self._pubsub.listen():
                    self._dispatch(message)
            except (RedisError, OSError) as exc:
                log.warning("notification connection lost (%s); readers fall back to polling", exc)
                self._wake_all()
                await asyncio.sleep(0.5)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind != "message" and kind != "subscribe":
            return
        topic = self._topics.get(self._keys.stream_of(message["channel"]))
        if topic is None:
            return
        if kind == "subscribe":
            topic.subscribed.set()
            return
        parts = message["data"].split(" ", 3)
        if len(parts) == 4:
            previous, offset, event_type, data = parts
            topic.push(previous, StreamEvent(offset, Event(EventType(event_type), data)))
        else:  # a durable stream's: its new tail (or "deleted"), no event riding along
            topic.bump()

    def _wake_all(self) -> None:
        """After a lost connection: pushes may have been missed, so readers read Redis."""
        for topic in self._topics.values():
            topic.tail = None
            topic.bump()
