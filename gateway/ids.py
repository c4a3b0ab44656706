"""Stream ids: 128 random bits, URL-safe, the only way to name a stream."""

from __future__ import annotations

import re
import secrets

_STREAM_ID = re.compile(r"[A-Za-z0-9_-]{22}")


def new_stream_id() -> str:
    return secrets.token_urlsafe(16)


def is_stream_id(value: str) -> bool:
    return _STREAM_ID.fullmatch(value) is not None
