"""Live reads of a durable stream: long-poll and SSE, woken through the process's hub (one
pub/sub connection for every reader; no reader holds a blocking Redis read).

A write publishes the stream's new tail; the hub bumps the stream's topic; every waiting
reader reads again from its own offset. A lost notification only delays a reader until the
watchdog's next keep-alive wake-up (at most ``ping_interval_s``).
"""

from __future__ import annotations

import asyncio
import base64
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from functools import partial

import orjson

from gateway.durable import offsets
from gateway.durable.protocol import is_json, json_array, sse_text
from gateway.durable.store import Snapshot
from gateway.hub import Topic

CURSOR_EPOCH_S = 1728432000.0
"""The protocol's cursor epoch: 2024-10-09T00:00:00Z."""
CURSOR_INTERVAL_S = 20


def cursor(echoed: str | None) -> str:
    """The ``Stream-Cursor`` of a live response: the current 20-second interval since the
    protocol's epoch, and strictly beyond the cursor the client echoed (by a random 1 to
    3600 seconds' worth of intervals) so that a CDN's cached answer never comes back."""
    interval = int((time.time() - CURSOR_EPOCH_S) // CURSOR_INTERVAL_S)
    if echoed is not None and echoed.isascii() and echoed.isdigit() and len(echoed) <= 15:
        previous = int(echoed)
        if previous >= interval:
            jitter = random.randint(1, 3600) // CURSOR_INTERVAL_S
            interval = previous + max(1, jitter)
    return str(interval)


Read = Callable[[str], Awaitable[Snapshot | None]]
"""Reads the stream after an entry id (None: it is gone)."""


async def wait_for_data(topic: Topic, read: Read, after: str, timeout_s: float) -> Snapshot | None:
    """The first read after ``after`` that has messages or finds the stream closed, or the
    last empty one after ``timeout_s``; None if the stream is gone."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        version, keepalives = topic.version, topic.keepalives
        snapshot = await topic.shared(after, partial(read, after))
        if snapshot is None or snapshot.messages or snapshot.closed or topic.draining:
            return snapshot  # (draining: this gateway stops; the client polls another)
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return snapshot
        with suppress(TimeoutError):
            async with asyncio.timeout(remaining):
                await topic.wait_past(version, keepalives)


_LINE_BREAK = re.compile(rb"\r\n|\r|\n")


def sse_data(content_type: str, messages: list[bytes]) -> bytes:
    """One SSE ``data`` event of messages: a JSON array for JSON streams, the text for
    ``text/*``, base64 for anything else. Every line break in the payload starts a new
    ``data:`` line, so no payload can end the event or forge another."""
    if is_json(content_type):
        payload = json_array(messages)
    elif sse_text(content_type):
        payload = b"".join(messages)
    else:
        payload = base64.b64encode(b"".join(messages))
    lines = _LINE_BREAK.split(payload)
    return b"event: data\n" + b"".join(b"data:" + line + b"\n" for line in lines) + b"\n"


def sse_control(snapshot: Snapshot, entry_id: str, cursor: str) -> bytes:
    """The ``control`` event after the message ``entry_id`` (or of a reader there): its
    offset, and whether that is the tail (``upToDate``) of a closed stream (``streamClosed``,
    which takes the cursor's place)."""
    at_tail = entry_id == snapshot.tail
    control: dict[str, object] = {"streamNextOffset": offsets.from_entry_id(entry_id)}
    if snapshot.closed and at_tail:
        control["streamClosed"] = True
    else:
        control["streamCursor"] = cursor
    if at_tail:
        control["upToDate"] = True
    return b"event: control\ndata:" + orjson.dumps(control) + b"\n\n"


async def _frames(
    topic: Topic, read: Read, after: str, content_type: str, echoed_cursor: str | None
) -> tuple[Snapshot | None, bytes]:
    """The read after ``after`` and its SSE frames, written once for one write: every
    message's ``data`` event, each followed by its ``control``."""
    snapshot = await topic.shared(after, partial(read, after))
    if snapshot is None:
        return None, b""
    position = cursor(echoed_cursor)
    frames = [
        sse_data(content_type, [data]) + sse_control(snapshot, entry_id, position)
        for entry_id, data in snapshot.messages
    ]
    return snapshot, b"".join(frames)


async def sse_events(
    topic: Topic,
    read: Read,
    after: str,
    content_type: str,
    *,
    echoed_cursor: str | None,
    lasts_s: float,
) -> AsyncIterator[bytes]:
    """The SSE body: a ``data`` event per message, each followed by its ``control`` event;
    a first ``control`` at once if there is nothing yet. It ends after the closed
    stream's last message, when the stream is gone, or once ``lasts_s`` have passed (at the
    next message or keep-alive after them; the client reconnects from the last
    ``streamNextOffset``)."""
    deadline = asyncio.get_running_loop().time() + lasts_s
    sent_control = False
    keepalives = topic.keepalives
    while True:
        version = topic.version
        # the readers here at this offset (with the same cursor) share the read and its frames
        key = f"sse {after} {echoed_cursor}"
        render = partial(_frames, topic, read, after, content_type, echoed_cursor)
        snapshot, frames = await topic.shared(key, render)
        if snapshot is None:
            return
        if snapshot.messages:
            after = snapshot.messages[-1][0]
        at_tail = after == snapshot.tail
        if not frames and (not sent_control or (snapshot.closed and at_tail)):
            # the first answer, or the close that came without a message: say where it is
            frames = sse_control(snapshot, after, cursor(echoed_cursor))
        if frames:
            sent_control = True
            yield frames
        if (snapshot.closed and at_tail) or topic.draining:
            return  # (draining: this gateway stops; the client reconnects to another)
        if not at_tail:
            continue
        if asyncio.get_running_loop().time() >= deadline:
            return
        # No timer per reader: a quiet stream's readers are woken by the watchdog's
        # keep-alives (every ping interval), and look at the deadline then.
        await topic.wait_past(version, keepalives)
        if topic.keepalives != keepalives:  # quiet for a while: a comment keeps it open
            keepalives = topic.keepalives
            yield b": ping\n\n"
