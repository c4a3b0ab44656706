"""The event model: what a stream is made of, and every encoding of it.

An event's data is encoded to JSON once, when the worker appends it; the gateway copies
those bytes into SSE and NDJSON frames without decoding them again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from shared.errors import StreamErrorCode

FinishReason = Literal["stop", "length", "content_filter", "tool_calls", "cancelled"]


class EventType(StrEnum):
    TOKEN = "token"
    DONE = "done"
    ERROR = "error"

    @property
    def is_terminal(self) -> bool:
        return self is not EventType.TOKEN


def _json(value: object) -> str:
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
    def done(cls, finish_reason: FinishReason, usage: dict[str, Any] | None = None) -> Event:
        return cls(EventType.DONE, _json({"finish_reason": finish_reason, "usage": usage}))

    @classmethod
    def error(cls, code: StreamErrorCode, message: str, *, retryable: bool) -> Event:
        payload = {"code": str(code), "message": message, "retryable": retryable}
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
        """``application/x-ndjson``: ``{"offset", "type", ...data}`` on one line."""
        data = self.event.data
        rest = "}" if data == "{}" else "," + data[1:]
        return f'{{"offset":"{self.offset}","type":"{self.event.type.value}"{rest}\n'

    def text(self) -> str:
        """``text/plain``: the generated text alone; terminal events add nothing."""
        if self.event.type is EventType.TOKEN:
            text: str = self.event.payload()["text"]
            return text
        return ""

    def as_dict(self) -> dict[str, Any]:
        return {"offset": self.offset, "type": self.event.type.value, **self.event.payload()}


PRODUCER_LOST = Event.error(
    StreamErrorCode.PRODUCER_LOST,
    "the worker generating this stream was lost before it finished",
    retryable=True,
)
"""How a stream ends when its worker dies (declared by whoever notices the expired lease)."""
