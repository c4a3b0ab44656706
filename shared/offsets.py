"""Stream offsets: opaque to clients, Redis entry ids (``<ms>-<seq>``) inside."""

from __future__ import annotations

import re

from shared.errors import InvalidOffset

START = "0-0"
"""Before the first event: reading after it replays the whole stream."""

NOW = "$"
"""Only events appended from now on."""

# [0-9], not \d: Python's \d also matches other scripts' digits ("٣"), which int() accepts
# and Redis does not.
_ENTRY_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")


def parse(offset: str) -> tuple[int, int]:
    """The sortable form of an entry id; ``InvalidOffset`` if it is not one."""
    match = _ENTRY_ID.fullmatch(offset)
    if match is None:
        raise InvalidOffset(f"malformed offset {offset[:64]!r}: expected '<ms>-<seq>' or '$'")
    ms, seq = int(match[1]), int(match[2])
    if ms >= 2**64 or seq >= 2**64:
        raise InvalidOffset(f"offset {offset[:64]!r} is out of range")
    return ms, seq


def validate(offset: str) -> str:
    """``offset`` itself if it is an entry id or ``$``."""
    if offset != NOW:
        parse(offset)
    return offset


def is_after(offset: str, other: str) -> bool:
    """Whether ``offset`` comes strictly after ``other``."""
    return parse(offset) > parse(other)
