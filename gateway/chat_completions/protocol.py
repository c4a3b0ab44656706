"""OpenAI's Chat Completions wire format: the request tokenrelay takes, the chunks it sends.

A stream's events become ``chat.completion.chunk`` objects one for one: a ``token`` is choice
0's ``content``; a ``delta`` is its choice's ``delta`` (with the choice's ``logprobs``,
``finish_reason`` and own fields beside it); ``done`` is choice 0's finish chunk, then the
usage chunk when the request asked for it, then ``[DONE]``; ``error`` is OpenAI's in-stream
``{"error": {...}}``. Each event's offset is its SSE ``id``, on the last frame it makes.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict

from gateway.batch import Batch
from gateway.errors import openai_error_type
from gateway.models import CreateStream
from shared.errors import StreamErrorCode
from shared.events import EventType, StreamEvent

API_NAME = "chat.completions"
"""How a stream created through this API is marked (its meta's ``api``)."""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    include_usage: bool | None = None


class ChatCompletionRequest(CreateStream):
    """An OpenAI chat-completion request, unchanged; other parameters (``tools``, ``n``,
    ``logprobs``, ``response_format``...) pass through to the upstream. ``metadata`` is
    kept as the stream's own metadata rather than sent upstream (OpenAI accepts it only
    with ``store``)."""

    stream: bool | None = None
    stream_options: StreamOptions | None = None

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


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


class ChunkEncoder:
    """Encodes one stream's events as chunks; ``completion`` is the stream's chunk-level
    fields (None until its first chunk is stored)."""

    def __init__(self, completion: dict[str, Any] | None, *, include_usage: bool) -> None:
        self.include_usage = include_usage
        self.sent_chunk = False
        self.completion: dict[str, Any] | None = None
        self._prefix = self._first_prefix = ""
        if completion is not None:
            self.set_completion(completion)

    def set_completion(self, completion: dict[str, Any]) -> None:
        """Chunks carry the completion's fields; those beyond the usual five (Azure's
        ``prompt_filter_results``) only the first chunk, as the upstream sent them once."""
        self.completion = completion
        head = {
            "id": completion.get("id"),
            "object": "chat.completion.chunk",
            "created": completion.get("created"),
            "model": completion.get("model"),
        }
        for name in ("system_fingerprint", "service_tier"):
            if name in completion:
                head[name] = completion[name]
        self._prefix = _json(head)[:-1] + ',"choices":['
        self._first_prefix = _json({**head, **completion})[:-1] + ',"choices":['

    def _chunk(self, choices: str, usage: str = "null") -> str:
        prefix = self._prefix if self.sent_chunk else self._first_prefix
        self.sent_chunk = True
        tail = f',"usage":{usage}}}' if self.include_usage else "}"
        return prefix + choices + "]" + tail

    def encode(self, batch: Batch) -> bytes:
        return "".join([self.frames(event) for event in batch.events]).encode()

    def frames(self, event: StreamEvent) -> str:
        """The SSE frames of one event."""
        kind, data, offset = event.type, event.event.data, event.offset
        if kind is EventType.TOKEN:
            # '{"text":<JSON string>}' holds the content's JSON already
            choice = '{"index":0,"delta":{"content":' + data[8:-1]
            choice += '},"logprobs":null,"finish_reason":null}'
            return f"id: {offset}\ndata: {self._chunk(choice)}\n\n"
        payload = event.event.payload()
        if kind is EventType.DELTA:
            index = payload.pop("choice", 0)
            logprobs = payload.pop("logprobs", None)
            finish_reason = payload.pop("finish_reason", None)
            own = payload.pop("choice_fields", None) or {}
            choice_object = {
                "index": index,
                "delta": payload,
                "logprobs": logprobs,
                "finish_reason": finish_reason,
                **own,
            }
            return f"id: {offset}\ndata: {self._chunk(_json(choice_object))}\n\n"
        if kind is EventType.DONE:
            if payload.get("completion"):  # the last chunks carry the upstream's last values
                self.set_completion({**(self.completion or {}), **payload["completion"]})
            finish = _json(
                {
                    "index": 0,
                    "delta": {},
                    "logprobs": None,
                    "finish_reason": payload["finish_reason"],
                }
            )
            frames = f"data: {self._chunk(finish)}\n\n"
            if self.include_usage:
                frames += f"data: {self._chunk('', _json(payload.get('usage')))}\n\n"
            return frames + f"id: {offset}\ndata: [DONE]\n\n"
        status = failure_status(payload, before_first_chunk=False)
        return f"id: {offset}\ndata: {_json({'error': failure_error(payload, status)})}\n\n"
