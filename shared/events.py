"""The event model: what a stream is made of, and every encoding of it.

An event's data is encoded to JSON once, when the worker appends it; the gateway copies
those bytes into SSE and NDJSON frames without decoding them again.

Choice 0's plain text travels in ``token`` events, the cheap path every answer takes.
Everything else a chat-completion chunk carries travels in ``delta`` events, with the
upstream's own field names and values: ``{"choice": n, ...the choice's delta...,
"logprobs"?, "finish_reason"?, "choice_fields"?}`` (``choice_fields``: the choice's own keys
beyond ``index``, ``delta``, ``logprobs`` and ``finish_reason``, such as vLLM's
``stop_reason``). Choice 0's finish reason ends the stream in ``done``. A stream generated
through the Responses API holds ``response`` events instead: each upstream event's JSON as
sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

import orjson

from shared.errors import StreamErrorCode

FinishReason = Literal["stop", "length", "content_filter", "tool_calls", "cancelled"]


class EventType(StrEnum):
    TOKEN = "token"
    DELTA = "delta"
    RESPONSE = "response"
    DONE = "done"
    ERROR = "error"

    @property
    def is_terminal(self) -> bool:
        return self is EventType.DONE or self is EventType.ERROR


def _json(value: object) -> str:
    """Compact JSON, non-ASCII as it is. orjson writes it ten times faster than the standard
    library; what it refuses (a lone surrogate, an integer beyond 64 bits) the standard
    library writes."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Event:
    """One event before it has an offset. ``data`` is a JSON object's text."""

    type: EventType
    data: str

    @classmethod
    def token(cls, text: str) -> Event:
        return cls(EventType.TOKEN, _json({"text": text}))

    @classmethod
    def delta(cls, fields: dict[str, Any]) -> Event:
        """``fields``: ``{"choice": n, ...}`` as the module docstring describes."""
        return cls(EventType.DELTA, _json(fields))

    @classmethod
    def response(cls, data: str) -> Event:
        """A Responses API event, its JSON text as the upstream sent it."""
        return cls(EventType.RESPONSE, data)

    @classmethod
    def done(
        cls,
        finish_reason: FinishReason,
        usage: dict[str, Any] | None = None,
        *,
        completion: dict[str, Any] | None = None,
    ) -> Event:
        """``completion``: the chunk-level fields the upstream's last chunk changed from
        those kept (the status's ``completion``), if any."""
        payload: dict[str, Any] = {"finish_reason": finish_reason, "usage": usage}
        if completion:
            payload["completion"] = completion
        return cls(EventType.DONE, _json(payload))

    @classmethod
    def error(
        cls,
        code: StreamErrorCode,
        message: str,
        *,
        retryable: bool,
        upstream: dict[str, Any] | None = None,
    ) -> Event:
        """``upstream``: what the upstream itself answered, when it answered with an error
        (``{"status"?, "error"?, "retry_after_s"?}``: its HTTP status, its error object and
        the wait it asked for), so that a compatible API can pass it on unchanged."""
        payload: dict[str, Any] = {"code": str(code), "message": message, "retryable": retryable}
        if upstream:
            payload["upstream"] = upstream
        return cls(EventType.ERROR, _json(payload))

    @property
    def is_terminal(self) -> bool:
        return self.type.is_terminal

    def payload(self) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(self.data)
        return decoded

    def to_fields(self) -> list[str]:
        """The Redis Stream entry's field/value list."""
        return ["type", self.type.value, "data", self.data]


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """An event read back from a stream, at its offset."""

    offset: str
    event: Event

    @classmethod
    def from_entry(cls, entry_id: str, fields: dict[str, str]) -> StreamEvent:
        return cls(entry_id, Event(EventType(fields["type"]), fields["data"]))

    @property
    def type(self) -> EventType:
        return self.event.type

    @property
    def is_terminal(self) -> bool:
        return self.event.is_terminal

    def sse(self) -> str:
        """``text/event-stream``: ``id`` is the offset, so ``Last-Event-ID`` resumes."""
        return f"id: {self.offset}\nevent: {self.event.type.value}\ndata: {self.event.data}\n\n"

    def ndjson(self) -> str:
        """``application/x-ndjson``: ``{"offset", "type", ...data}`` on one line; a
        ``response`` event, whose data has a ``type`` of its own, as ``{"offset", "type":
        "response", "event": data}``."""
        data = self.event.data
        if self.event.type is EventType.RESPONSE:
            return f'{{"offset":"{self.offset}","type":"response","event":{data}}}\n'
        rest = "}" if data == "{}" else "," + data[1:]
        return f'{{"offset":"{self.offset}","type":"{self.event.type.value}"{rest}\n'

    def text(self) -> str:
        """``text/plain``: the answer alone (choice 0's content, whichever event carried
        it); everything else adds nothing."""
        kind = self.event.type
        if kind is EventType.TOKEN:
            text: str = self.event.payload()["text"]
            return text
        if kind is EventType.DELTA:
            fields = self.event.payload()
            content = fields.get("content")
            if fields.get("choice") == 0 and isinstance(content, str):
                return content
        elif kind is EventType.RESPONSE and '"response.output_text.delta"' in self.event.data:
            event = self.event.payload()
            if event.get("type") == "response.output_text.delta":
                return str(event.get("delta") or "")
        return ""

    def as_dict(self) -> dict[str, Any]:
        """As ``ndjson`` shows it."""
        if self.event.type is EventType.RESPONSE:
            return {"offset": self.offset, "type": "response", "event": self.event.payload()}
        return {"offset": self.offset, "type": self.event.type.value, **self.event.payload()}


PRODUCER_LOST = Event.error(
    StreamErrorCode.PRODUCER_LOST,
    "the worker generating this stream was lost before it finished",
    retryable=True,
)
"""How a stream ends when its worker dies (declared by whoever notices the expired lease)."""
