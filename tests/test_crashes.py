"""Processes die; streams do not: a killed gateway or worker ends in a defined state."""

from __future__ import annotations

import asyncio
import time

import httpx
import redis.asyncio as aioredis

from shared.keys import Keys
from tests.client import Read, Relay, sse_events
from tests.processes import API_KEY, REDIS_URL, Stack


async def read_until_broken(http: httpx.AsyncClient, url: str, read: Read) -> None:
    """Collect SSE events until the connection ends, however it ends."""
    try:
        async with http.stream("GET", url, headers={"Authorization": f"Bearer {API_KEY}"}) as r:
            async for event in sse_events(r, read):
                read.events.append(event)
    except httpx.HTTPError:
        pass


async def test_gateway_sigkilled_mid_stream_client_resumes_on_another(stack: Stack) -> None:
    first, first_url = stack.gateway()
    stack.worker()
    async with httpx.AsyncClient(timeout=30) as http:
        relay = Relay(http, stack.mock_url.removesuffix("/v1"), API_KEY)
        http.base_url = httpx.URL(first_url)
        created = await relay.create("gateway crash", model="mock?tokens=80&rate=40")
        stream_id = created["id"]

        before = Read(200)
        reading = asyncio.create_task(
            read_until_broken(http, f"{first_url}/v1/streams/{stream_id}/events", before)
        )
        while len(before.events) < 10:
            await asyncio.sleep(0.02)
        first.kill()
        await asyncio.wait_for(reading, 5)
        assert 10 <= len(before.events) < 81
        assert before.events[-1].type == "token"  # cut mid-answer

        _, second_url = stack.gateway()
        http.base_url = httpx.URL(second_url)
        after = await relay.read_sse(stream_id, last_event_id=before.events[-1].offset)
        events = before.events + after.events
        offsets = [e.offset for e in events]
        assert len(offsets) == len(set(offsets)), "an event was delivered twice"
        assert after.terminal.data["finish_reason"] == "stop"
        assert before.text + after.text == (await relay.mock_record(stream_id))["sent_text"]


async def test_worker_sigkilled_mid_generation(stack: Stack) -> None:
    lease_s, job_timeout_s = 4.0, 3
    stack.extra_env.update(
        {
            "TOKENRELAY_LEASE_S": str(lease_s),
            # arq runs a job again once its in-progress key expires: job timeout + 10 s
            "TOKENRELAY_JOB_TIMEOUT_S": str(job_timeout_s),
        }
    )
    _, base = stack.gateway()
    doomed = stack.worker()
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        relay = Relay(http, stack.mock_url.removesuffix("/v1"), API_KEY)
        created = await relay.create("worker crash", model="mock?tokens=100&rate=40")
        stream_id = created["id"]
        reader = asyncio.create_task(relay.read_sse(stream_id))
        while (await relay.status(stream_id))["event_count"] < 5:
            await asyncio.sleep(0.05)
        doomed.kill()
        killed_at = time.monotonic()

        read = await asyncio.wait_for(reader, lease_s + 5)
        declared_after = time.monotonic() - killed_at
        assert read.terminal.type == "error"
        assert read.terminal.data["code"] == "producer_lost"
        assert declared_after <= lease_s, f"producer_lost came {declared_after:.1f}s after"
        assert read.text == (await relay.mock_record(stream_id))["sent_text"][: len(read.text)]
        assert (await relay.status(stream_id))["status"] == "failed"

        # A new worker: arq runs the job again; it must not generate or append anything.
        successor = stack.worker()
        redis = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
        meta_key = Keys(stack.prefix).meta(stream_id)
        deadline = time.monotonic() + job_timeout_s + 20
        try:
            while await redis.hget(meta_key, "attempts") != "2":
                assert time.monotonic() < deadline, "arq never ran the job again"
                await asyncio.sleep(0.2)
        finally:
            await redis.aclose()
        await asyncio.sleep(0.5)
        assert f"stream={stream_id} not generated again: it is failed" in successor.log_text()
        again = await relay.read_sse(stream_id)
        assert again.events == read.events
        assert len(await relay.mock_records(stream_id)) == 1  # the upstream was called once


async def test_gateway_without_redis_answers_503_not_500(stack: Stack) -> None:
    from tests.processes import free_port

    _, base = stack.gateway(TOKENRELAY_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        assert (await http.get("/healthz")).status_code == 200
        ready = await http.get("/readyz")
        body = {"model": "mock", "messages": [{"role": "user", "content": "hi"}]}
        create = await http.post(
            "/v1/streams", json=body, headers={"Authorization": f"Bearer {API_KEY}"}
        )
    for response in (ready, create):
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "redis_unavailable"
        assert int(response.headers["retry-after"]) > 0
