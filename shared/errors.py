"""Named errors shared by both sides.

Request errors (``RequestError`` subclasses) are translated to an HTTP status at the
gateway's edge; ``UpstreamError`` is translated to a terminal ``error`` event by the worker.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class RequestError(Exception):
    """A request the gateway refuses; ``code`` is the machine-readable ``error.code``."""

    code = "bad_request"

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}
        """Headers the answer carries (a protocol's own, such as Durable Streams')."""


class InvalidInput(RequestError):
    code = "invalid_request"


class InvalidOffset(InvalidInput):
    code = "invalid_offset"


class Unauthorized(RequestError):
    code = "unauthorized"


class Forbidden(RequestError):
    code = "forbidden"


class AdminDisabled(Forbidden):
    code = "admin_disabled"


class StreamNotFound(RequestError):
    code = "stream_not_found"

    def __init__(self, stream_id: str) -> None:
        super().__init__(f"no stream {stream_id[:64]!r} (unknown or expired)")


class NotAGeneration(StreamNotFound):
    """The id names a durable stream, which the generation APIs do not serve (404): its
    message points to where it is read, ``/v1/ds/{path}``."""

    code = "not_a_generation"

    def __init__(self, stream_id: str, url: str) -> None:
        RequestError.__init__(
            self,
            f"stream {stream_id[:64]!r} is a durable stream, not a generation: "
            f"read it at {url} (the Durable Streams protocol)",
        )


class OffsetExpired(RequestError):
    code = "offset_expired"


class StreamGone(RequestError):
    """A durable stream that was deleted while forks of it still read what they inherited."""

    code = "stream_deleted"


class PayloadTooLarge(RequestError):
    code = "payload_too_large"


class Conflict(RequestError):
    """The request contradicts the stream's state (a durable stream's type, closure,
    producer sequence)."""

    code = "conflict"


class InvalidFields(RequestError):
    code = "invalid_fields"


class RateLimited(RequestError):
    code = "rate_limited"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RedisUnavailable(RequestError):
    code = "redis_unavailable"

    def __init__(self, message: str = "Redis is unavailable", retry_after_s: int = 2) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ShuttingDown(RequestError):
    """This gateway replica is stopping: another one answers (503, ``Retry-After``)."""

    code = "shutting_down"

    def __init__(self) -> None:
        super().__init__("this gateway is shutting down; retry (another replica answers)")
        self.retry_after_s = 1


class StreamErrorCode(StrEnum):
    """The ``code`` of a terminal ``error`` event."""

    RATE_LIMIT_EXCEEDED = "rate_limit_exceeded"
    UPSTREAM_ERROR = "upstream_error"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    UPSTREAM_REJECTED = "upstream_rejected"
    PRODUCER_LOST = "producer_lost"
    INTERNAL = "internal"


class UpstreamError(Exception):
    """The upstream model failed; ends the stream with an ``error`` event of ``code``.

    ``retry_after_s``: the wait the upstream asked for (its ``Retry-After``), if it did.
    ``upstream``: what the upstream itself answered, if it answered with an error (its
    ``status``, its ``error`` object, ``retry_after_s``), kept in the ``error`` event.
    """

    def __init__(
        self,
        code: StreamErrorCode,
        message: str,
        *,
        retryable: bool,
        retry_after_s: float | None = None,
        upstream: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.upstream = upstream
