"""OpenAI's Responses API wire format: the request tokenrelay takes, the events it sends.

A stream generated through the Responses API holds the upstream's events as it sent them
(``response`` events). Its clients see them with tokenrelay's response id (``resp_`` and the
stream id) wherever the upstream's stood, ``background`` as they asked, no ``obfuscation``,
and ``sequence_number`` counted from 0 by the event's place in the stream, so that a reader
resuming after N gets the events after the N-th, whichever replica serves it. A stream that
ends without the upstream's own last event (cancelled, its worker lost, a timeout, a cut
connection) ends for these clients with one made here: ``response.failed`` carrying the
tokenrelay error code, or, for a cancel, ``response.incomplete`` whose ``response.status``
is ``cancelled`` (OpenAI streams no event of its own for a cancel).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared.events import EventType, StreamEvent

API_NAME = "responses"
PREFIX = "resp_"
ENDING = frozenset({"response.completed", "response.incomplete", "response.failed", "error"})


def response_id(stream_id: str) -> str:
    return PREFIX + stream_id


class CreateResponse(BaseModel):
    """An OpenAI Responses request, unchanged (``input``, ``instructions``, ``tools``,
    ``reasoning``...) but for ``stream`` and ``background``, which tokenrelay answers itself
    (the upstream is always streamed, never asked for its own background mode), and
    ``metadata``, kept as the stream's own."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    stream: bool | None = None
    background: bool | None = None
    metadata: Annotated[dict[str, str], Field(max_length=16)] | None = None
    cancel_on_disconnect_s: Annotated[float, Field(gt=0, le=86_400)] | None = None

    def upstream_request(self) -> dict[str, Any]:
        return self.model_dump(
            exclude={"stream", "background", "metadata", "cancel_on_disconnect_s"},
            exclude_none=True,
        )


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class ResponseEvents:
    """One client's view of a Responses stream: its events renamed and numbered, and the
    Response object as far as they tell it."""

    def __init__(
        self, stream_id: str, *, background: bool, next_sequence: int, base: dict[str, Any]
    ) -> None:
        self.response_id = response_id(stream_id)
        self.background = background
        self.next_sequence = next_sequence
        self.response: dict[str, Any] = {**base, "id": self.response_id}
        """The latest Response object the events carried (``base`` before any)."""
        self.ended = False
        """The upstream's own last event has been seen."""

    def mapped(self, event: StreamEvent) -> list[dict[str, Any]]:
        """The client's events for a stream event: none for a terminal one after the
        upstream's own end, which says nothing more; a ``response.created`` before an end
        made here that comes first (a response cancelled or lost before the upstream said
        anything), as clients build the Response from it."""
        if event.type is not EventType.RESPONSE and self.ended:
            return []
        events = []
        if event.type is not EventType.RESPONSE and self.next_sequence == 0:
            events.append(self._numbered({"type": "response.created", "response": self.response}))
        events.append(self._numbered(self._data(event)))
        return events

    def _numbered(self, data: dict[str, Any]) -> dict[str, Any]:
        data["sequence_number"] = self.next_sequence
        self.next_sequence += 1
        return data

    def _data(self, event: StreamEvent) -> dict[str, Any]:
        if event.type is EventType.RESPONSE:
            data: dict[str, Any] = event.event.payload()
            data.pop("obfuscation", None)
            if isinstance(data.get("response"), dict):
                response = data["response"]
                response["id"] = self.response_id
                response["background"] = self.background
                self.response = response
            self.ended = self.ended or data.get("type") in ENDING
            return data
        return self._ending(event.type, event.event.payload())

    def _ending(self, kind: EventType, payload: dict[str, Any]) -> dict[str, Any]:
        self.ended = True
        response = dict(self.response)
        if kind is EventType.DONE and payload.get("finish_reason") == "cancelled":
            response.update(status="cancelled", incomplete_details={"reason": "cancelled"})
            self.response = response
            return {"type": "response.incomplete", "response": response}
        if kind is EventType.DONE:  # the stream's length cap
            response.update(status="incomplete", incomplete_details={"reason": "max_output_tokens"})
            self.response = response
            return {"type": "response.incomplete", "response": response}
        error = {"code": payload.get("code"), "message": payload.get("message", "")}
        response.update(status="failed", error=error)  # code: a tokenrelay error code
        self.response = response
        return {"type": "response.failed", "response": response}

    def sse(self, events: list[StreamEvent]) -> bytes:
        frames = []
        for event in events:
            for data in self.mapped(event):
                frames.append(f"event: {data['type']}\ndata: {_json(data)}\n\n")
        return "".join(frames).encode()
