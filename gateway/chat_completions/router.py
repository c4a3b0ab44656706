"""``/v1/chat/completions``: OpenAI's Chat Completions API, resumable (``base_url =
http://gateway/v1``). Errors here take OpenAI's shape (``gateway/errors.py``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response

from gateway.api import api_client
from gateway.auth import Principal
from gateway.chat_completions import serving
from gateway.chat_completions.protocol import API_NAME, ChatCompletionRequest
from gateway.context import gateway_of
from gateway.ids import checked_id
from gateway.models import API_ERRORS, READ_TOKEN_HEADER, STREAM_ID_HEADER
from gateway.streams import Started, start_generation
from shared.errors import ShuttingDown

router = APIRouter(prefix="/v1/chat", tags=["OpenAI Chat Completions"], responses=API_ERRORS)


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _names(stream_id: str, read_token: str | None = None) -> dict[str, str]:
    headers = {STREAM_ID_HEADER: stream_id}
    if read_token is not None:
        headers[READ_TOKEN_HEADER] = read_token
    return headers


@router.post(
    "/completions",
    responses={200: {"content": {"text/event-stream": {}, "application/json": {}}}},
)
async def create_chat_completion(
    body: ChatCompletionRequest,
    request: Request,
    principal: Annotated[Principal, Depends(api_client)],
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> Response:
    """An OpenAI chat completion, generated as a tokenrelay stream: with ``stream: true``
    the ``chat.completion.chunk`` events (each with its offset as SSE ``id``), else the
    ``chat.completion`` object. ``X-TokenRelay-Stream-Id`` and ``X-TokenRelay-Read-Token``
    name the stream, for ``GET /v1/chat/completions/{id}/stream`` and every other reader."""
    gw = gateway_of(request)
    if gw.hub.draining:
        raise ShuttingDown()
    started: Started = await start_generation(
        gw,
        principal,
        body,
        idempotency_key,
        api={"name": API_NAME, "include_usage": body.include_usage},
    )
    headers = _names(started.stream_id, started.read_token)
    if body.stream:
        return await serving.stream_answer(
            gw, started.stream_id, None, headers, address=_address(request), created=True
        )
    return await serving.whole_answer(gw, started.stream_id, headers, address=_address(request))


@router.get(
    "/completions/{stream_id}/stream",
    responses={
        200: {"content": {"text/event-stream": {}}},
        204: {"description": "the stream already ended before this offset"},
    },
)
async def resume_chat_completion(
    stream_id: str,
    request: Request,
    after: Annotated[str | None, Query(max_length=64)] = None,
    token: Annotated[str | None, Query(max_length=512)] = None,
    last_event_id: Annotated[str | None, Header(max_length=64)] = None,
) -> Response:
    """The rest of a chat completion's chunks after ``Last-Event-ID`` (or ``?after=``), in
    the same format; from the first chunk without either. API key or read token."""
    gw = gateway_of(request)
    checked_id(stream_id)
    gw.auth.reader(request, stream_id)
    if gw.hub.draining:
        raise ShuttingDown()
    return await serving.stream_answer(
        gw, stream_id, last_event_id or after, _names(stream_id), address=_address(request)
    )
