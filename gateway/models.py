"""Request and response bodies of the public API."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from shared.status import Status

MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=64)]
MetadataValue = Annotated[str, StringConstraints(max_length=512)]


def _integral(value: object) -> object:
    return int(value) if isinstance(value, float) and value.is_integer() else value


class Message(BaseModel):
    """One chat message; extra OpenAI fields (``name``, ``tool_calls``...) pass through."""

    model_config = ConfigDict(extra="allow", strict=True)

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None


STREAM_ID_HEADER = "X-TokenRelay-Stream-Id"
READ_TOKEN_HEADER = "X-TokenRelay-Read-Token"
"""Name a stream, and give its read token, where an answer's body cannot (the compatible
APIs, durable streams)."""


class CreateStream(BaseModel):
    """``POST /v1/streams``: an OpenAI chat-completion request plus tokenrelay's options.

    Other chat-completion parameters pass through to the upstream unchanged.
    """

    model_config = ConfigDict(extra="allow", strict=True)

    model: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    messages: Annotated[list[Message], Field(min_length=1, max_length=1024)]
    # JSON Schema counts 5.0 as an integer, and so does the API
    max_tokens: Annotated[int, BeforeValidator(_integral), Field(ge=1, le=1_000_000)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    metadata: Annotated[dict[MetadataKey, MetadataValue], Field(max_length=16)] | None = None
    cancel_on_disconnect_s: Annotated[float, Field(gt=0, le=86_400)] | None = Field(
        default=None,
        description="Cancel the generation after it has had no reader for this long.",
    )
    durable_stream: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = Field(
        default=None,
        description="The path of an open JSON durable stream (/v1/ds/<path>) that the "
        "generation's events are also appended to, as messages, between the application's "
        "own (an agent run).",
    )

    def upstream_request(self) -> dict[str, Any]:
        """What the worker sends upstream: everything but tokenrelay's own options."""
        request = self.model_dump(
            exclude={"metadata", "cancel_on_disconnect_s", "durable_stream"}, exclude_none=True
        )
        for managed in ("stream", "stream_options"):  # the worker sets these itself
            request.pop(managed, None)
        return request


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorInfo(BaseModel):
    code: str
    message: str
    details: list[ErrorDetail] | None = None


class ErrorBody(BaseModel):
    """Every non-2xx answer (SPEC "Errors")."""

    error: ErrorInfo


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses a route may answer."""
    return {status: {"model": ErrorBody} for status in statuses}


API_ERRORS = error_responses(400, 401, 403, 404, 410, 413, 422, 429, 503)
"""What any route may answer besides its success (bad input, credentials, unknown stream,
expired offset, body too large, invalid fields, rate limited, Redis or the replica down)."""


class Created(BaseModel):
    """``201`` answer to ``POST /v1/streams``."""

    id: str
    status: Status
    created_at: float
    read_token: str
    events_url: str
