"""AI SDK chats over the streams: a turn starts a generation, the chat's latest one is
streamed as UI message chunks, shown as UI messages, or stopped."""

from __future__ import annotations

import secrets
from typing import Any

from starlette.responses import Response

from gateway.auth import Principal
from gateway.batch import Batch
from gateway.chats.protocol import API_NAME, ChatRequest
from gateway.chats.store import ChatStore, Turn
from gateway.chats.ui_message import UIMessageBuilder
from gateway.chats.ui_stream import DONE_FRAME, UIMessageChunks, sse
from gateway.context import Gateway
from gateway.models import STREAM_ID_HEADER
from gateway.streams import cancel, event_stream, meta_json, open_read, start_generation
from shared.errors import StreamNotFound

UI_MESSAGE_STREAM_HEADERS = {"x-vercel-ai-ui-message-stream": "v1"}


def chats_of(gw: Gateway) -> ChatStore:
    return ChatStore(gw.store.redis, gw.store.keys, gw.settings.retention_s)


def _new_message_id() -> str:
    return "msg-" + secrets.token_urlsafe(12)


async def start_turn(gw: Gateway, principal: Principal, body: ChatRequest) -> str:
    """Start the generation that answers ``body`` and make it the chat's latest turn (a
    chat has one answer in progress: the one it replaces is cancelled); its stream id."""
    messages = body.ui_messages()
    last = messages[-1]
    message_id = last["id"] if last["role"] == "assistant" else _new_message_id()
    started = await start_generation(
        gw,
        principal,
        body,
        None,
        api={"name": API_NAME, "chat_id": body.id, "message_id": message_id},
    )
    replaced = await chats_of(gw).save_turn(body.id, Turn(messages, started.stream_id, message_id))
    if replaced is not None and replaced != started.stream_id:
        await _stop(gw, replaced)
    return started.stream_id


async def answer_stream(gw: Gateway, stream_id: str, *, address: str | None) -> Response:
    """The answer as the UI message stream, from its ``start`` part, then live; 204 if it
    has ended (nothing to resume)."""
    reading = await open_read(gw, stream_id, None, address=address)
    if reading is None:
        return Response(status_code=204)
    chunks = UIMessageChunks((meta_json(reading.meta, "api") or {})["message_id"])

    async def encode(batch: Batch) -> bytes:
        frames = b"".join([sse(chunks.chunks(event)) for event in batch.events])
        return frames + DONE_FRAME if batch.last.is_terminal else frames

    return event_stream(
        gw,
        reading,
        encode,
        first=None,
        opening=sse(chunks.opening()),
        label="chats",
        # the stream's id, as the other compatible APIs name it: for the admin views
        headers={**UI_MESSAGE_STREAM_HEADERS, STREAM_ID_HEADER: stream_id},
    )


async def in_progress(gw: Gateway, chat_id: str) -> str | None:
    """The stream of the chat's generation in progress, if one is."""
    turn = await chats_of(gw).turn(chat_id)
    if turn is None:
        return None
    status = await gw.store.status(turn.stream_id)
    return turn.stream_id if status is not None and not status.status.is_final else None


async def _answer(gw: Gateway, turn: Turn) -> dict[str, Any] | None:
    """The turn's answer as a UI message, as far as it has come; None once expired."""
    meta = await gw.store.meta(turn.stream_id)
    if meta is None:
        return None
    chunks = UIMessageChunks(turn.message_id)
    builder = UIMessageBuilder(turn.message_id, turn.messages[-1] if turn.continues_last else None)
    for chunk in chunks.opening():
        builder.add(chunk)
    async for event in gw.store.read_all(turn.stream_id):
        for chunk in chunks.chunks(event):
            builder.add(chunk)
    return builder.message


async def conversation(gw: Gateway, chat_id: str) -> dict[str, Any]:
    """``{"id", "messages"}``: the chat's messages and its latest answer, finished or not
    (no messages for a chat unknown or expired)."""
    turn = await chats_of(gw).turn(chat_id)
    if turn is None:
        return {"id": chat_id, "messages": []}
    answer = await _answer(gw, turn)
    messages = turn.messages[:-1] if turn.continues_last else list(turn.messages)
    if answer is not None:
        messages.append(answer)
    elif turn.continues_last:
        messages.append(turn.messages[-1])
    return {"id": chat_id, "messages": messages}


async def _stop(gw: Gateway, stream_id: str) -> bool:
    status = await gw.store.status(stream_id)
    if status is None or status.status.is_final:
        return False
    try:
        await cancel(gw, stream_id)
    except StreamNotFound:  # expired in between
        return False
    return True


async def stop(gw: Gateway, chat_id: str) -> bool:
    """Cancel the chat's generation in progress; whether there was one."""
    turn = await chats_of(gw).turn(chat_id)
    return turn is not None and await _stop(gw, turn.stream_id)
