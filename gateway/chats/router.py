"""``/v1/chats``: the Vercel AI SDK's chat protocol, so that ``useChat({ resume: true })``
with a ``DefaultChatTransport`` pointed here needs no backend code of its own."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel

from gateway.auth import Principal, credential_check
from gateway.chats import serving
from gateway.chats.protocol import ChatRequest, checked_chat_id
from gateway.context import gateway_of
from gateway.models import API_ERRORS
from shared.errors import ShuttingDown, Unauthorized

router = APIRouter(prefix="/v1/chats", tags=["Vercel AI SDK chats"], responses=API_ERRORS)

UI_MESSAGE_STREAM: dict[int | str, dict[str, Any]] = {200: {"content": {"text/event-stream": {}}}}


@credential_check
def chat_client(request: Request) -> Principal:
    """An API key, a chat token or (demo mode) nobody; a dependency, so credentials are
    checked before the body."""
    return gateway_of(request).auth.chat_client(request)


Caller = Annotated[Principal, Depends(chat_client)]


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post("", responses=UI_MESSAGE_STREAM)
async def send_messages(body: ChatRequest, request: Request, caller: Caller) -> Response:
    """What ``DefaultChatTransport.sendMessages`` posts: the conversation so far. A
    generation answers it, streamed as UI message chunks; it goes on if the client leaves,
    to be resumed from ``GET /v1/chats/{id}/stream``."""
    caller.require_chat(body.id)
    gw = gateway_of(request)
    if gw.hub.draining:
        raise ShuttingDown()
    stream_id = await serving.start_turn(gw, caller, body)
    return await serving.answer_stream(gw, stream_id, address=_address(request))


@router.get(
    "/{chat_id}/stream",
    responses={**UI_MESSAGE_STREAM, 204: {"description": "no generation is in progress"}},
)
async def resume_stream(chat_id: str, request: Request, caller: Caller) -> Response:
    """The chat's generation in progress, from its ``start`` part, then live; 204 when none
    is — what ``useChat({ resume: true })`` asks when a page loads."""
    caller.require_chat(checked_chat_id(chat_id))
    gw = gateway_of(request)
    if gw.hub.draining:
        raise ShuttingDown()
    stream_id = await serving.in_progress(gw, chat_id)
    if stream_id is None:
        return Response(status_code=204)
    return await serving.answer_stream(gw, stream_id, address=_address(request))


@router.get("/{chat_id}")
async def get_chat(chat_id: str, request: Request, caller: Caller) -> dict[str, Any]:
    """``{"id", "messages"}``: the conversation so far as UI messages, the answer in
    progress included (a page that reloads shows it and resumes); no messages for a chat
    unknown or expired."""
    caller.require_chat(checked_chat_id(chat_id))
    return await serving.conversation(gateway_of(request), chat_id)


class Stopped(BaseModel):
    id: str
    stopped: bool
    """Whether a generation was in progress (and is now cancelled)."""


@router.post("/{chat_id}/stop", status_code=202, response_model=Stopped)
async def stop_chat(chat_id: str, request: Request, caller: Caller) -> Stopped:
    """Cancel the chat's generation in progress: its upstream is closed within a second,
    and its readers' streams end with ``abort``. A closed tab does not stop it; this does.
    Idempotent."""
    caller.require_chat(checked_chat_id(chat_id))
    return Stopped(id=chat_id, stopped=await serving.stop(gateway_of(request), chat_id))


class ChatToken(BaseModel):
    chat_id: str
    token: str
    """For the browser's ``Authorization: Bearer`` (the transport's ``headers``)."""
    expires_at: int


@router.post("/{chat_id}/token", status_code=201, response_model=ChatToken)
async def mint_chat_token(chat_id: str, request: Request) -> ChatToken:
    """For the application's backend (API key): a token that covers this one chat — send,
    resume, show, stop — for a browser that must not hold the API key."""
    gw = gateway_of(request)
    caller = gw.auth.api_client(request)
    if caller.anonymous:
        raise Unauthorized("minting a chat token takes an API key")
    token, expires_at = gw.auth.issue_chat_token(checked_chat_id(chat_id))
    return ChatToken(chat_id=chat_id, token=token, expires_at=expires_at)
