"""A batch of events as readers receive it: read once, encoded once per format, shared.

Readers of one stream at the same offset (the usual case: a shared answer) get the same
``Batch`` from their topic (``gateway/hub.py``), so a thousand of them cost one XRANGE and
one encoding per format, not a thousand.
"""

from __future__ import annotations

from shared.events import StreamEvent


class Batch:
    __slots__ = ("_encoded", "events", "lag_observed")

    def __init__(self, events: list[StreamEvent]) -> None:
        self.events = events
        self._encoded: dict[str, bytes] = {}
        self.lag_observed = False
        """Its delivery lag went into the metric (once per batch, not once per reader)."""

    def __len__(self) -> int:
        return len(self.events)

    @property
    def last(self) -> StreamEvent:
        return self.events[-1]

    def encoded(self, fmt: str) -> bytes:
        """``sse``, ``ndjson`` or ``text``; each computed on first use."""
        cached = self._encoded.get(fmt)
        if cached is None:
            if fmt == "sse":
                text = "".join([event.sse() for event in self.events])
            elif fmt == "ndjson":
                text = "".join([event.ndjson() for event in self.events])
            else:
                text = "".join([event.text() for event in self.events])
            cached = self._encoded[fmt] = text.encode()
        return cached
