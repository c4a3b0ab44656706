"""An ASGI streaming response that notices a client leaving even while it sends nothing.

Starlette's ``StreamingResponse`` only learns of a disconnect when a write fails, which for
an idle stream is the next keep-alive, seconds away. Here the body is sent from the
request's own task while one small listener task waits for ``http.disconnect`` and
cancels it, so a reader's resources (its subscription, its presence) are released as soon
as the client is gone. (One task per reader besides the server's: memory per reader.)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from redis.exceptions import RedisError
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from shared import metrics
from shared.background import Background

log = logging.getLogger("tokenrelay.gateway")

SEND_SLICE_BYTES = 64 * 1024


class EventStreamResponse(Response):
    def __init__(
        self,
        body: AsyncIterator[bytes],
        media_type: str,
        headers: dict[str, str] | None = None,
        stuck_sends: StuckSends | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.stream = body
        self.status_code = 200
        self.background = None
        self.raw_headers = [
            (b"content-type", media_type.encode()),
            (b"cache-control", b"no-cache, no-transform"),
            # nginx and similar proxies must not buffer a live stream
            (b"x-accel-buffering", b"no"),
            *((k.lower().encode(), v.encode()) for k, v in (headers or {}).items()),
        ]
        self._stuck_sends = stuck_sends
        self._on_close = on_close
        self._task: asyncio.Task[Any] | None = None
        self._sending = False
        self.send_since = 0.0
        """When the send in progress began (0: none): a client that stopped reading blocks it."""
        self.cut_because: str | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The body is sent from this task; it is cancelled (``cut``) if the client leaves, or
        # stops reading for longer than the send timeout, while the body is being sent (and
        # only then: the flag is set with no await in between).
        self._task = asyncio.current_task()
        assert self._task is not None
        self._sending = True
        listener = asyncio.create_task(self._cut_on_disconnect(receive))
        if self._stuck_sends is not None:
            self._stuck_sends.watch(self)
        try:
            await self._send_body(send)
        except asyncio.CancelledError:
            if self.cut_because is None or self._task.uncancel() > 0:
                raise  # cancelled from outside (shutdown), not by us
        except OSError:
            pass  # the client went away mid-write, which is not our failure
        finally:
            self._sending = False
            if self._stuck_sends is not None:
                self._stuck_sends.forget(self)
            listener.cancel()
            if self._on_close is not None:
                self._on_close()
            await _aclose(self.stream)

    def cut(self, reason: str) -> None:
        """Stop sending, now (the connection is closed: the response is left incomplete)."""
        if self._sending and self.cut_because is None and self._task is not None:
            self.cut_because = reason
            metrics.responses_cut.labels(reason).inc()
            self._task.cancel()

    async def _cut_on_disconnect(self, receive: Receive) -> None:
        message: Message = {"type": ""}
        while message["type"] != "http.disconnect":
            message = await receive()
        self.cut("client left")

    async def _send_body(self, send: Send) -> None:
        await self._timed_send(
            send,
            {
                "type": "http.response.start",
                "status": self.status_code,
                "headers": self.raw_headers,
            },
        )
        try:
            async for chunk in self.stream:
                if len(chunk) <= SEND_SLICE_BYTES:
                    await self._send_chunk(send, chunk)
                    continue
                # a reader far behind gets batches of up to READ_BATCH events at once: sent in
                # slices, one at a time, so a client that stops reading holds one slice beyond
                # the write buffer
                for at in range(0, len(chunk), SEND_SLICE_BYTES):
                    await self._send_chunk(send, chunk[at : at + SEND_SLICE_BYTES])
        except RedisError as exc:
            # The headers are sent: no error status is possible any more. End the body;
            # the client reconnects and resumes from its last offset.
            log.warning("ending a stream response early: Redis failed: %s", exc)
        await self._timed_send(
            send, {"type": "http.response.body", "body": b"", "more_body": False}
        )

    async def _send_chunk(self, send: Send, chunk: bytes) -> None:
        await self._timed_send(
            send, {"type": "http.response.body", "body": chunk, "more_body": True}
        )

    async def _timed_send(self, send: Send, message: Message) -> None:
        # uvicorn's send returns at once unless the client's socket is full (then it waits
        # for it to drain, holding at most its write buffer): that wait is what is timed
        self.send_since = time.monotonic()
        await send(message)
        self.send_since = 0.0


class StuckSends(Background):
    """Cuts responses whose client stopped reading: once a second, each response whose
    current send has waited more than ``timeout_s`` is ended and its connection closed, so a
    frozen or half-open client holds neither memory nor a reader for long. (One task per
    process, not a timer per send.)"""

    task_name = "stuck sends"

    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self.timeout_s = timeout_s
        self._responses: set[EventStreamResponse] = set()

    def watch(self, response: EventStreamResponse) -> None:
        self._responses.add(response)

    def forget(self, response: EventStreamResponse) -> None:
        self._responses.discard(response)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for response in list(self._responses):
                if response.send_since and now - response.send_since > self.timeout_s:
                    log.warning(
                        "cutting a stream response: its client read nothing for %.0f s",
                        self.timeout_s,
                    )
                    response.cut("send timeout")


async def _aclose(body: AsyncIterator[bytes]) -> None:
    aclose = getattr(body, "aclose", None)
    if aclose is not None:
        await aclose()
