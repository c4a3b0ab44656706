"""Durable streams served beneath the framework's per-request layers.

An append is a small request with a smaller answer, and an application makes many: FastAPI's
routing, its dependency solving and Starlette's wrappers cost about a third of one
(``python -m bench.durable appends``, py-spy). So, as ``gateway/fastpath.py`` does for
generation reads, this middleware calls the handlers of ``writes.py`` and ``reads.py``
itself, with the same error answers (``gateway.errors``). The FastAPI routes stay: they
describe the API (``/docs``) and answer any method the handlers here do not take.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway import errors
from gateway.durable import reads, writes
from gateway.durable.access import PREFIX

_HANDLERS: dict[str, Callable[[str, Request], Awaitable[Response]]] = {
    "PUT": writes.create,
    "POST": writes.append,
    "DELETE": writes.delete,
    "GET": reads.read,
    "HEAD": reads.head,
}
_PATHS = PREFIX + "/"


class DurableStreamRequests:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = _HANDLERS.get(scope.get("method", "")) if scope["type"] == "http" else None
        if handler is None or not scope["path"].startswith(_PATHS):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await handler(scope["path"][len(_PATHS) :], request)
        except Exception as exc:
            answer = errors.handled(request, exc)
            if answer is None:
                raise  # a bug: the app's outermost layer answers 500
            response = answer
        del request  # nothing of the request outlives the response's start
        await response(scope, receive, send)
