"""Refuse request bodies over ``TOKENRELAY_MAX_BODY_BYTES`` before reading them whole."""

from __future__ import annotations

import asyncio

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import error_response

LINGER_BYTES = 16 * 1024 * 1024
"""After a 413, at most this much more of the refused body is read and thrown away..."""

LINGER_S = 5.0
"""...for at most this long, before the connection is closed."""


class BodyLimit:
    """ASGI middleware: 413 on a too-large ``Content-Length`` before the body is read, or
    as soon as a streamed (chunked) body passes the limit.

    A server that answers and closes while the client is still uploading makes the kernel
    reset the connection, and the client loses the answer with it (most HTTP clients,
    httpx among them, send the whole body before they read). So, like nginx's lingering
    close, the 413 is sent first and the connection closed only after the rest of the body
    has been read and discarded — never kept, and only up to ``LINGER_BYTES``/``LINGER_S``.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _message(self) -> str:
        return f"the request body exceeds {self.max_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        framing = {
            name: value
            for name, value in scope.get("headers", ())
            if name in (b"content-length", b"transfer-encoding")
        }
        if scope["type"] != "http" or not framing or framing.get(b"content-length") == b"0":
            # no body (every GET, so every stream response): nothing to watch, per message
            await self.app(scope, receive, send)
            return
        refused = False  # answering 413: linger before the response completes
        body_left = True  # the client still has body to send
        length = framing.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            refused = True
            body_left = length.isdigit() and int(length) <= LINGER_BYTES

        async def lingering_send(message: Message) -> None:
            if refused and message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            elif (
                refused
                and body_left
                and message["type"] == "http.response.body"
                and not message.get("more_body", False)
            ):
                await send({**message, "more_body": True})
                await _discard_rest(receive)
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        if refused:
            response = error_response(
                413, "payload_too_large", self._message(), path=scope.get("path", "")
            )
            await response(scope, receive, lingering_send)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received, refused, body_left
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_left = message.get("more_body", False)
                if received > self.max_bytes:
                    refused = True
                    # an HTTPException passes FastAPI's body parsing untouched
                    raise HTTPException(413, self._message())
            return message

        await self.app(scope, limited_receive, lingering_send)


async def _discard_rest(receive: Receive) -> None:
    """Read the rest of the request body into the void (bounded in bytes and time)."""
    discarded = 0
    try:
        async with asyncio.timeout(LINGER_S):
            while discarded <= LINGER_BYTES:
                message = await receive()
                if message["type"] != "http.request":
                    return
                discarded += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return
    except TimeoutError:
        pass
