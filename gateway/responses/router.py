"""``/v1/responses``: OpenAI's Responses API with background mode, for any upstream
(``base_url = http://gateway/v1``). Errors here take OpenAI's shape (``gateway/errors.py``)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from gateway.api import api_client
from gateway.auth import Principal
from gateway.context import gateway_of
from gateway.ids import checked_id
from gateway.models import API_ERRORS, READ_TOKEN_HEADER, STREAM_ID_HEADER
from gateway.responses import serving
from gateway.responses.protocol import API_NAME, PREFIX, CreateResponse
from gateway.streams import cancel, start_generation
from shared.errors import ShuttingDown, StreamNotFound
from shared.upstream_api import RESPONSES

router = APIRouter(prefix="/v1/responses", tags=["OpenAI Responses"], responses=API_ERRORS)


def _stream_id(response_id: str) -> str:
    if not response_id.startswith(PREFIX):
        raise StreamNotFound(response_id)
    return checked_id(response_id.removeprefix(PREFIX))


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post("", responses={200: {"content": {"text/event-stream": {}, "application/json": {}}}})
async def create_response(
    body: CreateResponse,
    request: Request,
    principal: Annotated[Principal, Depends(api_client)],
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> Response:
    """A response generated as a tokenrelay stream from the upstream's ``/responses``:
    ``stream`` answers its events, ``background`` alone the queued Response object at once,
    neither the final Response object."""
    gw = gateway_of(request)
    if gw.hub.draining:
        raise ShuttingDown()
    started = await start_generation(
        gw,
        principal,
        body,
        idempotency_key,
        api={"name": API_NAME, "background": bool(body.background)},
        endpoint=RESPONSES,
    )
    headers = {STREAM_ID_HEADER: started.stream_id, READ_TOKEN_HEADER: started.read_token}
    if body.stream:
        return await serving.stream_answer(
            gw, started.stream_id, None, headers, address=_address(request), created=True
        )
    if body.background:
        meta = await gw.store.meta(started.stream_id) or {"created_at": str(time.time())}
        now = serving.base_response(started.stream_id, {**meta, "model": body.model})
        return JSONResponse(now, headers=headers)
    return await serving.whole_answer(gw, started.stream_id, headers)


@router.get(
    "/{response_id}",
    responses={200: {"content": {"application/json": {}, "text/event-stream": {}}}},
)
async def retrieve_response(
    response_id: str,
    request: Request,
    stream: bool = False,
    starting_after: Annotated[int | None, Query(ge=0, le=10_000_000)] = None,
    token: Annotated[str | None, Query(max_length=512)] = None,
) -> Response:
    """The Response object now; with ``stream=true`` its events after ``starting_after``
    (all of them without it), then live until the end. API key or read token."""
    gw = gateway_of(request)
    stream_id = _stream_id(response_id)
    gw.auth.reader(request, stream_id)
    headers = {STREAM_ID_HEADER: stream_id}
    await serving.responses_meta(gw, stream_id)
    if stream:
        if gw.hub.draining:
            raise ShuttingDown()
        return await serving.stream_answer(
            gw, stream_id, starting_after, headers, address=_address(request)
        )
    response, _ = await serving.response_now(gw, stream_id)
    return JSONResponse(response, headers=headers)


@router.post("/{response_id}/cancel")
async def cancel_response(response_id: str, request: Request) -> Response:
    """Stop the generation: the upstream is closed within a second, every reader's stream
    ends, and the answer is the Response object, ``cancelled``. Idempotent."""
    gw = gateway_of(request)
    stream_id = _stream_id(response_id)
    gw.auth.reader(request, stream_id)
    await serving.responses_meta(gw, stream_id)
    await cancel(gw, stream_id)
    return await serving.cancelled_answer(gw, stream_id, {STREAM_ID_HEADER: stream_id})
