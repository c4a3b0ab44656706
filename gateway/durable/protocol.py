"""The Durable Streams protocol's headers and bodies: parsed and validated here, before any
Redis call, so that a malformed request is a 400 whatever the stream's state."""

from __future__ import annotations

import json
import re
from datetime import datetime

import orjson

from shared.errors import InvalidInput

NEXT_OFFSET = "Stream-Next-Offset"
UP_TO_DATE = "Stream-Up-To-Date"
CLOSED = "Stream-Closed"
CURSOR = "Stream-Cursor"
TTL = "Stream-TTL"
EXPIRES_AT = "Stream-Expires-At"
STREAM_SEQ = "Stream-Seq"
FORKED_FROM = "Stream-Forked-From"
FORK_OFFSET = "Stream-Fork-Offset"
FORK_SUB_OFFSET = "Stream-Fork-Sub-Offset"
PRODUCER_ID = "Producer-Id"
PRODUCER_EPOCH = "Producer-Epoch"
PRODUCER_SEQ = "Producer-Seq"
PRODUCER_EXPECTED_SEQ = "Producer-Expected-Seq"
PRODUCER_RECEIVED_SEQ = "Producer-Received-Seq"
SSE_DATA_ENCODING = "Stream-SSE-Data-Encoding"

EXPOSED_HEADERS = (
    NEXT_OFFSET,
    UP_TO_DATE,
    CLOSED,
    CURSOR,
    TTL,
    EXPIRES_AT,
    PRODUCER_EPOCH,
    PRODUCER_SEQ,
    PRODUCER_EXPECTED_SEQ,
    PRODUCER_RECEIVED_SEQ,
    "ETag",
    "Location",
    SSE_DATA_ENCODING,
)
"""What a browser's script may read of the answers (CORS)."""

REQUEST_HEADERS = (
    TTL,
    EXPIRES_AT,
    CLOSED,
    STREAM_SEQ,
    FORKED_FROM,
    FORK_OFFSET,
    FORK_SUB_OFFSET,
    PRODUCER_ID,
    PRODUCER_EPOCH,
    PRODUCER_SEQ,
    "If-None-Match",
)
"""What a browser's script may send (CORS)."""

JSON = "application/json"
DEFAULT_CONTENT_TYPE = "application/octet-stream"

MAX_SAFE_INTEGER = 2**53 - 1
"""The protocol's bound for epochs and sequence numbers (JavaScript's safe integers)."""

_TTL = re.compile(r"0|[1-9][0-9]{0,11}")
_INTEGER = re.compile(r"0|[1-9][0-9]{0,15}")
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+")


def media_type(header: str | None) -> str | None:
    """A Content-Type's media type, lower-cased, without parameters (``charset`` and the
    like do not make a stream another type); None if absent or empty."""
    if header is None:
        return None
    value = header.split(";", 1)[0].strip().lower()
    if not value:
        return None
    if _MEDIA_TYPE.fullmatch(value) is None:
        raise InvalidInput(f"malformed Content-Type {header[:64]!r}")
    return value


def is_json(content_type: str) -> bool:
    return content_type == JSON or content_type.endswith("+json")


def sse_text(content_type: str) -> bool:
    """Whether SSE carries the stream's bytes as they are (``text/*`` and JSON); others
    travel in base64."""
    return content_type.startswith("text/") or is_json(content_type)


def api_json(path: str) -> str:
    """What a durable stream's meta hash says of it (``api``): its path."""
    return orjson.dumps({"durable": {"path": path}}).decode()


def ttl_seconds(header: str | None) -> int | None:
    """``Stream-TTL``: a non-negative decimal integer without sign, leading zeros or point."""
    if header is None:
        return None
    if _TTL.fullmatch(header) is None:
        raise InvalidInput(f"Stream-TTL must be a non-negative integer, not {header[:32]!r}")
    return int(header)


def parse_rfc3339(value: str) -> datetime:
    """An RFC 3339 timestamp with its offset; ``InvalidInput`` otherwise."""
    if _RFC3339.fullmatch(value) is None:
        raise InvalidInput(f"Stream-Expires-At must be an RFC 3339 timestamp, not {value[:64]!r}")
    try:
        return datetime.fromisoformat(value.upper().replace(" ", "T").replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(f"Stream-Expires-At {value[:64]!r} is not a valid time") from exc


def expires_at(header: str | None) -> str | None:
    if header is None:
        return None
    parse_rfc3339(header)
    return header


def integer(name: str, header: str) -> int:
    """A producer's epoch or seq: a decimal integer from 0 to 2^53 - 1."""
    if _INTEGER.fullmatch(header) is None or int(header) > MAX_SAFE_INTEGER:
        raise InvalidInput(f"{name} must be an integer from 0 to 2^53-1, not {header[:32]!r}")
    return int(header)


def flag(header: str | None) -> bool:
    """A ``true`` header (``Stream-Closed``); anything but ``true`` is not set."""
    return header is not None and header.strip().lower() == "true"


def json_messages(body: bytes, *, allow_empty_array: bool) -> list[bytes]:
    """A JSON body's messages: each element of a top-level array (one level flattened), or
    the body itself — each exactly as sent (a large integer stays what it was, which a
    parse and a dump would make a float), without the whitespace around it."""
    value = _parsed(body)
    if not isinstance(value, list):
        return [body.strip(_WHITESPACE)]
    if not value and not allow_empty_array:
        raise InvalidInput("an empty JSON array appends nothing")
    return _elements(body)


_WHITESPACE = b" \t\r\n"
# what matters to find an array's top-level commas: strings (skipped whole) and brackets
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},]')


def _parsed(body: bytes) -> object:
    """The body's JSON value; ``InvalidInput`` if it is not JSON (RFC 8259: no NaN)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass  # orjson also refuses valid JSON: a lone surrogate escape, a number beyond doubles
    try:
        return json.loads(body.decode(), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}") from exc


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _elements(array: bytes) -> list[bytes]:
    """The top-level elements of a valid JSON array, as their bytes."""
    elements: list[bytes] = []
    depth = 0
    start = 0
    for token in _TOKENS.finditer(array):
        mark = token[0]
        if mark in (b"[", b"{"):
            depth += 1
            if depth == 1:
                start = token.end()
        elif mark in (b"]", b"}"):
            depth -= 1
            if depth == 0:
                elements.append(array[start : token.start()].strip(_WHITESPACE))
        elif mark == b"," and depth == 1:
            elements.append(array[start : token.start()].strip(_WHITESPACE))
            start = token.end()
    return [] if elements == [b""] else elements  # "[ ]" has no element


def json_array(messages: list[bytes]) -> bytes:
    """A JSON stream's messages as the protocol reads them: one JSON array."""
    return b"[" + b",".join(messages) + b"]"
