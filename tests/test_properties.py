"""Properties of the three things clients send back to us: offsets, stream ids, read tokens.
Whatever the input, the answer is a value or the SPEC's error, never another exception."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.auth import ReadTokens
from gateway.ids import is_stream_id, new_stream_id
from shared import offsets
from shared.errors import InvalidOffset, Unauthorized

KEY, OTHER_KEY = b"k" * 32, b"o" * 32
entry_ids = st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))


@given(entry_ids)
def test_every_redis_entry_id_is_a_valid_offset(parts: tuple[int, int]) -> None:
    offset = f"{parts[0]}-{parts[1]}"
    assert offsets.validate(offset) == offset
    assert offsets.parse(offset) == parts


@given(st.text(max_size=80))
def test_any_text_is_an_offset_or_invalid_offset(text: str) -> None:
    try:
        valid = offsets.validate(text)
    except InvalidOffset as exc:
        assert exc.code == "invalid_offset"
        return
    assert valid == text and (text == offsets.NOW or text.isascii())


@given(entry_ids, entry_ids)
def test_is_after_orders_offsets_like_redis(a: tuple[int, int], b: tuple[int, int]) -> None:
    first, second = f"{a[0]}-{a[1]}", f"{b[0]}-{b[1]}"
    assert offsets.is_after(first, second) == (a > b)
    assert not (offsets.is_after(first, second) and offsets.is_after(second, first))


@settings(max_examples=300)
@given(st.integers(0, 10**6))
def test_new_stream_ids_are_stream_ids_and_never_look_like_options(_: int) -> None:
    stream_id = new_stream_id()
    assert is_stream_id(stream_id) and not stream_id.startswith("-")


@given(st.text(max_size=40))
def test_is_stream_id_answers_for_any_text(text: str) -> None:
    assert is_stream_id(text) in (True, False)
    if is_stream_id(text):
        assert len(text) == 22 and text.isascii()


@given(st.from_regex(r"[A-Za-z0-9_-]{22}", fullmatch=True))
def test_a_token_opens_its_stream_only(stream_id: str) -> None:
    tokens = ReadTokens(KEY, ttl_s=600)
    assert tokens.verify(tokens.issue(stream_id)) == stream_id
    rotated = ReadTokens(OTHER_KEY, ttl_s=600, previous_keys=[KEY])
    assert rotated.verify(tokens.issue(stream_id)) == stream_id  # the previous key still works
    with pytest.raises(Unauthorized):
        ReadTokens(OTHER_KEY, ttl_s=600).verify(tokens.issue(stream_id))  # any other key: no


@given(st.from_regex(r"[A-Za-z0-9_-]{22}", fullmatch=True), st.data())
def test_any_change_to_a_token_is_refused(stream_id: str, data: st.DataObject) -> None:
    tokens = ReadTokens(KEY, ttl_s=600)
    token = tokens.issue(stream_id)
    position = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.characters(codec="utf-8").filter(lambda c: c != token[position]))
    tampered = token[:position] + replacement + token[position + 1 :]
    with pytest.raises(Unauthorized):
        tokens.verify(tampered)


@given(st.text(max_size=200))
def test_any_text_is_a_token_or_unauthorized(text: str) -> None:
    try:
        ReadTokens(KEY, ttl_s=600).verify(text)
    except Unauthorized:
        return
    raise AssertionError(f"{text!r} was accepted")


def test_an_expired_token_is_refused() -> None:
    token = ReadTokens(KEY, ttl_s=60).issue(new_stream_id(), now=time.time() - 120)
    with pytest.raises(Unauthorized, match="expired"):
        ReadTokens(KEY, ttl_s=60).verify(token)
