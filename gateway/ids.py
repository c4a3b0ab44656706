"""Stream ids: 128 random bits, URL-safe, the only way to name a stream."""

from __future__ import annotations

import re
import secrets

from shared.errors import StreamNotFound
from shared.keys import WITHIN

_STREAM_ID = re.compile(r"[A-Za-z0-9_-]{22}(~[A-Za-z0-9_-]{22})?")


def new_stream_id(within: str | None = None) -> str:
    """Never starting with ``-``, which a command line would take for an option
    (``tokenrelay admin tail <id>``); 22 characters, ~127 random bits. ``within``: the id of
    the durable stream the generation writes into (``shared.keys``)."""
    while True:
        stream_id = secrets.token_urlsafe(16)
        if not stream_id.startswith("-"):
            return f"{within}{WITHIN}{stream_id}" if within else stream_id


def is_stream_id(value: str) -> bool:
    return _STREAM_ID.fullmatch(value) is not None


def checked_id(stream_id: str) -> str:
    """``stream_id`` if it can name a stream; ``StreamNotFound`` otherwise."""
    if not is_stream_id(stream_id):
        raise StreamNotFound(stream_id)
    return stream_id
