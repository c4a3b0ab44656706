"""The admin API against a real gateway and worker: auth on every call, paging at scale,
readers and their lag, purge, the system view."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from shared.keys import Keys
from shared.settings import Settings
from shared.store import StreamStore
from tests.client import Relay
from tests.processes import API_KEY, REDIS_URL, Stack

ADMIN_TOKEN = "test-admin-token"
STACK_ENV = {
    "TOKENRELAY_ADMIN_TOKEN": ADMIN_TOKEN,
    # one token, one event, however busy the machine (appends in flight merge the tokens
    # that wait: counted events would then fall short)
    "TOKENRELAY_COALESCE_MAX_CHARS": "1",
}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def admin(relay: Relay) -> AsyncIterator[httpx.AsyncClient]:
    yield relay.http


@pytest.fixture
async def redis() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    yield client
    await client.aclose()


def calls(stream_id: str) -> list[tuple[str, str]]:
    base = f"/admin/api/streams/{stream_id}"
    return [
        ("GET", "/admin/api/streams"),
        ("GET", base),
        ("GET", f"{base}/events"),
        ("GET", f"{base}/tail"),
        ("POST", f"{base}/cancel"),
        ("DELETE", base),
        ("GET", "/admin/api/system"),
    ]


async def test_every_admin_call_needs_the_admin_token(relay: Relay) -> None:
    created = await relay.create("auth", model="mock?tokens=3&rate=0")
    await relay.read_sse(created["id"])
    credentials = {
        "none": ({}, 401, "unauthorized"),
        "wrong token": ({"Authorization": "Bearer nope"}, 401, "unauthorized"),
        "api key": (relay.auth, 403, "forbidden"),
        "read token": ({"Authorization": f"Bearer {created['read_token']}"}, 403, "forbidden"),
    }
    for method, path in calls(created["id"]):
        for name, (headers, status, code) in credentials.items():
            response = await relay.http.request(method, path, headers=headers)
            assert (response.status_code, response.json()["error"]["code"]) == (status, code), (
                method,
                path,
                name,
            )
    # and with it, every call works (purge last)
    for method, path in calls(created["id"]):
        response = await relay.http.request(method, path, headers=ADMIN)
        assert response.status_code in (200, 202), (method, path, response.text)


async def test_admin_api_is_off_without_an_admin_token(stack: Stack) -> None:
    _, base = stack.gateway()
    async with httpx.AsyncClient(base_url=base) as http:
        response = await http.get("/admin/api/system", headers=ADMIN)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "admin_disabled"


async def test_list_pages_through_1000_streams_without_duplicates_or_gaps(
    relay: Relay, shared_stack: tuple[Stack, str], redis: aioredis.Redis
) -> None:
    # Written straight to Redis (as the gateway's create does) so no worker generates them.
    store = StreamStore(redis, Settings(key_prefix=shared_stack[0].prefix))
    created = [f"page{i:04d}".ljust(22, "x") for i in range(1000)]
    for stream_id in created:
        await store.create(
            stream_id, model="bulk", request={}, metadata={}, cancel_on_disconnect_s=None
        )
    for stream_id in created[::10]:
        await redis.hset(store.keys.meta(stream_id), "status", "failed")

    async def pages(**params: Any) -> tuple[list[str], int]:
        seen, count, cursor = [], 0, None
        while True:
            query = {**params, **({"cursor": cursor} if cursor else {})}
            response = await relay.http.get("/admin/api/streams", params=query, headers=ADMIN)
            assert response.status_code == 200, response.text
            body = response.json()
            seen += [s["id"] for s in body["streams"] if s["model"] == "bulk"]
            count += 1
            cursor = body["next_cursor"]
            if cursor is None:
                return seen, count

    everything, requests = await pages(limit=100)
    assert everything == created[::-1]  # newest first, each once
    assert requests >= 10
    failed, _ = await pages(limit=50, status="failed")
    assert failed == created[::10][::-1]


async def test_show_reports_live_readers_offsets_and_lag(
    relay: Relay, shared_stack: tuple[Stack, str], redis: aioredis.Redis
) -> None:
    created = await relay.create("readers", model="mock?tokens=30&rate=200&fault=stall&after=10")
    stream_id = created["id"]
    while (await relay.status(stream_id))["event_count"] < 11:  # the opening and 10 tokens
        await asyncio.sleep(0.05)
    events = (await relay.read_sse(stream_id, stop_after=11)).events
    # two readers that stay connected: one read everything, one started at the end
    first = asyncio.create_task(relay.read_sse(stream_id))
    second = asyncio.create_task(relay.read_sse(stream_id, after=events[-1].offset))
    await asyncio.sleep(2.5)  # registry flushes every second

    response = await relay.http.get(f"/admin/api/streams/{stream_id}", headers=ADMIN)
    detail = response.json()
    assert detail["status"] == "running"
    assert sorted(r["offset"] for r in detail["readers"]) == [events[-1].offset] * 2
    assert [r["lag"] for r in detail["readers"]] == [0, 0]
    assert all(
        r["gateway"].endswith(":" + str(r["gateway"]).split(":")[-1]) for r in detail["readers"]
    )
    assert detail["token_events"] == 11
    assert detail["worker"] and detail["attempts"] == 1
    assert detail["bytes"] > 0
    assert 0 <= detail["time_to_first_token_s"] < 5

    # a reader of a (live) gateway holding an older offset: lag = events it has not got
    gateway_id = detail["readers"][0]["gateway"]
    keys = Keys(shared_stack[0].prefix)
    await redis.hset(
        keys.readers(stream_id),
        "lagging#1",
        json.dumps({"gateway": gateway_id, "offset": events[3].offset, "since": time.time()}),
    )
    detail = (await relay.http.get(f"/admin/api/streams/{stream_id}", headers=ADMIN)).json()
    assert sorted(r["lag"] for r in detail["readers"]) == [0, 0, 7]

    listed = (await relay.http.get("/admin/api/streams", headers=ADMIN)).json()["streams"]
    assert next(s for s in listed if s["id"] == stream_id)["readers"] == 3

    await relay.http.post(f"/v1/streams/{stream_id}/cancel", headers=relay.auth)
    await asyncio.wait_for(asyncio.gather(first, second), 10)
    await redis.hdel(keys.readers(stream_id), "lagging#1")
    await asyncio.sleep(1.5)
    detail = (await relay.http.get(f"/admin/api/streams/{stream_id}", headers=ADMIN)).json()
    assert detail["readers"] == []


async def test_events_range_and_tail(relay: Relay) -> None:
    created = await relay.create("range", model="mock?tokens=20&rate=300")
    whole = await relay.read_sse(created["id"])
    base = f"/admin/api/streams/{created['id']}"
    first = (await relay.http.get(f"{base}/events", params={"count": 3}, headers=ADMIN)).json()
    assert [e["offset"] for e in first["events"]] == [e.offset for e in whole.events[:3]]
    rest = (
        await relay.http.get(
            f"{base}/events", headers=ADMIN, params={"after": whole.events[2].offset, "count": 1000}
        )
    ).json()
    assert [e["offset"] for e in rest["events"]] == [e.offset for e in whole.events[3:]]
    assert rest["events"][-1]["type"] == "done"
    async with relay.http.stream("GET", f"{base}/tail", headers=ADMIN) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        body = (await response.aread()).decode()
    assert body.count("event: token") + body.count("event: delta") == len(whole.events) - 1
    assert body.rstrip().endswith(whole.events[-1].offset and "}")


async def test_purge_removes_every_key_of_the_stream(
    relay: Relay, shared_stack: tuple[Stack, str], redis: aioredis.Redis
) -> None:
    created = await relay.create("purge", model="mock?tokens=5&rate=0")
    await relay.read_sse(created["id"])
    keys = Keys(shared_stack[0].prefix)
    assert [k async for k in redis.scan_iter(match=f"*{{{created['id']}}}*")]
    response = await relay.http.delete(f"/admin/api/streams/{created['id']}", headers=ADMIN)
    assert response.status_code == 200
    assert response.json()["purged_keys"] >= 2
    assert [k async for k in redis.scan_iter(match=f"*{{{created['id']}}}*")] == []
    assert await redis.zscore(keys.index, created["id"]) is None
    gone = await relay.http.get(f"/v1/streams/{created['id']}", headers=relay.auth)
    assert gone.status_code == 404
    again = await relay.http.delete(f"/admin/api/streams/{created['id']}", headers=ADMIN)
    assert again.status_code == 404


async def test_system_view(relay: Relay) -> None:
    created = await relay.create("system", model="mock?tokens=200&rate=40")
    reader = asyncio.create_task(relay.read_sse(created["id"]))
    await asyncio.sleep(2.5)
    system = (await relay.http.get("/admin/api/system", headers=ADMIN)).json()
    await relay.http.post(f"/v1/streams/{created['id']}/cancel", headers=relay.auth)
    await reader
    assert system["jobs_in_progress"] == 1
    assert len(system["workers"]) == 1 and system["workers"][0]["jobs"] == 1
    assert system["workers"][0]["age_s"] < 5
    assert len(system["gateways"]) == 1 and system["gateways"][0]["readers"] >= 1
    assert system["queue_depth"] == 0
    assert system["redis"]["version"].startswith("7")
    assert system["redis"]["used_memory"] > 0


async def test_a_dead_gateways_readers_disappear_on_their_own(stack: Stack) -> None:
    doomed, doomed_url = stack.gateway(TOKENRELAY_ADMIN_TOKEN=ADMIN_TOKEN)
    _, survivor_url = stack.gateway(TOKENRELAY_ADMIN_TOKEN=ADMIN_TOKEN)
    stack.worker()
    async with httpx.AsyncClient(timeout=30) as http:
        relay = Relay(http, stack.mock_url.removesuffix("/v1"), API_KEY)
        http.base_url = httpx.URL(doomed_url)
        created = await relay.create(
            "dead gateway", model="mock?tokens=30&rate=100&fault=stall&after=5"
        )
        reader = asyncio.create_task(relay.read_sse(created["id"]))
        show = f"{survivor_url}/admin/api/streams/{created['id']}"
        while not (await http.get(show, headers=ADMIN)).json()["readers"]:
            await asyncio.sleep(0.2)
        doomed.kill()
        killed_at = time.monotonic()
        with pytest.raises(httpx.HTTPError):
            await reader
        while (await http.get(show, headers=ADMIN)).json()["readers"]:
            assert time.monotonic() - killed_at < 15, "the dead gateway's reader stayed"
            await asyncio.sleep(0.5)
        system = (await http.get(f"{survivor_url}/admin/api/system", headers=ADMIN)).json()
        assert len(system["gateways"]) == 1
        await http.post(f"{survivor_url}/v1/streams/{created['id']}/cancel", headers=relay.auth)


async def test_purge_ends_the_streams_live_readers(relay: Relay) -> None:
    created = await relay.create("purge live", model="mock?tokens=30&rate=100&fault=stall&after=3")
    reader = asyncio.create_task(relay.read_sse(created["id"]))
    while (await relay.status(created["id"]))["event_count"] < 3:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    purged = await relay.http.delete(f"/admin/api/streams/{created['id']}", headers=ADMIN)
    assert purged.status_code == 200
    read = await asyncio.wait_for(reader, 5)  # the gateway's watchdog notices within ~1 s
    assert [e.type for e in read.events] == ["delta"] + ["token"] * 3
