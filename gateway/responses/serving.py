"""The Responses API over the streams: create, read from a sequence number, the Response
object now, cancel — a generation's events as OpenAI's background mode answers them."""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing
from typing import Any

from starlette.responses import JSONResponse, Response

from gateway.batch import Batch
from gateway.context import Gateway
from gateway.openai_answers import answer_stream, failure_answer
from gateway.responses.protocol import API_NAME, ResponseEvents, response_id
from gateway.streams import meta_json, open_read
from shared import offsets
from shared.errors import InvalidInput, StreamNotFound
from shared.events import EventType

READ_PAGE = 1000


def _api(meta: dict[str, str]) -> dict[str, Any]:
    api: dict[str, Any] = meta_json(meta, "api") or {}
    return api


def base_response(stream_id: str, meta: dict[str, str]) -> dict[str, Any]:
    """The Response object before the upstream has said anything: queued."""
    return {
        "id": response_id(stream_id),
        "object": "response",
        "created_at": int(float(meta.get("created_at") or time.time())),
        "status": "queued",
        "background": bool(_api(meta).get("background")),
        "model": meta.get("model", ""),
        "output": [],
        "error": None,
        "incomplete_details": None,
        "usage": None,
    }


async def responses_meta(gw: Gateway, stream_id: str) -> dict[str, str]:
    """The meta of a stream created through this API; any other is no response (404)."""
    meta = await gw.store.meta(stream_id)
    if meta is None or _api(meta).get("name") != API_NAME:
        raise StreamNotFound(stream_id)
    return meta


async def _offset_of(gw: Gateway, stream_id: str, sequence: int) -> str:
    """The offset of the stream's ``sequence``-th event (from 0)."""
    after, seen = offsets.START, 0
    while True:
        events = await gw.store.read(stream_id, after, min(READ_PAGE, sequence + 1 - seen))
        if not events:
            raise InvalidInput(f"starting_after={sequence}: this response has no such event yet")
        seen += len(events)
        after = events[-1].offset
        if seen == sequence + 1:
            return after


async def stream_answer(
    gw: Gateway,
    stream_id: str,
    starting_after: int | None,
    headers: dict[str, str],
    *,
    address: str | None,
    created: bool = False,
) -> Response:
    """The events after sequence number ``starting_after`` (from the first without it),
    then live until the end. Answering a create (``created``), it waits for the first
    event, so that an upstream that refuses the request is answered with its own status
    and body, as if the client had called it."""
    after = None if starting_after is None else await _offset_of(gw, stream_id, starting_after)
    reading = await open_read(gw, stream_id, after, address=address)
    if reading is None:
        return Response(status_code=204, headers=headers)
    view = ResponseEvents(
        stream_id,
        background=bool(_api(reading.meta).get("background")),
        next_sequence=0 if starting_after is None else starting_after + 1,
        base=base_response(stream_id, reading.meta),
    )

    async def encode(batch: Batch) -> bytes:
        return view.sse(batch.events)

    return await answer_stream(
        gw, reading, encode, created=created, label="responses", headers=headers
    )


async def response_now(gw: Gateway, stream_id: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The Response object as the stream tells it now, and the stream's failure (the
    ``error`` event's data) if it failed before the upstream sent anything."""
    meta = await responses_meta(gw, stream_id)
    view = ResponseEvents(
        stream_id,
        background=bool(_api(meta).get("background")),
        next_sequence=0,
        base=base_response(stream_id, meta),
    )
    refused = None
    async for event in gw.store.read_all(stream_id, READ_PAGE):
        if event.type is EventType.ERROR and view.next_sequence == 0:
            refused = event.event.payload()
        view.mapped(event)
    response = view.response
    if (
        not view.ended
        and response.get("status") in (None, "queued")
        and meta["status"] == "running"
    ):
        response = {**response, "status": "in_progress"}
    return response, refused


async def whole_answer(gw: Gateway, stream_id: str, headers: dict[str, str]) -> Response:
    """Neither ``stream`` nor ``background``: the final Response object once it has ended."""
    reading = await open_read(gw, stream_id, None)
    if reading is not None:
        async with aclosing(reading.batches) as batches:
            async for _ in batches:  # until the terminal event
                pass
    response, refused = await response_now(gw, stream_id)
    if refused is not None:
        return failure_answer(refused, True, headers)
    return JSONResponse(response, headers=headers)


async def cancelled_answer(gw: Gateway, stream_id: str, headers: dict[str, str]) -> Response:
    """After a cancel: the Response object once the stream has ended (the worker closes the
    upstream within a second)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        status = await gw.store.status(stream_id)
        if status is None:
            raise StreamNotFound(stream_id)
        if status.status.is_final:
            break
        await asyncio.sleep(0.05)
    response, _ = await response_now(gw, stream_id)
    return JSONResponse(response, headers=headers)
