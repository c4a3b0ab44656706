"""Durable Streams offsets: Redis entry ids written so that they sort as strings.

The protocol wants offsets that compare lexicographically; an entry id ``<ms>-<seq>`` does
not (``9-0`` sorts after ``10-0``). Each half is written with 16 decimal digits, as the
protocol's reference server writes its own: ``0000001733200000_0000000000000003``. The
stream's beginning is the all-zero offset, which is also the tail of an empty stream.
"""

from __future__ import annotations

import re

from shared.errors import InvalidOffset

BEGINNING = "-1"
"""The protocol's sentinel for "from the start"."""

NOW = "now"
"""The protocol's sentinel for "from the current tail"."""

ZERO = "0000000000000000_0000000000000000"

_OFFSET = re.compile(r"([0-9]{16})_([0-9]{16})")


def from_entry_id(entry_id: str) -> str:
    """The offset of a Redis entry id (``<ms>-<seq>``)."""
    ms, _, seq = entry_id.partition("-")
    return f"{int(ms):016d}_{int(seq):016d}"


def to_entry_id(offset: str) -> str:
    """The Redis entry id an offset names; ``InvalidOffset`` for anything else (the
    sentinels included: callers resolve those first)."""
    match = _OFFSET.fullmatch(offset)
    if match is None:
        raise InvalidOffset(
            f"malformed offset {offset[:64]!r}: expected '-1', 'now' or an offset this server gave"
        )
    return f"{int(match[1])}-{int(match[2])}"
