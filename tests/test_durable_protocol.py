"""The Durable Streams protocol's parsing: JSON messages kept as sent, headers validated."""

from __future__ import annotations

import json

import pytest

from gateway.durable import offsets
from gateway.durable.protocol import (
    expires_at,
    integer,
    json_array,
    json_messages,
    media_type,
    ttl_seconds,
)
from shared.errors import InvalidInput


@pytest.mark.parametrize(
    ("body", "messages"),
    [
        (b'{"event": "created"}', [b'{"event": "created"}']),
        (b'[{"event": "a"}, {"event": "b"}]', [b'{"event": "a"}', b'{"event": "b"}']),
        (b"[[1,2], [3,4]]", [b"[1,2]", b"[3,4]"]),
        (b"[[[1,2,3]]]", [b"[[1,2,3]]"]),
        # commas and brackets inside strings, escaped quotes, whitespace around elements
        (b' [ 1 , "x,]}" , {"k": "\\"]"} ] ', [b"1", b'"x,]}"', b'{"k": "\\"]"}']),
        # kept as sent: parsing and dumping would make these a float and an error
        (b"[12345678901234567890123, 1.50]", [b"12345678901234567890123", b"1.50"]),
        (b'["\\ud800"]', [b'"\\ud800"']),
        (b" 7 ", [b"7"]),
    ],
)
def test_json_bodies_become_messages_exactly_as_sent(body: bytes, messages: list[bytes]) -> None:
    assert json_messages(body, allow_empty_array=False) == messages
    # and read back, they are one JSON array of those elements
    assert json.loads(json_array(messages)) == [json.loads(m) for m in messages]


def test_an_empty_array_creates_but_does_not_append() -> None:
    assert json_messages(b"[ ]", allow_empty_array=True) == []
    with pytest.raises(InvalidInput):
        json_messages(b"[]", allow_empty_array=False)


@pytest.mark.parametrize("body", [b"NaN", b"[1,]", b"{", b"\xff", b"", b"[Infinity]"])
def test_what_is_not_json_is_refused(body: bytes) -> None:
    with pytest.raises(InvalidInput):
        json_messages(body, allow_empty_array=True)


def test_headers() -> None:
    assert media_type("Application/JSON; charset=utf-8") == "application/json"
    assert media_type(None) is None and media_type(" ") is None
    assert ttl_seconds("3600") == 3600 and ttl_seconds("0") == 0
    for bad in ("abc", "-1", "00060", "+60", "60.5", "1e3", "٣"):
        with pytest.raises(InvalidInput):
            ttl_seconds(bad)
    assert expires_at("2026-12-03T10:00:00.123Z") == "2026-12-03T10:00:00.123Z"
    assert expires_at("2026-12-03T10:00:00+01:00") == "2026-12-03T10:00:00+01:00"
    with pytest.raises(InvalidInput):
        expires_at("not-a-timestamp")
    assert integer("Producer-Seq", "9007199254740991") == 2**53 - 1
    for bad in ("9007199254740992", "1abc", "0xyz", "1e3", "-1", "01"):
        with pytest.raises(InvalidInput):
            integer("Producer-Seq", bad)


def test_offsets_sort_as_their_entries_do() -> None:
    ids = ["0-0", "9-0", "10-0", "10-1", "1733200000123-4"]
    written = [offsets.from_entry_id(entry_id) for entry_id in ids]
    assert written == sorted(written)
    assert written[0] == offsets.ZERO == "0000000000000000_0000000000000000"
    assert [offsets.to_entry_id(offset) for offset in written] == ids
    for bad in ("-1", "now", "", "0_0", "0000000000000000_000000000000000", "a" * 33):
        with pytest.raises(InvalidInput):
            offsets.to_entry_id(bad)
