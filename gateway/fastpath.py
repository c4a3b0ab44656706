"""Stream reads served beneath the framework's per-request layers.

A read lives for minutes, a gateway holds thousands, and each sends every event of its
stream. For the whole life of a request FastAPI and Starlette keep their layers alive — the
route's closures, two ``AsyncExitStack``s, exception-handling wrappers around ``send`` —
about 12 KB per reader (``python -m bench.memory``) and a few calls per event sent. So
this middleware recognises ``GET /v1/streams/{id}/events`` and answers it itself, with the
same code (``gateway.api.read_events``) and the same error answers (``gateway.errors``).
Requests with a parameter over its length limit go on to the app, whose validation
answers them; so does everything else.
"""

from __future__ import annotations

import re

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway import errors
from gateway.api import EVENTS_HEADER_LIMITS, EVENTS_PATH, EVENTS_QUERY_LIMITS, read_events

_EVENTS = re.compile("^" + EVENTS_PATH.replace("{stream_id}", "([^/]+)") + "$")
_HEADER_LIMITS = {name.encode(): limit for name, limit in EVENTS_HEADER_LIMITS.items()}


class StreamReads:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _EVENTS.match(scope["path"]) if scope["type"] == "http" else None
        if match is None or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        query = request.query_params
        if not _within_limits(scope, query):
            await self.app(scope, receive, send)
            return
        try:
            response = await read_events(
                scope["app"].state.gateway,
                request,
                match[1],
                request.headers.get("last-event-id") or query.get("after"),
                query.get("format"),
                request.headers.get("accept"),
            )
        except Exception as exc:
            answer = errors.handled(request, exc)
            if answer is None:
                raise  # a bug: the app's outermost layer answers 500
            response = answer
        del request, query  # nothing of the request outlives the response's start
        await response(scope, receive, send)


def _within_limits(scope: Scope, query: QueryParams) -> bool:
    for name, value in scope["headers"]:
        if len(value) > _HEADER_LIMITS.get(name, len(value)):
            return False
    return all(len(query.get(name) or "") <= limit for name, limit in EVENTS_QUERY_LIMITS.items())
