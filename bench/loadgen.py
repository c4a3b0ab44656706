"""A light load generator: HTTP/1.1 and SSE on raw asyncio streams (run it under uvloop).

No HTTP library, so thousands of readers in one process leave the CPU to the system under
test. A reader sends one request, parses the response head, the chunked body and the SSE
frames as they come, and hands each frame to a callback with the time (``time.time_ns()``)
its chunk was read:

- ``read_relay``: ``GET /v1/streams/{id}/events`` on a gateway;
- ``read_direct``: a streaming chat completion straight from the mock model (no relay).

With the mock's ``stamp=1`` option every token's text is `` t<send time in ns>``; a
``Tally`` turns the frames of many readers into per-token latencies.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

# (event type, id, data, time the bytes were read) of one SSE frame; a comment (a keep-alive
# such as ``: ping``) comes as event ``COMMENT`` with the comment's text as data
OnFrame = Callable[[bytes, bytes, bytes, int], None]

COMMENT = b":"
STAMP = re.compile(rb" t(\d+)")
_LIMIT = 1 << 20  # StreamReader buffer: a chunk of a fast stream may be large


class HttpError(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body[:200]!r}")
        self.status = status


def _request(method: str, path: str, port: int, headers: dict[str, str], body: Any) -> bytes:
    payload = b"" if body is None else json.dumps(body).encode()
    lines = [f"{method} {path} HTTP/1.1", f"host: 127.0.0.1:{port}", "connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body is not None:
        lines += ["content-type: application/json", f"content-length: {len(payload)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


async def _head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    status_line, *lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split(" ", 2)[1]), headers


async def _body(reader: asyncio.StreamReader, headers: dict[str, str]) -> AsyncIterator[bytes]:
    """The response body as it arrives: chunked, by Content-Length, or until EOF."""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            yield (await reader.readexactly(size + 2))[:-2]
    elif "content-length" in headers:
        yield await reader.readexactly(int(headers["content-length"]))
    else:
        while data := await reader.read(_LIMIT):
            yield data


async def request(
    port: int,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: Any = None,
) -> tuple[int, bytes]:
    """One request on a fresh connection: (status, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=_LIMIT)
    try:
        writer.write(_request(method, path, port, headers or {}, body))
        status, head = await _head(reader)
        return status, b"".join([chunk async for chunk in _body(reader, head)])
    finally:
        writer.close()


def _frame(raw: bytes) -> tuple[bytes, bytes, bytes] | None:
    """(event, id, data) of one SSE frame; (``COMMENT``, b"", text) for a comment; None for
    a bare ``retry:``."""
    if raw[:1] == COMMENT:
        return COMMENT, b"", raw[1:].strip()
    event = id_ = b""
    data: list[bytes] = []
    for line in raw.split(b"\n"):
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value
        elif name == b"id":
            id_ = value
    if not data and not event:
        return None
    return event, id_, b"\n".join(data)


async def read_sse(
    port: int,
    method: str,
    path: str,
    on_frame: OnFrame,
    *,
    headers: dict[str, str] | None = None,
    body: Any = None,
) -> None:
    """Send one request and feed every SSE frame of its response to ``on_frame``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=_LIMIT)
    try:
        writer.write(_request(method, path, port, headers or {}, body))
        status, head = await _head(reader)
        if status != 200:
            raise HttpError(status, b"".join([chunk async for chunk in _body(reader, head)]))
        pending = b""
        async for chunk in _body(reader, head):
            now = time.time_ns()
            *frames, pending = (pending + chunk).split(b"\n\n")
            for raw in frames:
                if (frame := _frame(raw)) is not None:
                    on_frame(*frame, now)
    finally:
        writer.close()


# --- tokenrelay and the mock model --------------------------------------------------------


async def create_stream(port: int, api_key: str, model: str, prompt: str) -> str:
    """``POST /v1/streams`` on a gateway; returns the new stream's ``events_url``."""
    status, body = await request(
        port,
        "POST",
        "/v1/streams",
        headers={"authorization": f"Bearer {api_key}"},
        body={"model": model, "messages": [{"role": "user", "content": prompt}]},
    )
    if status != 201:
        raise HttpError(status, body)
    events_url: str = json.loads(body)["events_url"]
    return events_url


async def read_relay(port: int, events_url: str, on_frame: OnFrame) -> None:
    """Read a stream through a gateway, from its start, until its terminal event."""
    await read_sse(port, "GET", events_url, on_frame)


async def read_direct(port: int, model: str, prompt: str, on_frame: OnFrame) -> None:
    """Read a streaming chat completion straight from the mock model (the no-relay baseline)."""
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "stream": True}
    await read_sse(port, "POST", "/v1/chat/completions", on_frame, body=body)


# --- what the readers saw -----------------------------------------------------------------


@dataclass
class Tally:
    """Tokens seen by a group of readers, with each token's latency from its mock stamp.

    ``to_redis_ns``, ``from_redis_ns``: for readers through tokenrelay, each token's latency
    split at the time in its Redis entry id (when the worker's append ran), which has 1 ms
    resolution: ±0.5 ms.
    """

    latencies_ns: list[int] = field(default_factory=list)
    to_redis_ns: list[int] = field(default_factory=list)
    from_redis_ns: list[int] = field(default_factory=list)
    per_reader: list[int] = field(default_factory=list)
    pings: list[int] = field(default_factory=list)
    """Per relay reader: keep-alive comments received."""
    digests: list[Any] = field(default_factory=list)
    """Per relay reader: a hash of the ``data`` of its token events, in order (see
    ``text_digest``), to compare with what the stream holds."""
    events: int = 0
    finished: int = 0
    errors: list[str] = field(default_factory=list)
    first_ns: int = 0
    last_ns: int = 0
    first_append_ms: int = 0
    last_append_ms: int = 0

    @property
    def tokens(self) -> int:
        return len(self.latencies_ns)

    def _tokens(self, reader: int, data: bytes, now: int) -> list[int]:
        stamps = [int(s) for s in STAMP.findall(data)]
        self.latencies_ns.extend(now - s for s in stamps)
        self.per_reader[reader] += len(stamps)
        self.first_ns = self.first_ns or now
        self.last_ns = now
        return stamps

    def relay_reader(self) -> OnFrame:
        """A new reader's callback for tokenrelay's SSE."""
        reader = len(self.per_reader)
        self.per_reader.append(0)
        self.pings.append(0)
        digest = hashlib.blake2b(digest_size=16)
        self.digests.append(digest)

        def on_frame(event: bytes, id_: bytes, data: bytes, now: int) -> None:
            if event == b"token":
                stamps = self._tokens(reader, data, now)
                digest.update(data)
                self.events += 1
                append_ms = int(id_.partition(b"-")[0])
                appended_ns = append_ms * 1_000_000 + 500_000  # the middle of that ms
                self.to_redis_ns.extend(appended_ns - s for s in stamps)
                self.from_redis_ns.extend([now - appended_ns] * len(stamps))
                self.first_append_ms = min(self.first_append_ms or append_ms, append_ms)
                self.last_append_ms = max(self.last_append_ms, append_ms)
            elif event in (b"done", b"error"):
                self.finished += 1
                if event == b"error":
                    self.errors.append(data.decode(errors="replace"))
            elif event == COMMENT and data == b"ping":
                self.pings[reader] += 1

        return on_frame

    def direct_reader(self) -> OnFrame:
        """A new reader's callback for the mock model's own SSE."""
        reader = len(self.per_reader)
        self.per_reader.append(0)

        def on_frame(event: bytes, id_: bytes, data: bytes, now: int) -> None:
            if data == b"[DONE]":
                self.finished += 1
            elif self._tokens(reader, data, now):
                self.events += 1

        return on_frame


def text_digest(token_data: list[bytes]) -> str:
    """What ``Tally.digests`` holds for a reader that received exactly these token events."""
    digest = hashlib.blake2b(digest_size=16)
    for data in token_data:
        digest.update(data)
    return digest.hexdigest()
