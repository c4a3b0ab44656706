"""An ASGI streaming response that notices a client leaving even while it sends nothing.

Starlette's ``StreamingResponse`` only learns of a disconnect when a write fails, which for
an idle stream is the next keep-alive, seconds away. Here the body and a disconnect
listener run in one task group: whichever ends first cancels the other, so a reader's
resources (its subscription, its presence) are released as soon as the client is gone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from redis.exceptions import RedisError
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

log = logging.getLogger("tokenrelay.gateway")


class EventStreamResponse(Response):
    def __init__(
        self, body: AsyncIterator[bytes], media_type: str, headers: dict[str, str] | None = None
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def stream() -> None:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            try:
                async for chunk in self.stream:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except RedisError as exc:
                # The headers are sent: no error status is possible any more. End the body;
                # the client reconnects and resumes from its last offset.
                log.warning("ending a stream response early: Redis failed: %s", exc)
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def until_disconnect() -> None:
            message: Message = {"type": ""}
            while message["type"] != "http.disconnect":
                message = await receive()

        streaming = asyncio.create_task(stream())
        listener = asyncio.create_task(until_disconnect())
        try:
            await asyncio.wait((streaming, listener), return_when=asyncio.FIRST_COMPLETED)
        finally:
            streaming.cancel()
            listener.cancel()
            await asyncio.gather(streaming, listener, return_exceptions=True)
            await _aclose(self.stream)
        if streaming.done() and not streaming.cancelled():
            error = streaming.exception()
            # OSError: the client went away mid-write, which is not our failure
            if error is not None and not isinstance(error, OSError):
                raise error


async def _aclose(body: AsyncIterator[bytes]) -> None:
    aclose = getattr(body, "aclose", None)
    if aclose is not None:
        await aclose()
