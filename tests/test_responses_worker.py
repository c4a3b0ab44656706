"""The worker's side of the Responses API: every upstream event kept as sent, the end read
from the upstream's last event (tests/recordings/responses/, replayed without HTTP)."""

from __future__ import annotations

import pytest

from producer.chunks import Part
from producer.responses import ResponsesTranslator
from shared.errors import UpstreamError
from shared.events import Event, EventType, StreamEvent
from tests.replay_upstream import (
    recorded_response_events,
    responses_recording_bytes,
    responses_recordings,
    split_events,
)


def payloads(name: str) -> list[bytes]:
    out = []
    for event in split_events(responses_recording_bytes(name)):
        for line in event.split(b"\n"):
            if line.startswith(b"data:"):
                out.append(line[5:].strip())
    return out


@pytest.mark.parametrize("name", responses_recordings())
def test_every_event_is_kept_as_sent(name: str) -> None:
    translator, parts = ResponsesTranslator(), list[Part]()
    sent = payloads(name)
    failed: UpstreamError | None = None
    try:
        translator.feed(sent, parts)
    except UpstreamError as exc:
        failed = exc
    assert all(isinstance(part, Event) and part.type is EventType.RESPONSE for part in parts)
    kept = [part.data.encode() for part in parts if isinstance(part, Event)]
    ending = recorded_response_events(name)[len(kept) - 1]["type"]
    assert kept == sent[: len(kept)]
    assert translator.ended
    if ending == "response.completed":
        assert failed is None and translator.finish_reason == "stop"
        assert translator.usage and kept == sent
    elif ending == "response.incomplete":
        assert failed is None and translator.finish_reason == "length"
    else:  # the upstream's own failure, its error object kept for the compatible API
        assert failed is not None and failed.upstream and failed.upstream["error"]
    created = recorded_response_events(name)[0]["response"]
    assert translator.completion["id"] == created["id"]


def test_the_text_format_is_the_output_text() -> None:
    name = "openai-web-search"
    text = "".join(
        StreamEvent("1-0", Event.response(payload.decode())).text() for payload in payloads(name)
    )
    deltas = [
        e["delta"]
        for e in recorded_response_events(name)
        if e["type"] == "response.output_text.delta"
    ]
    assert text == "".join(deltas) and len(text) > 50
