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
from collections.abc import AsyncIterator
from typing import Any

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
        self._sending = False
        self.raw_headers = [
            (b"content-type", media_type.encode()),
            (b"cache-control", b"no-cache, no-transform"),
            # nginx and similar proxies must not buffer a live stream
            (b"x-accel-buffering", b"no"),
            *((k.lower().encode(), v.encode()) for k, v in (headers or {}).items()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The body is sent from this task; one listener task cancels it if the client leaves
        # while it is being sent (and only then: the flag is set with no await in between).
        sending = asyncio.current_task()
        assert sending is not None
        self._sending = True
        listener = asyncio.create_task(self._cancel_on_disconnect(receive, sending))
        try:
            await self._send_body(send)
        except asyncio.CancelledError:
            client_left = listener.done() and not listener.cancelled()
            if not client_left or sending.uncancel() > 0:
                raise  # cancelled from outside (shutdown), not by our listener
        except OSError:
            pass  # the client went away mid-write, which is not our failure
        finally:
            self._sending = False
            listener.cancel()
            await _aclose(self.stream)

    async def _cancel_on_disconnect(self, receive: Receive, sending: asyncio.Task[Any]) -> None:
        message: Message = {"type": ""}
        while message["type"] != "http.disconnect":
            message = await receive()
        if self._sending:
            sending.cancel()

    async def _send_body(self, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        try:
            async for chunk in self.stream:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except RedisError as exc:
            # The headers are sent: no error status is possible any more. End the body;
            # the client reconnects and resumes from its last offset.
            log.warning("ending a stream response early: Redis failed: %s", exc)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _aclose(body: AsyncIterator[bytes]) -> None:
    aclose = getattr(body, "aclose", None)
    if aclose is not None:
        await aclose()
