"""End to end: real Redis, a uvicorn gateway process, an arq worker process, the mock model
over HTTP. Each test asserts what a client of the gateway sees."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from shared.keys import Keys
from tests.client import Relay
from tests.processes import REDIS_URL, Stack

STACK_ENV = {"TOKENRELAY_PING_INTERVAL_S": "1"}


async def test_text_in_every_format_equals_what_the_model_sent(relay: Relay) -> None:
    created = await relay.create("formats", model="mock?tokens=40&rate=40")
    assert created["status"] == "queued"
    seen = ["queued"]

    async def watch_status() -> None:
        while seen[-1] != "completed":
            status = (await relay.status(created["id"]))["status"]
            if status != seen[-1]:
                seen.append(status)
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch_status())
    sse = await relay.read_sse(created["id"])
    await asyncio.wait_for(watcher, 5)

    sent = (await relay.mock_record(created["id"]))["sent_text"]
    assert len(sent) > 40
    assert sse.status_code == 200
    assert sse.retry == 1000
    assert sse.text == sent
    assert sse.terminal.type == "done"
    assert sse.terminal.data["finish_reason"] == "stop"
    assert sse.terminal.data["usage"]["completion_tokens"] == 40
    assert seen == ["queued", "running", "completed"]

    ndjson = await relay.read_ndjson(created["id"])
    assert ndjson.text == sent
    assert [e.offset for e in ndjson.events] == [e.offset for e in sse.events]
    assert await relay.read_text(created["id"]) == sent

    status = await relay.status(created["id"])
    assert status["finish_reason"] == "stop"
    assert status["event_count"] == len(sse.events)
    assert status["last_offset"] == sse.events[-1].offset
    assert status["upstream"] == relay.mock_model_url + "/v1"


async def test_read_token_alone_reads_the_stream(relay: Relay) -> None:
    created = await relay.create("token", model="mock?tokens=5&rate=0")
    read = await relay.read_sse(created["id"], url=created["events_url"])
    assert read.status_code == 200
    assert read.text == (await relay.mock_record(created["id"]))["sent_text"]


@pytest.mark.parametrize("resume_with", ["last_event_id", "after"])
async def test_disconnect_and_resume_gets_the_rest_exactly_once(
    relay: Relay, resume_with: str
) -> None:
    created = await relay.create(f"resume {resume_with}", model="mock?tokens=60&rate=100")
    first = await relay.read_sse(created["id"], stop_after=10)  # then hang up mid-stream
    assert len(first.events) == 10
    assert (await relay.status(created["id"]))["status"] == "running"
    rest = await relay.read_sse(created["id"], **{resume_with: first.events[-1].offset})
    offsets = [e.offset for e in first.events + rest.events]
    assert len(offsets) == len(set(offsets))
    assert offsets == sorted(offsets, key=lambda o: tuple(map(int, o.split("-"))))  # type: ignore[union-attr]
    assert first.text + rest.text == (await relay.mock_record(created["id"]))["sent_text"]
    assert rest.terminal.type == "done"


async def test_resume_with_after_and_last_event_id_wins(relay: Relay) -> None:
    created = await relay.create("after", model="mock?tokens=30&rate=300")
    whole = await relay.read_sse(created["id"])
    assert len(whole.events) > 5
    middle = len(whole.events) // 2
    cut = whole.events[middle].offset
    by_after = await relay.read_sse(created["id"], after=cut)
    assert by_after.events == whole.events[middle + 1 :]
    # Last-Event-ID beats ?after=
    by_header = await relay.read_sse(created["id"], after=whole.events[1].offset, last_event_id=cut)
    assert by_header.events == whole.events[middle + 1 :]


async def test_resuming_after_the_terminal_event_is_204(relay: Relay) -> None:
    created = await relay.create("ended", model="mock?tokens=3&rate=0")
    whole = await relay.read_sse(created["id"])
    again = await relay.read_sse(created["id"], last_event_id=whole.events[-1].offset)
    assert again.status_code == 204
    now = await relay.read_sse(created["id"], after="$")
    assert now.status_code == 204


async def test_after_dollar_reads_only_new_events(relay: Relay) -> None:
    created = await relay.create("dollar", model="mock?tokens=40&rate=40")
    await relay.read_sse(created["id"], stop_after=5)
    live = await relay.read_sse(created["id"], after="$")
    sent = (await relay.mock_record(created["id"]))["sent_text"]
    assert live.text and live.text != sent and sent.endswith(live.text)
    assert live.terminal.type == "done"


async def test_many_readers_each_at_their_own_pace(relay: Relay) -> None:
    created = await relay.create("pace", model="mock?tokens=50&rate=100")

    async def slow_reader() -> str:
        read = ""
        async with relay.http.stream(
            "GET",
            f"/v1/streams/{created['id']}/events",
            params={"format": "text"},
            headers=relay.auth,
        ) as r:
            async for chunk in r.aiter_text():
                read += chunk
                await asyncio.sleep(0.05)
        return read

    fast = relay.read_sse(created["id"])
    results = await asyncio.gather(fast, slow_reader(), relay.read_sse(created["id"]))
    sent = (await relay.mock_record(created["id"]))["sent_text"]
    assert results[0].text == results[2].text == results[1] == sent


async def test_keepalive_pings_while_the_upstream_is_silent(relay: Relay) -> None:
    # ttft 2.5 s with pings every 1 s (the module's gateway setting below)
    created = await relay.create("ping", model="mock?tokens=2&rate=0&ttft=2.5")
    started = time.monotonic()
    read = await relay.read_sse(created["id"])
    assert time.monotonic() - started > 2
    assert read.comments >= 1
    assert read.terminal.type == "done"


async def test_idempotency_key_returns_the_same_stream(relay: Relay) -> None:
    body = {"model": "mock?tokens=5&rate=0", "messages": [{"role": "user", "content": "idem"}]}
    headers = {**relay.auth, "Idempotency-Key": "order-42"}
    first = await relay.http.post("/v1/streams", json=body, headers=headers)
    second = await relay.http.post("/v1/streams", json=body, headers=headers)
    other_key = await relay.http.post(
        "/v1/streams", json=body, headers={**relay.auth, "Idempotency-Key": "order-43"}
    )
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"] != other_key.json()["id"]
    assert second.headers["location"] == f"/v1/streams/{first.json()['id']}"
    read = await relay.read_sse(first.json()["id"], url=second.json()["events_url"])
    assert read.terminal.type == "done"
    assert len(await relay.mock_records(first.json()["id"])) == 1  # generated once


async def test_created_answer(relay: Relay) -> None:
    response = await relay.http.post(
        "/v1/streams",
        headers=relay.auth,
        json={
            "model": "mock?tokens=2",
            "messages": [{"role": "user", "content": "hi"}],
            "metadata": {"user": "u1"},
        },
    )
    created = response.json()
    assert response.status_code == 201
    assert response.headers["location"] == f"/v1/streams/{created['id']}"
    assert set(created) == {"id", "status", "created_at", "read_token", "events_url"}
    assert len(created["id"]) == 22 and created["id"].replace("-", "").replace("_", "").isalnum()
    assert created["events_url"] == (
        f"/v1/streams/{created['id']}/events?token={created['read_token']}"
    )
    assert abs(created["created_at"] - time.time()) < 5
    assert (await relay.status(created["id"]))["metadata"] == {"user": "u1"}


async def test_trimmed_offsets_are_410_gone(relay: Relay, shared_stack: tuple[Stack, str]) -> None:
    created = await relay.create("trim", model="mock?tokens=30&rate=300")
    whole = await relay.read_sse(created["id"])
    redis = aioredis.Redis.from_url(REDIS_URL)
    try:  # what eviction or an operator's XTRIM would do
        await redis.xtrim(
            Keys(shared_stack[0].prefix).events(created["id"]), maxlen=3, approximate=False
        )
    finally:
        await redis.aclose()
    gone = await relay.http.get(
        f"/v1/streams/{created['id']}/events",
        params={"after": whole.events[0].offset},
        headers=relay.auth,
    )
    assert gone.status_code == 410
    assert gone.json()["error"]["code"] == "offset_expired"
    tail = await relay.read_sse(created["id"], after=whole.events[-3].offset)
    assert tail.events == whole.events[-2:]


async def test_health_and_readiness(relay: Relay) -> None:
    assert (await relay.http.get("/healthz")).json() == {"status": "ok"}
    ready = await relay.http.get("/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    docs = await relay.http.get("/openapi.json")
    assert "/v1/streams/{stream_id}/events" in docs.json()["paths"]
