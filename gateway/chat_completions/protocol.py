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
from gateway.models import CreateStream
from gateway.openai_answers import failure_error, failure_status
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
