"""Refuse request bodies over ``TOKENRELAY_MAX_BODY_BYTES`` before reading them whole."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import error_response


class BodyLimit:
    """ASGI middleware: 413 on a too-large ``Content-Length`` before the body is read, or
    as soon as a streamed (chunked) body passes the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _message(self) -> str:
        return f"the request body exceeds {self.max_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and (
                not value.isdigit() or int(value) > self.max_bytes
            ):
                response = error_response(413, "payload_too_large", self._message(),
                                          headers={"Connection": "close"})
                await response(scope, receive, send)
                return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # an HTTPException passes FastAPI's body parsing untouched
                    raise HTTPException(413, self._message())
            return message

        await self.app(scope, limited_receive, send)
