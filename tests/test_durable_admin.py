"""Durable streams (``/v1/ds``) in the admin API, against a real gateway and Redis: listed with
their status and path, shown with their own fields, their messages read as ``message`` events
(JSON values, text, and bytes that are not UTF-8 in base64), tailed until they are closed,
refused a cancel, and purged down to their last key; the generation APIs refuse their ids
with a 404 that points to ``/v1/ds``; and ``/metrics`` counts their writes."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families
from redis.client import NEVER_DECODE

from gateway.durable import offsets as ds_offsets
from gateway.durable.store import stream_id_of
from gateway.durable.views import (
    durable_path,
    entry_id_after,
    message_event,
    message_fields,
    not_a_generation,
)
from shared.errors import InvalidOffset, NotAGeneration
from shared.keys import Keys
from tests.processes import API_KEY, REDIS_URL, Stack

ADMIN_TOKEN = "test-admin-token-durable"
STACK_ENV = {"TOKENRELAY_ADMIN_TOKEN": ADMIN_TOKEN, "TOKENRELAY_DS_LONG_POLL_S": "2"}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
KEY = {"Authorization": f"Bearer {API_KEY}"}
BINARY = b"\xff\xfe\x00bin\x80"
"""Bytes that are no UTF-8 (the process's Redis client would fail to decode them)."""


@pytest.fixture
async def http(shared_stack: tuple[Stack, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=shared_stack[1], timeout=30) as client:
        yield client


@pytest.fixture
async def redis() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def keys(shared_stack: tuple[Stack, str]) -> Keys:
    return Keys(shared_stack[0].prefix)


async def create(
    http: httpx.AsyncClient,
    path: str,
    content_type: str | None,
    body: bytes = b"",
    **headers: str,
) -> str:
    """A new durable stream at ``path``; its id (as the answer names it)."""
    sent = {**KEY, **headers}
    if content_type is not None:
        sent["Content-Type"] = content_type
    answer = await http.put(f"/v1/ds/{path}", content=body, headers=sent)
    assert answer.status_code == 201, answer.text
    stream_id = answer.headers["X-TokenRelay-Stream-Id"]
    assert stream_id == stream_id_of(path)
    return stream_id


async def append(
    http: httpx.AsyncClient, path: str, content_type: str, body: bytes, **headers: str
) -> httpx.Response:
    return await http.post(
        f"/v1/ds/{path}", content=body, headers={**KEY, "Content-Type": content_type, **headers}
    )


async def close(http: httpx.AsyncClient, path: str) -> None:
    answer = await http.post(f"/v1/ds/{path}", headers={**KEY, "Stream-Closed": "true"})
    assert answer.status_code == 204, answer.text


async def events(http: httpx.AsyncClient, stream_id: str, **params: Any) -> list[dict[str, Any]]:
    answer = await http.get(f"/admin/api/streams/{stream_id}/events", params=params, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    listed: list[dict[str, Any]] = answer.json()["events"]
    return listed


async def entry_ids(redis: aioredis.Redis, keys: Keys, stream_id: str) -> list[str]:
    """The stream's entry ids (its messages undecoded: they may be any bytes)."""
    entries = await redis.execute_command(  # type: ignore[no-untyped-call]
        "XRANGE", keys.events(stream_id), "-", "+", **{NEVER_DECODE: True}
    )
    return [entry_id.decode() for entry_id, _ in entries]


def message(entry_id: str, encoding: str, data: object, size: int) -> dict[str, Any]:
    return {
        "offset": entry_id,
        "type": "message",
        "ds_offset": ds_offsets.from_entry_id(entry_id),
        "size": size,
        "encoding": encoding,
        "data": data,
    }


def sse(text: str) -> list[dict[str, Any]]:
    """An SSE body's frames: ``{"id"?, "event", "data"}`` (data parsed), comments left out."""
    frames = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.split("\n") if line and not line.startswith(":")
        )
        if "data" in fields:
            frame: dict[str, Any] = {"event": fields["event"], "data": json.loads(fields["data"])}
            if "id" in fields:
                frame["id"] = fields["id"]
            frames.append(frame)
    return frames


# -- the views, without a gateway ------------------------------------------------------------


def test_a_durable_stream_is_known_by_its_api_field_and_its_paths_digest() -> None:
    api = json.dumps({"durable": {"path": "a/b"}})
    assert durable_path(stream_id_of("a/b"), {"api": api}) == "a/b"
    assert durable_path(stream_id_of("other"), {"api": api}) is None  # not its digest
    assert durable_path("x" * 22, {}) is None
    assert durable_path("x" * 22, {"api": json.dumps({"include_usage": True})}) is None
    assert durable_path("x" * 22, {"api": '{"durable": broken'}) is None
    assert durable_path(stream_id_of("a/b"), {"api": '{"durable": {"path": 5}}'}) is None
    with pytest.raises(NotAGeneration) as refused:
        not_a_generation(
            stream_id_of("a/b c?"), {"api": json.dumps({"durable": {"path": "a/b c?"}})}
        )
    assert refused.value.code == "not_a_generation"
    assert refused.value.message == (
        f"stream {stream_id_of('a/b c?')!r} is a durable stream, not a generation: "
        "read it at /v1/ds/a/b%20c%3F (the Durable Streams protocol)"
    )
    not_a_generation("x" * 22, {"api": json.dumps({"message_id": "m"})})  # a generation: passes


def test_messages_are_json_text_or_base64_by_their_streams_type() -> None:
    ds = "0000000000000001_0000000000000002"
    assert json.loads(message_event("1-2", b'{"a":[1,2]}', "application/json")) == message(
        "1-2", "json", {"a": [1, 2]}, 11
    )
    assert json.loads(message_fields("1-2", b'"x"', "application/vnd.api+json")) == {
        "ds_offset": ds,
        "size": 3,
        "encoding": "json",
        "data": "x",
    }
    # JSON on several lines becomes one (an SSE data line); too deep to write again: as stored
    assert message_fields("1-2", b'{\n"a": 1}', "application/json").endswith(
        b'"encoding":"json","data":{"a":1}}'
    )
    deep = b"[" * 600 + b"]" * 600
    assert json.loads(message_event("1-2", deep, "application/json"))["data"] is not None
    assert json.loads(message_event("1-2", "héllo\nworld".encode(), "text/plain")) == message(
        "1-2", "text", "héllo\nworld", 12
    )
    for content_type in ("text/plain", "application/octet-stream", "application/json"):
        assert json.loads(message_event("1-2", BINARY, content_type)) == message(
            "1-2", "base64", base64.b64encode(BINARY).decode(), len(BINARY)
        )
    assert json.loads(message_event("1-2", b"plain ascii", "application/octet-stream")) == (
        message("1-2", "base64", "cGxhaW4gYXNjaWk=", 11)
    )


def test_admin_offsets_of_a_durable_stream() -> None:
    assert entry_id_after(None) == "0-0"
    assert entry_id_after("-1") == "0-0"
    assert entry_id_after("$") is None
    assert entry_id_after("17-3") == "17-3"
    assert entry_id_after("0000000000000017_0000000000000003") == "17-3"
    for bad in ("now", "17", "0000000000000017_3", "x-1"):
        with pytest.raises(InvalidOffset):
            entry_id_after(bad)


# -- the admin API ---------------------------------------------------------------------------


async def test_the_list_shows_durable_streams_with_status_and_path(
    http: httpx.AsyncClient,
) -> None:
    opened = await create(http, "list/open", "application/json", b"[1,2]")
    closed = await create(http, "list/closed", "text/plain", b"hi", **{"Stream-Closed": "true"})
    listed = (await http.get("/admin/api/streams", headers=ADMIN)).json()["streams"]
    by_id = {stream["id"]: stream for stream in listed}
    assert by_id[opened]["status"] == "open"
    assert by_id[opened]["model"] == ""
    assert by_id[opened]["event_count"] == 2
    assert by_id[opened]["token_events"] == 2  # messages: a durable stream has no terminal event
    assert by_id[opened]["readers"] == 0
    assert by_id[opened]["durable"] == {
        "path": "list/open",
        "url": "/v1/ds/list/open",
        "content_type": "application/json",
        "closed": False,
        "deleted": False,
    }
    assert by_id[closed]["status"] == "completed"
    assert by_id[closed]["token_events"] == 1
    assert by_id[closed]["finished_at"] == by_id[closed]["created_at"]
    assert by_id[closed]["durable"]["closed"] is True
    for status, wanted, other in (("open", opened, closed), ("completed", closed, opened)):
        page = (
            await http.get("/admin/api/streams", params={"status": status}, headers=ADMIN)
        ).json()["streams"]
        assert wanted in {s["id"] for s in page} and other not in {s["id"] for s in page}
    body = {"model": "mock?tokens=2&rate=0", "messages": [{"role": "user", "content": "hi"}]}
    generation = (await http.post("/v1/streams", json=body, headers=KEY)).json()["id"]
    listed = (await http.get("/admin/api/streams", headers=ADMIN)).json()["streams"]
    assert next(s for s in listed if s["id"] == generation)["durable"] is None


async def test_show_a_fork_with_its_producers_ttl_and_source(
    http: httpx.AsyncClient, redis: aioredis.Redis, keys: Keys
) -> None:
    source = await create(http, "show/source", "application/json", b'[{"n":1},{"n":2}]')
    ids = await entry_ids(redis, keys, source)
    fork = await create(
        http,
        "show/fork",
        None,
        **{
            "Stream-Forked-From": "/v1/ds/show/source",
            "Stream-Fork-Offset": ds_offsets.from_entry_id(ids[0]),
            "Stream-TTL": "600",
        },
    )
    for seq in range(3):
        producer = {"Producer-Id": "writer-1", "Producer-Epoch": "2", "Producer-Seq": str(seq)}
        assert (await append(http, "show/fork", "application/json", b"[3]", **producer)).is_success
    assert (
        await append(http, "show/fork", "application/json", b"4", **{"Stream-Seq": "b"})
    ).status_code == 204
    detail = (await http.get(f"/admin/api/streams/{fork}", headers=ADMIN)).json()
    fork_ids = await entry_ids(redis, keys, fork)
    assert fork_ids[0] == ids[0] and len(fork_ids) == 5
    assert detail["status"] == "open"
    assert detail["event_count"] == 5
    assert detail["token_events"] == 5
    assert detail["last_offset"] == fork_ids[-1]
    assert detail["readers"] == []
    assert (detail["worker"], detail["attempts"]) == (None, 0)
    assert detail["time_to_first_token_s"] is None and detail["tokens_per_s"] is None
    assert detail["bytes"] > 0
    durable = detail["durable"]
    assert 590 < durable.pop("expires_in_s") <= 600
    assert durable == {
        "path": "show/fork",
        "url": "/v1/ds/show/fork",
        "content_type": "application/json",
        "closed": False,
        "deleted": False,
        "ttl_s": 600,
        "expires_at": None,
        "next_offset": ds_offsets.from_entry_id(fork_ids[-1]),
        "stream_seq": "b",
        "fork": {
            "source": "show/source",
            "offset": ds_offsets.from_entry_id(ids[0]),
            "sub_offset": 0,
        },
        "forks": [],
        "producer_count": 1,
        "producers": [{"id": "writer-1", "epoch": 2, "seq": 2}],
    }
    shown = (await http.get(f"/admin/api/streams/{source}", headers=ADMIN)).json()["durable"]
    assert shown["forks"] == ["show/fork"] and shown["fork"] is None
    assert shown["ttl_s"] is None and shown["expires_in_s"] > 0  # idle retention


async def test_events_of_json_text_and_binary_streams(
    http: httpx.AsyncClient, redis: aioredis.Redis, keys: Keys
) -> None:
    json_id = await create(http, "events/json", "application/json", b'[{"a":1},"x",[null]]')
    text_id = await create(http, "events/text", "text/plain; charset=utf-8", "é\n".encode())
    assert (await append(http, "events/text", "text/plain", BINARY)).status_code == 204
    binary_id = await create(http, "events/binary", "application/octet-stream", BINARY)
    assert (
        await append(http, "events/binary", "application/octet-stream", b"ok")
    ).status_code == 204

    ids = await entry_ids(redis, keys, json_id)
    assert await events(http, json_id) == [
        message(ids[0], "json", {"a": 1}, 7),
        message(ids[1], "json", "x", 3),
        message(ids[2], "json", [None], 6),
    ]
    assert await events(http, json_id, after=ids[0], count=1) == [message(ids[1], "json", "x", 3)]
    by_ds_offset = await events(http, json_id, after=ds_offsets.from_entry_id(ids[1]))
    assert by_ds_offset == [message(ids[2], "json", [None], 6)]
    assert await events(http, json_id, after="-1", count=1) == [
        message(ids[0], "json", {"a": 1}, 7)
    ]
    assert await events(http, json_id, after="$") == []

    ids = await entry_ids(redis, keys, text_id)
    assert await events(http, text_id) == [
        message(ids[0], "text", "é\n", 3),
        message(ids[1], "base64", base64.b64encode(BINARY).decode(), len(BINARY)),
    ]
    ids = await entry_ids(redis, keys, binary_id)
    assert await events(http, binary_id) == [
        message(ids[0], "base64", base64.b64encode(BINARY).decode(), len(BINARY)),
        message(ids[1], "base64", "b2s=", 2),
    ]
    bad = await http.get(
        f"/admin/api/streams/{json_id}/events", params={"after": "nope"}, headers=ADMIN
    )
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_offset")


async def test_tail_follows_messages_until_the_stream_is_closed(
    http: httpx.AsyncClient, redis: aioredis.Redis, keys: Keys
) -> None:
    stream_id = await create(http, "tail/live", "application/octet-stream", BINARY)
    tail = f"/admin/api/streams/{stream_id}/tail"

    async def follow(**params: str) -> str:
        async with http.stream("GET", tail, params=params, headers=ADMIN) as answer:
            assert answer.status_code == 200
            assert answer.headers["content-type"] == "text/event-stream; charset=utf-8"
            return (await answer.aread()).decode()

    reading = asyncio.create_task(follow())
    await asyncio.sleep(0.5)
    assert (await append(http, "tail/live", "application/octet-stream", b"two")).status_code == 204
    await close(http, "tail/live")
    body = await asyncio.wait_for(reading, 10)
    ids = await entry_ids(redis, keys, stream_id)
    assert body.startswith("retry: 1000\n\n")
    assert sse(body) == [
        {
            "id": ids[0],
            "event": "message",
            "data": {
                "ds_offset": ds_offsets.from_entry_id(ids[0]),
                "size": len(BINARY),
                "encoding": "base64",
                "data": base64.b64encode(BINARY).decode(),
            },
        },
        {
            "id": ids[1],
            "event": "message",
            "data": {
                "ds_offset": ds_offsets.from_entry_id(ids[1]),
                "size": 3,
                "encoding": "base64",
                "data": "dHdv",
            },
        },
        {
            "event": "closed",
            "data": {"offset": ids[1], "ds_offset": ds_offsets.from_entry_id(ids[1])},
        },
    ]
    # resumed after its first message (Last-Event-ID), or read whole again
    async with http.stream("GET", tail, headers={**ADMIN, "Last-Event-ID": ids[0]}) as answer:
        resumed = sse((await answer.aread()).decode())
    assert [f.get("id") for f in resumed] == [ids[1], None]
    # closed at the offset asked for: 204, as a generation resumed after its end
    for after in (ids[1], "$"):
        ended = await http.get(tail, params={"after": after}, headers=ADMIN)
        assert ended.status_code == 204
    beyond = await http.get(tail, params={"after": "99999999999999-0"}, headers=ADMIN)
    assert (beyond.status_code, beyond.json()["error"]["code"]) == (400, "invalid_offset")


async def test_tail_of_a_tombstone_is_410_and_cancel_is_409(http: httpx.AsyncClient) -> None:
    source = await create(http, "tomb/source", "text/plain", b"a")
    fork = await create(http, "tomb/fork", None, **{"Stream-Forked-From": "/v1/ds/tomb/source"})
    assert (await http.delete("/v1/ds/tomb/source", headers=KEY)).status_code == 204
    shown = (await http.get(f"/admin/api/streams/{source}", headers=ADMIN)).json()
    assert shown["durable"]["deleted"] is True and shown["durable"]["forks"] == ["tomb/fork"]
    assert await events(http, source) == []
    tail = await http.get(f"/admin/api/streams/{source}/tail", headers=ADMIN)
    assert (tail.status_code, tail.json()["error"]["code"]) == (410, "stream_deleted")
    cancel = await http.post(f"/admin/api/streams/{fork}/cancel", headers=ADMIN)
    assert cancel.status_code == 409
    assert cancel.json()["error"] == {
        "code": "conflict",
        "message": "a durable stream is not cancelled: its writer closes it "
        "(POST /v1/ds/tomb/fork with 'Stream-Closed: true'), or purge it",
    }
    assert (await http.get("/v1/ds/tomb/fork", headers=KEY)).content == b"a"


async def test_purge_deletes_every_key_and_ends_live_readers(
    http: httpx.AsyncClient, redis: aioredis.Redis, keys: Keys
) -> None:
    stream_id = await create(
        http, "purge/live", "application/json", b"[1]", **{"Stream-TTL": "300"}
    )
    assert (
        await append(
            http,
            "purge/live",
            "application/json",
            b"2",
            **{"Producer-Id": "p", "Producer-Epoch": "0", "Producer-Seq": "0"},
        )
    ).status_code == 200
    assert await redis.zscore(keys.index, stream_id) is not None
    tail_offset = ds_offsets.from_entry_id((await entry_ids(redis, keys, stream_id))[-1])
    long_poll = asyncio.create_task(
        http.get(
            "/v1/ds/purge/live", params={"offset": tail_offset, "live": "long-poll"}, headers=KEY
        )
    )

    async def admin_tail() -> int:
        async with http.stream(
            "GET", f"/admin/api/streams/{stream_id}/tail", headers=ADMIN
        ) as answer:
            return len(sse((await answer.aread()).decode()))

    tailing = asyncio.create_task(admin_tail())
    await asyncio.sleep(0.5)
    purged = await http.delete(f"/admin/api/streams/{stream_id}", headers=ADMIN)
    assert purged.status_code == 200
    assert purged.json() == {"id": stream_id, "purged_keys": 2}  # meta and entries
    assert [k async for k in redis.scan_iter(match=f"*{{{stream_id}}}*")] == []
    assert await redis.zscore(keys.index, stream_id) is None
    # its readers end at once (the purge wakes them), not when their wait runs out
    assert (await asyncio.wait_for(long_poll, 3)).status_code == 404
    assert await asyncio.wait_for(tailing, 3) == 2  # its two messages, no "closed"
    assert (await http.get(f"/admin/api/streams/{stream_id}", headers=ADMIN)).status_code == 404
    assert (await http.delete(f"/admin/api/streams/{stream_id}", headers=ADMIN)).status_code == 404
    # the path is free again: a new stream, without the old one's producer or messages
    assert await create(http, "purge/live", "application/json") == stream_id
    again = (await http.get(f"/admin/api/streams/{stream_id}", headers=ADMIN)).json()
    assert (again["event_count"], again["durable"]["producers"]) == (0, [])


async def test_purging_the_last_fork_of_a_tombstone_collects_it(
    http: httpx.AsyncClient, redis: aioredis.Redis, keys: Keys
) -> None:
    source = await create(http, "collect/source", "application/json", b"[1,2]")
    fork = await create(
        http, "collect/fork", None, **{"Stream-Forked-From": "/v1/ds/collect/source"}
    )
    kept = await create(http, "collect/kept", "text/plain", b"x")
    assert (await http.delete("/v1/ds/collect/source", headers=KEY)).status_code == 204
    assert await redis.exists(keys.meta(source)) == 1  # a tombstone while its fork lives
    purged = await http.delete(f"/admin/api/streams/{fork}", headers=ADMIN)
    assert purged.json() == {"id": fork, "purged_keys": 2}
    for stream_id in (source, fork):
        assert [k async for k in redis.scan_iter(match=f"*{{{stream_id}}}*")] == []
    assert await redis.exists(keys.meta(kept)) == 1
    # and a source that is no tombstone only forgets the fork
    source = await create(http, "collect/live", "application/json", b"[1]")
    fork = await create(
        http, "collect/live-fork", None, **{"Stream-Forked-From": "/v1/ds/collect/live"}
    )
    assert await redis.hget(keys.meta(source), f"fork:{fork}") == "collect/live-fork"
    await http.delete(f"/admin/api/streams/{fork}", headers=ADMIN)
    assert await redis.hget(keys.meta(source), f"fork:{fork}") is None
    assert (await http.get("/v1/ds/collect/live", headers=KEY)).json() == [1]


async def test_a_binary_streams_readers_lag_is_counted(
    http: httpx.AsyncClient, redis: aioredis.Redis, keys: Keys
) -> None:
    """A reader of a durable stream, as a gateway records one: its lag counts entries of any
    bytes (the admin detail reads none of them as text)."""
    stream_id = await create(http, "lag/binary", "application/octet-stream", BINARY)
    for _ in range(2):
        await append(http, "lag/binary", "application/octet-stream", BINARY)
    ids = await entry_ids(redis, keys, stream_id)
    gateway_id = next(iter(await redis.hkeys(keys.gateways)))
    entry = {"gateway": gateway_id, "offset": ids[0], "since": 1.0}
    await redis.hset(keys.readers(stream_id), "r#1", json.dumps(entry))
    detail = (await http.get(f"/admin/api/streams/{stream_id}", headers=ADMIN)).json()
    assert detail["readers"] == [{"gateway": gateway_id, "offset": ids[0], "since": 1.0, "lag": 2}]


# -- the generation APIs ------------------------------------------------------------------------


async def test_the_generation_apis_refuse_a_durable_streams_id(http: httpx.AsyncClient) -> None:
    stream_id = await create(http, "not/a generation", "application/json", b"[1]")
    refusal = {
        "code": "not_a_generation",
        "message": f"stream {stream_id!r} is a durable stream, not a generation: "
        "read it at /v1/ds/not/a%20generation (the Durable Streams protocol)",
    }
    for method, path in (
        ("GET", f"/v1/streams/{stream_id}"),
        ("GET", f"/v1/streams/{stream_id}/events"),
        ("POST", f"/v1/streams/{stream_id}/cancel"),
    ):
        answer = await http.request(method, path, headers=KEY)
        assert (answer.status_code, answer.json()["error"]) == (404, refusal), (method, path)
    resume = await http.get(f"/v1/chat/completions/{stream_id}/stream", headers=KEY)
    assert resume.status_code == 404
    assert resume.json()["error"]["code"] == "not_a_generation"


# -- metrics ------------------------------------------------------------------------------------


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_count_durable_writes_refusals_and_deletes(http: httpx.AsyncClient) -> None:
    before = scrape((await http.get("/metrics")).text)
    await create(http, "metrics/a", "application/json", b'[{"a":1},2]')  # 7 + 1 bytes
    producer = {"Producer-Id": "p", "Producer-Epoch": "1", "Producer-Seq": "0"}
    assert (
        await append(http, "metrics/a", "application/json", b'"xyz"', **producer)
    ).status_code == 200
    assert (
        await append(http, "metrics/a", "application/json", b'"xyz"', **producer)
    ).status_code == 204  # its retry
    gap = {**producer, "Producer-Seq": "5"}
    assert (await append(http, "metrics/a", "application/json", b"1", **gap)).status_code == 409
    assert (await append(http, "metrics/a", "text/plain", b"t")).status_code == 409
    assert (await append(http, "metrics/none", "application/json", b"1")).status_code == 404
    await create(http, "metrics/fork", None, b"[3]", **{"Stream-Forked-From": "/v1/ds/metrics/a"})
    await close(http, "metrics/a")
    assert (await append(http, "metrics/a", "application/json", b"1")).status_code == 409
    assert (await http.delete("/v1/ds/metrics/a", headers=KEY)).status_code == 204  # a fork lives
    assert (await http.delete("/v1/ds/metrics/fork", headers=KEY)).status_code == 204
    after = scrape((await http.get("/metrics")).text)

    def moved(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        assert key in after, key  # exported
        return after[key] - before.get(key, 0.0)

    assert moved("tokenrelay_ds_streams_created_total", kind="new") == 1
    assert moved("tokenrelay_ds_streams_created_total", kind="fork") == 1
    assert moved("tokenrelay_ds_messages_appended_total") == 4  # 2 created, 1 appended, 1 forked
    assert moved("tokenrelay_ds_bytes_appended_total") == 7 + 1 + 5 + 1
    assert moved("tokenrelay_ds_appends_duplicate_total") == 1
    assert moved("tokenrelay_ds_appends_refused_total", reason="gap") == 1
    assert moved("tokenrelay_ds_appends_refused_total", reason="content_type") == 1
    assert moved("tokenrelay_ds_appends_refused_total", reason="missing") == 1
    assert moved("tokenrelay_ds_appends_refused_total", reason="closed") == 1
    assert moved("tokenrelay_ds_appends_refused_total", reason="full") == 0
    assert moved("tokenrelay_ds_streams_deleted_total", how="tombstoned") == 1
    assert moved("tokenrelay_ds_streams_deleted_total", how="removed") == 1
    for mode in ("catch-up", "long-poll", "sse"):  # counted by the router
        assert ("tokenrelay_ds_reads_total", (("mode", mode),)) in after
    for mode in ("long-poll", "sse"):
        assert ("tokenrelay_ds_live_readers", (("mode", mode),)) in after
    assert ("tokenrelay_ds_long_poll_timeouts_total", ()) in after


async def test_metrics_count_reads_by_mode_and_live_readers(http: httpx.AsyncClient) -> None:
    async def metrics() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return scrape((await http.get("/metrics")).text)

    def reads(scraped: dict[tuple[str, tuple[tuple[str, str], ...]], float], mode: str) -> float:
        return scraped[("tokenrelay_ds_reads_total", (("mode", mode),))]

    def live(scraped: dict[tuple[str, tuple[tuple[str, str], ...]], float], mode: str) -> float:
        return scraped[("tokenrelay_ds_live_readers", (("mode", mode),))]

    timeouts = ("tokenrelay_ds_long_poll_timeouts_total", ())
    before = await metrics()
    await create(http, "metrics/reads", "application/json", b"[1]")
    assert (
        await http.get("/v1/ds/metrics/reads", params={"offset": "-1"}, headers=KEY)
    ).json() == [1]
    head = await http.head("/v1/ds/metrics/reads", headers=KEY)
    tail = head.headers["Stream-Next-Offset"]
    waiting = {"offset": tail, "live": "long-poll"}
    timed_out = await http.get("/v1/ds/metrics/reads", params=waiting, headers=KEY)  # 2 s
    assert timed_out.status_code == 204
    polling = asyncio.create_task(http.get("/v1/ds/metrics/reads", params=waiting, headers=KEY))

    async def follow() -> bytes:
        params = {"offset": tail, "live": "sse"}
        async with http.stream("GET", "/v1/ds/metrics/reads", params=params, headers=KEY) as sse:
            return await sse.aread()

    following = asyncio.create_task(follow())
    await asyncio.sleep(0.7)
    during = await metrics()
    assert (await append(http, "metrics/reads", "application/json", b"2")).status_code == 204
    assert (await polling).json() == [2]
    await close(http, "metrics/reads")
    assert b"streamClosed" in await asyncio.wait_for(following, 5)
    after = await metrics()
    assert reads(after, "catch-up") - reads(before, "catch-up") == 1
    assert reads(after, "long-poll") - reads(before, "long-poll") == 2
    assert reads(after, "sse") - reads(before, "sse") == 1
    assert after[timeouts] - before.get(timeouts, 0.0) == 1
    assert live(during, "long-poll") - live(before, "long-poll") == 1
    assert live(during, "sse") - live(before, "sse") == 1
    assert (live(after, "long-poll"), live(after, "sse")) == (
        live(before, "long-poll"),
        live(before, "sse"),
    )
