"""The Chat Completions API over the streams: a generation's events as OpenAI answers them.

The answer to a create waits for the stream's first event before answering, so that an
upstream that refuses the request (its 400, 401, 429...) is answered with that status and
body, as if the client had called the upstream; after the first chunk a failure is
OpenAI's in-stream ``{"error": ...}``, with no ``[DONE]``.
"""

from __future__ import annotations

from contextlib import aclosing
from typing import Any

from starlette.responses import JSONResponse, Response

from gateway.batch import Batch
from gateway.chat_completions.protocol import ChunkEncoder
from gateway.context import Gateway
from gateway.openai_answers import answer_stream, failure_answer
from gateway.streams import meta_json, open_read
from shared.completion import CompletionSoFar


async def _completion(gw: Gateway, stream_id: str) -> dict[str, Any]:
    meta = await gw.store.meta(stream_id)
    return (meta_json(meta, "completion") if meta else None) or {}


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
    api = meta_json(reading.meta, "api") or {}
    encoder = ChunkEncoder(
        meta_json(reading.meta, "completion"), include_usage=bool(api.get("include_usage"))
    )

    async def encode(batch: Batch) -> bytes:
        if encoder.completion is None:  # stored with the first event, so there now
            encoder.set_completion(await _completion(gw, stream_id))
        return encoder.encode(batch)

    return await answer_stream(
        gw, reading, encode, created=created, label="chat.completions", headers=headers
    )


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
