"""The Chat Completions API over the streams: a generation's events as OpenAI answers them.

The answer to a create waits for the stream's first event before answering, so that an
upstream that refuses the request (its 400, 401, 429...) is answered with that status and
body, as if the client had called the upstream; after the first chunk a failure is
OpenAI's in-stream ``{"error": ...}``, with no ``[DONE]``.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

from starlette.responses import JSONResponse, Response

from gateway.batch import Batch
from gateway.chat_completions.protocol import ChunkEncoder, failure_error, failure_status
from gateway.context import Gateway
from gateway.streaming import EventStreamResponse
from gateway.streams import open_read
from shared import metrics
from shared.completion import CompletionSoFar
from shared.events import EventType

MEDIA_TYPE = "text/event-stream; charset=utf-8"


def _json_field(meta: dict[str, str], name: str) -> Any:
    raw = meta.get(name)
    return json.loads(raw) if raw else None


async def _completion(gw: Gateway, stream_id: str) -> dict[str, Any]:
    meta = await gw.store.meta(stream_id)
    return (_json_field(meta, "completion") if meta else None) or {}


async def stream_answer(
    gw: Gateway,
    stream_id: str,
    after: str | None,
    headers: dict[str, str],
    *,
    address: str | None,
    created: bool = False,
) -> Response:
    """``stream: true`` (and its resume): chunks from ``after``, then live, then ``[DONE]``.
    Answering the create (``created``), it waits for the first event (see the module)."""
    reading = await open_read(gw, stream_id, after, address=address)
    if reading is None:
        return Response(status_code=204, headers=headers)
    api = _json_field(reading.meta, "api") or {}
    encoder = ChunkEncoder(
        _json_field(reading.meta, "completion"), include_usage=bool(api.get("include_usage"))
    )
    first: Batch | None = None
    if created:
        first = await reading.first_batch()
        if first is None:  # the gateway is shutting down
            return Response(status_code=204, headers=headers)
        if first.events[0].type is EventType.ERROR:
            return failure_answer(first.events[0].event.payload(), True, headers)
    return EventStreamResponse(
        _chunks(gw, stream_id, encoder, first, reading.batches),
        MEDIA_TYPE,
        headers=headers,
        stuck_sends=gw.stuck_sends,
        on_close=reading.release,
    )


async def _chunks(
    gw: Gateway,
    stream_id: str,
    encoder: ChunkEncoder,
    first: Batch | None,
    batches: AsyncGenerator[Batch | None],
) -> AsyncIterator[bytes]:
    delivered = metrics.events_delivered.labels("chat.completions")

    async def encoded(batch: Batch) -> bytes:
        if encoder.completion is None:  # stored with the first event, so there now
            encoder.set_completion(await _completion(gw, stream_id))
        delivered.inc(len(batch))
        return encoder.encode(batch)

    if first is not None:
        yield await encoded(first)
    async with aclosing(batches) as rest:
        async for batch in rest:
            yield b": ping\n\n" if batch is None else await encoded(batch)


async def whole_answer(
    gw: Gateway, stream_id: str, headers: dict[str, str], *, address: str | None
) -> Response:
    """``stream: false``: the ``chat.completion`` object once the generation has ended."""
    reading = await open_read(gw, stream_id, None, address=address)
    if reading is None:  # cannot happen from the beginning; read it as nothing
        return Response(status_code=204, headers=headers)
    answer, chunks = CompletionSoFar(), 0
    try:
        async with aclosing(reading.batches) as batches:
            async for batch in batches:
                for event in batch.events if batch is not None else ():
                    answer.add(event.type, event.event.payload())
                    chunks += not event.is_terminal
    finally:
        if reading.release is not None:
            reading.release()
    if answer.error is not None:
        return failure_answer(answer.error, chunks == 0, headers)
    answer.completion = await _completion(gw, stream_id)
    return JSONResponse(answer.chat_completion(), headers=headers)


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
