"""A stream's status, as ``GET /v1/streams/{id}`` shows it, read from its meta hash."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from pydantic import BaseModel


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    OPEN = "open"
    """A durable stream that may still be written (``/v1/ds``); closed, it is completed."""

    @property
    def is_final(self) -> bool:
        return self not in (Status.QUEUED, Status.RUNNING, Status.OPEN)


def _float(value: str | None) -> float | None:
    return float(value) if value else None


def _json(value: str | None) -> Any:
    return json.loads(value) if value else None


class StreamStatus(BaseModel):
    """The public view of one stream."""

    id: str
    status: Status
    model: str
    upstream: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    finish_reason: str | None
    error: dict[str, Any] | None
    usage: dict[str, Any] | None
    event_count: int
    last_offset: str | None
    metadata: dict[str, str]
    completion: dict[str, Any] | None = None
    """The upstream's chunk-level ``id``, ``created``, ``model``, ``system_fingerprint``,
    ``service_tier`` (and any other chunk-level field it adds), as first sent; null before
    the first chunk."""

    @classmethod
    def from_meta(cls, stream_id: str, meta: dict[str, str]) -> StreamStatus:
        return cls(
            id=stream_id,
            status=Status(meta["status"]),
            model=meta.get("model", ""),
            upstream=meta.get("upstream") or None,
            created_at=float(meta["created_at"]),
            started_at=_float(meta.get("started_at")),
            finished_at=_float(meta.get("finished_at")),
            finish_reason=meta.get("finish_reason") or None,
            error=_json(meta.get("error")),
            usage=_json(meta.get("usage")),
            event_count=int(meta.get("event_count", "0")),
            last_offset=meta.get("last_offset") or None,
            metadata=_json(meta.get("metadata")) or {},
            completion=_json(meta.get("completion")),
        )
