"""How the OpenAI-compatible APIs answer with a stream: its events as SSE, or its failure
as OpenAI's error.

A stream that failed (its ``error`` event) is answered in OpenAI's error shape: with the
upstream's own status, body and ``Retry-After`` when the upstream refused the request before
its first chunk, else with a status made of the tokenrelay error code.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.responses import JSONResponse, Response

from gateway.batch import Batch
from gateway.context import Gateway
from gateway.errors import openai_error_type
from gateway.streams import Reading, event_stream
from shared.errors import StreamErrorCode
from shared.events import EventType

STATUS_OF_FAILURE: dict[str, int] = {
    StreamErrorCode.RATE_LIMIT_EXCEEDED: 429,
    StreamErrorCode.UPSTREAM_REJECTED: 400,
    StreamErrorCode.UPSTREAM_TIMEOUT: 504,
    StreamErrorCode.UPSTREAM_ERROR: 502,
    StreamErrorCode.PRODUCER_LOST: 503,
    StreamErrorCode.INTERNAL: 500,
}
"""The HTTP status of a generation's failure, where the upstream gave none of its own."""


def failure_status(failure: dict[str, Any], *, before_first_chunk: bool) -> int:
    """The status an OpenAI client gets for an ``error`` event's data: the upstream's own
    when it refused before the first chunk, else the failure's."""
    upstream = failure.get("upstream") or {}
    if before_first_chunk and isinstance(upstream.get("status"), int):
        status: int = upstream["status"]
        return status
    return STATUS_OF_FAILURE.get(failure.get("code", ""), 502)


def failure_error(failure: dict[str, Any], status: int) -> dict[str, Any]:
    """OpenAI's error object for an ``error`` event's data: the upstream's own when it sent
    one, else one made of the tokenrelay code."""
    upstream = failure.get("upstream") or {}
    if isinstance(upstream.get("error"), dict):
        error: dict[str, Any] = upstream["error"]
        return error
    return {
        "message": failure.get("message", ""),
        "type": openai_error_type(status),
        "param": None,
        "code": failure.get("code"),
    }


def failure_answer(
    failure: dict[str, Any], before_first_chunk: bool, headers: dict[str, str]
) -> JSONResponse:
    """A failed generation as OpenAI's error answer (``Retry-After`` where it was asked)."""
    status = failure_status(failure, before_first_chunk=before_first_chunk)
    answer_headers = dict(headers)
    wait = (failure.get("upstream") or {}).get("retry_after_s")
    if isinstance(wait, int | float):
        answer_headers["Retry-After"] = str(max(1, math.ceil(wait)))
    elif status in (429, 503):
        answer_headers["Retry-After"] = "1"
    return JSONResponse(
        {"error": failure_error(failure, status)}, status_code=status, headers=answer_headers
    )


async def answer_stream(
    gw: Gateway,
    reading: Reading,
    encode: Callable[[Batch], Awaitable[bytes]],
    *,
    created: bool,
    label: str,
    headers: dict[str, str],
) -> Response:
    """An OpenAI-compatible API's SSE answer (``gateway.streams.event_stream``). Answering
    a create (``created``), it first waits for the stream's first events, so that an
    upstream that refused the request (or any failure before the first event) is answered
    as OpenAI's error with its status; 204 if the read ended first (the gateway is shutting
    down)."""
    first = await reading.first_batch() if created else None
    if created and first is None:
        return Response(status_code=204, headers=headers)
    if first is not None and first.events[0].type is EventType.ERROR:
        return failure_answer(first.events[0].event.payload(), True, headers)
    return event_stream(gw, reading, encode, first=first, label=label, headers=headers)
