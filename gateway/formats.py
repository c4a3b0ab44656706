"""The three wire formats of ``GET /v1/streams/{id}/events`` and how each is framed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from enum import StrEnum

from gateway.batch import Batch
from shared import metrics
from shared.errors import InvalidInput


class Format(StrEnum):
    SSE = "sse"
    NDJSON = "ndjson"
    TEXT = "text"

    @property
    def media_type(self) -> str:
        return _MEDIA_TYPES[self]


_MEDIA_TYPES = {
    Format.SSE: "text/event-stream; charset=utf-8",
    Format.NDJSON: "application/x-ndjson",
    Format.TEXT: "text/plain; charset=utf-8",
}

_BY_MEDIA_TYPE = {
    "text/event-stream": Format.SSE,
    "application/x-ndjson": Format.NDJSON,
    "application/jsonl": Format.NDJSON,
    "text/plain": Format.TEXT,
}


def negotiate(format_param: str | None, accept: str | None) -> Format:
    """``?format=`` if given, else the first media type of ``Accept`` we speak, else SSE."""
    if format_param is not None:
        try:
            return Format(format_param)
        except ValueError:
            raise InvalidInput(
                f"unknown format {format_param[:32]!r}: use sse, ndjson or text"
            ) from None
    for item in (accept or "").split(","):
        media_type = item.split(";", 1)[0].strip().lower()
        if media_type in _BY_MEDIA_TYPE:
            return _BY_MEDIA_TYPE[media_type]
    return Format.SSE


async def frames(
    fmt: Format, batches: AsyncIterator[Batch | None], retry_ms: int
) -> AsyncIterator[bytes]:
    """Encode batches of events (``None`` = idle, time for a keep-alive) in ``fmt``.

    Keep-alives: an SSE comment (``: ping``, no ``id``), an empty NDJSON line; plain text
    has none, since any byte would become part of the answer.
    """
    delivered = metrics.events_delivered.labels(fmt.value)
    if fmt is Format.SSE:
        yield f"retry: {retry_ms}\n\n".encode()
    async for batch in batches:
        if batch is None:
            if fmt is Format.SSE:
                yield b": ping\n\n"
            elif fmt is Format.NDJSON:
                yield b"\n"
            continue
        delivered.inc(len(batch))
        encoded = batch.encoded(fmt.value)
        if encoded:
            yield encoded
