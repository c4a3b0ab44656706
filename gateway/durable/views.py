"""What the rest of the gateway sees of a durable stream: whether a stream is one (its meta
hash says so), and its messages as the admin API shows them.

A durable stream is listed, inspected, tailed and purged like a generation, but its entries
are messages of any bytes, not generation events: every view that reads entries asks
``durable_path`` first, and the generation APIs refuse it (``not_a_generation``: a 404 that
names its ``/v1/ds`` URL).

A message as the admin API shows it::

    {"offset": "<entry id>", "type": "message", "ds_offset": "<the protocol's offset>",
     "size": <its bytes>, "encoding": "json" | "text" | "base64", "data": ...}

``json`` (a JSON stream: ``application/json`` or ``+json``): ``data`` is the message's JSON
value itself; ``text`` (a ``text/*`` stream): the message as a string; ``base64`` (any other
type, or a message that is not what its stream's type promises: a text stream's bytes that
are not UTF-8): the bytes in standard base64. The JSON value is copied into the answer as it
is stored (compact JSON, checked to parse): a value nested too deep for a serializer to
write again still shows.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from urllib.parse import quote

import orjson

from gateway.durable import offsets as ds_offsets
from gateway.durable.protocol import is_json
from gateway.durable.store import stream_id_of
from shared import offsets
from shared.errors import InvalidOffset, NotAGeneration

PREFIX = "/v1/ds/"
MESSAGE = "message"
"""The ``type`` of every entry of a durable stream."""


def durable_path(stream_id: str, meta: Mapping[str, str]) -> str | None:
    """The path of the durable stream ``stream_id`` whose meta hash (or its ``META_FIELDS``)
    is ``meta``; None for a generation. Its ``api`` field names the path, whose digest is
    the id (so nothing else passes for one)."""
    raw = meta.get("api")
    if not raw or '"durable"' not in raw:  # the generations' case, without parsing JSON
        return None
    try:
        api = json.loads(raw)
    except ValueError:
        return None
    durable = api.get("durable") if isinstance(api, dict) else None
    path = durable.get("path") if isinstance(durable, dict) else None
    if not isinstance(path, str) or stream_id_of(path) != stream_id:
        return None
    return path


def url_of(path: str) -> str:
    """Where the durable stream at ``path`` is read and written."""
    return PREFIX + quote(path, safe="/")


def not_a_generation(stream_id: str, meta: Mapping[str, str]) -> None:
    """``NotAGeneration`` (404, pointing to ``/v1/ds/{path}``) if ``stream_id`` is a durable
    stream: for the generation APIs, which read entries as generation events."""
    path = durable_path(stream_id, meta)
    if path is not None:
        raise NotAGeneration(stream_id, url_of(path))


def entry_id_after(after: str | None) -> str | None:
    """Where an admin read of a durable stream starts: an entry id (the admin API's
    offsets), a Durable Streams offset, ``-1`` (the start; also no ``after``); None for
    ``$`` (only what comes next)."""
    if after is None or after == ds_offsets.BEGINNING:
        return offsets.START
    if after == offsets.NOW:
        return None
    if "_" in after:
        return ds_offsets.to_entry_id(after)
    try:
        return offsets.validate(after)
    except InvalidOffset:
        raise InvalidOffset(
            f"malformed offset {after[:64]!r}: expected an entry id ('<ms>-<seq>'), "
            "a Durable Streams offset, '-1' or '$'"
        ) from None


def message_fields(entry_id: str, data: bytes, content_type: str) -> bytes:
    """A message's fields beyond ``offset`` and ``type``, as one JSON object (the admin
    tail's SSE ``data``): ``ds_offset``, ``size``, ``encoding``, ``data``."""
    head = (
        b'{"ds_offset":"'
        + ds_offsets.from_entry_id(entry_id).encode()
        + b'","size":'
        + str(len(data)).encode()
    )
    value = _compact_json(data) if is_json(content_type) else None
    if value is not None:
        return head + b',"encoding":"json","data":' + value + b"}"
    if content_type.startswith("text/") or is_json(content_type):
        try:
            text = data.decode()
        except UnicodeDecodeError:
            pass
        else:
            return head + b',"encoding":"text","data":' + orjson.dumps(text) + b"}"
    encoded = base64.b64encode(data)
    return head + b',"encoding":"base64","data":"' + encoded + b'"}'


def message_event(entry_id: str, data: bytes, content_type: str) -> bytes:
    """One message as the admin API's events list it (JSON)."""
    fields = message_fields(entry_id, data, content_type)
    return b'{"offset":"' + entry_id.encode() + b'","type":"message",' + fields[1:]


def _compact_json(data: bytes) -> bytes | None:
    """``data`` as one JSON value on one line (what a JSON stream stores: compact JSON, as
    it is); None if it is not JSON."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if b"\n" not in data and b"\r" not in data:
        return data
    try:  # whitespace between tokens: one line, for an SSE data line
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return None
