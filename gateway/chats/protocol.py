"""What the AI SDK's ``DefaultChatTransport`` sends: a chat's id, its UI messages, why it
asks (``trigger``), and the application's own ``body`` fields beside them."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from gateway.chats.openai_messages import openai_messages
from gateway.models import MetadataKey, MetadataValue
from shared.errors import StreamNotFound

API_NAME = "chats"
"""How a stream created through this API is marked (its meta's ``api``)."""

CHAT_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
"""What the AI SDK's ``generateId`` makes, and what fits a URL path and a Redis hash tag."""

ChatId = Annotated[str, StringConstraints(pattern=f"^{CHAT_ID.pattern}$")]


def checked_chat_id(chat_id: str) -> str:
    """``chat_id`` if it can name a chat; 404 otherwise."""
    if CHAT_ID.fullmatch(chat_id) is None:
        raise StreamNotFound(chat_id)
    return chat_id


class UIPart(BaseModel):
    """One part of a UI message; its other fields as the AI SDK writes them."""

    model_config = ConfigDict(extra="allow", strict=True)

    type: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class UIMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    id: Annotated[str, StringConstraints(max_length=256)]
    role: Literal["system", "user", "assistant"]
    parts: list[UIPart]  # as many as TOKENRELAY_MAX_BODY_BYTES holds


TRANSPORT_FIELDS = {"id", "messages", "trigger", "messageId", "metadata", "cancel_on_disconnect_s"}
"""The body's fields that are not the upstream request's."""


class ChatRequest(BaseModel):
    """``POST /v1/chats``: the transport's fields, and the chat-completion parameters the
    application puts in its ``body`` (``model`` is required; ``temperature``, ``tools``...
    pass through to the upstream). ``metadata`` and ``cancel_on_disconnect_s`` are the
    stream's, as in ``POST /v1/streams``."""

    model_config = ConfigDict(extra="allow", strict=True)

    id: ChatId
    messages: Annotated[list[UIMessage], Field(min_length=1, max_length=1024)]
    trigger: Literal["submit-message", "regenerate-message"] = "submit-message"
    messageId: str | None = None  # the AI SDK's name
    model: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    metadata: Annotated[dict[MetadataKey, MetadataValue], Field(max_length=16)] | None = None
    cancel_on_disconnect_s: Annotated[float, Field(gt=0, le=86_400)] | None = None

    def ui_messages(self) -> list[dict[str, Any]]:
        return [message.model_dump() for message in self.messages]

    def upstream_request(self) -> dict[str, Any]:
        """The chat-completion request: the body's parameters and the converted messages."""
        request = self.model_dump(exclude=TRANSPORT_FIELDS, exclude_none=True)
        for managed in ("stream", "stream_options"):  # the worker sets these itself
            request.pop(managed, None)
        request["messages"] = openai_messages(self.ui_messages())
        return request
