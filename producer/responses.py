"""From an upstream's Responses API stream to the stream's parts: every event kept as sent.

Each ``data:`` payload becomes one ``response`` event, its JSON text unchanged (the gateway's
Responses API maps the response id and numbers the events for its clients). The response's
own ``id``, ``created_at`` and ``model`` are kept once per stream (``completion``, from
``response.created``); the upstream's last event ends the stream: ``response.completed``
and ``response.incomplete`` as ``done``, ``response.failed`` and ``error`` as an ``error``
event carrying the upstream's own error object.
"""

from __future__ import annotations

from typing import Any

import orjson

from producer.chunks import Finished, Part, not_a_chunk, strictly_decoded
from shared.errors import StreamErrorCode, UpstreamError
from shared.events import Event, FinishReason

ENDING = frozenset({"response.completed", "response.incomplete", "response.failed", "error"})
"""The event types with which an upstream ends a response."""

_INCOMPLETE: dict[str, FinishReason] = {
    "max_output_tokens": "length",
    "content_filter": "content_filter",
}


class ResponsesTranslator:
    """Translates the events of one upstream response, in order."""

    def __init__(self) -> None:
        self.completion: dict[str, Any] = {}
        self.completion_changed = False
        self.finish_reason: FinishReason | None = None
        """Set once the upstream ended the response properly."""
        self.usage: dict[str, Any] | None = None
        self.ended = False
        """The upstream sent its last event: nothing more is read."""

    def feed(self, payloads: list[bytes], parts: list[Part]) -> None:
        """Append an event per payload to ``parts``; raises ``UpstreamError`` after the
        upstream's own failure event (which is in ``parts``) or at a payload that is no
        event."""
        for payload in payloads:
            try:
                event = orjson.loads(payload)
            except ValueError:
                event = strictly_decoded(payload)
            if type(event) is not dict or not isinstance(event.get("type"), str):
                raise not_a_chunk(payload, None if type(event) is dict else event)
            parts.append(Event.response(payload.decode()))
            kind = event["type"]
            if kind == "response.created":
                self._keep(event.get("response"))
            elif kind in ENDING:
                self.ended = True
                self._end(kind, event)
                return

    def finished(self) -> Finished | None:
        """How the upstream ended the response, once it did (properly)."""
        if self.finish_reason is None:
            return None
        return Finished(self.finish_reason, self.usage, {})

    def _keep(self, response: object) -> None:
        if isinstance(response, dict):
            for name in ("id", "created_at", "model"):
                if name in response and name not in self.completion:
                    self.completion[name] = response[name]
                    self.completion_changed = True

    def _end(self, kind: str, event: dict[str, Any]) -> None:
        response = event.get("response") if isinstance(event.get("response"), dict) else {}
        assert isinstance(response, dict)
        self.usage = response.get("usage") or None
        if kind == "response.completed":
            self.finish_reason = "stop"
        elif kind == "response.incomplete":
            details = response.get("incomplete_details") or {}
            self.finish_reason = _INCOMPLETE.get(str(details.get("reason")), "length")
        else:
            error = event if kind == "error" else response.get("error") or {}
            raise UpstreamError(
                StreamErrorCode.UPSTREAM_ERROR,
                str(error.get("message") or f"the upstream ended the response with {kind}"),
                retryable=False,
                upstream={"error": error},
            )
