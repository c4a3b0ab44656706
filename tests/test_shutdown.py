"""SIGTERM is not a crash: a stopping gateway hands its readers to another replica, and a
stopping worker finishes what it runs (or ends it with a terminal event), never a silent cut."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import httpx
import uvicorn

from gateway.app import create_app
from gateway.server import GatewayServer
from shared.settings import Settings
from tests.client import Read, Relay
from tests.processes import API_KEY, REDIS_URL, SIGNING_KEY, Process, Stack, free_port
from tests.test_crashes import read_until_broken


async def test_sigterm_gateway_ends_its_readers_who_resume_on_another(stack: Stack) -> None:
    stopping, stopping_url = stack.gateway(TOKENRELAY_SHUTDOWN_GRACE_S="20")
    _, other_url = stack.gateway()
    stack.worker()
    async with httpx.AsyncClient(timeout=30) as http:
        relay = Relay(http, stack.mock_url.removesuffix("/v1"), API_KEY)
        http.base_url = httpx.URL(other_url)
        created = await relay.create("drain", model="mock?tokens=120&rate=40")
        stream_id = created["id"]
        url = f"{stopping_url}/v1/streams/{stream_id}/events"
        readers = [Read(200) for _ in range(3)]
        reading = [asyncio.create_task(read_until_broken(http, url, read)) for read in readers]
        while min(len(read.events) for read in readers) < 10:
            await asyncio.sleep(0.02)

        assert stopping.popen is not None
        stopping.popen.send_signal(signal.SIGTERM)
        sent_at = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*reading), 5)
        ended_after = time.monotonic() - sent_at
        # every response ended at once (not after the 20 s grace), mid-answer, and cleanly
        assert ended_after < 2, f"the readers were let go {ended_after:.1f} s after SIGTERM"
        stopping.popen.wait(timeout=5)
        assert time.monotonic() - sent_at < 5, "the gateway waited out its grace period"
        assert f"stream={stream_id} step=read ended: this gateway is shutting down" in (
            stopping.log_text()
        )

        sent_text = None
        for before in readers:
            assert before.events[-1].type == "token"
            after = await relay.read_sse(stream_id, last_event_id=before.events[-1].offset)
            offsets = [e.offset for e in before.events + after.events]
            assert len(offsets) == len(set(offsets)), "an event was delivered twice"
            assert after.terminal.data["finish_reason"] == "stop"
            sent_text = sent_text or (await relay.mock_record(stream_id))["sent_text"]
            assert before.text + after.text == sent_text


async def test_a_draining_gateway_sends_new_readers_elsewhere(stack: Stack) -> None:
    # In-process, to catch the moment between the drain and the listener closing: a request
    # arriving then (on a kept-alive connection, say) is told to go to another replica.
    settings = Settings(
        redis_url=REDIS_URL, key_prefix=stack.prefix, api_keys=[API_KEY], signing_key=SIGNING_KEY
    )
    port = free_port()
    server = GatewayServer(uvicorn.Config(create_app(settings), port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            while not server.started:
                await asyncio.sleep(0.05)
            relay = Relay(http, stack.mock_url.removesuffix("/v1"), API_KEY)
            created = await relay.create("drain", model="mock")
            assert (await http.get("/readyz")).status_code == 200

            gateway = server.config.app.state.gateway
            gateway.hub.drain()
            ready = await http.get("/readyz")
            read = await http.get(created["events_url"])
            for response in (ready, read):
                assert response.status_code == 503
                assert response.json()["error"]["code"] == "shutting_down"
                assert response.headers["retry-after"] == "1"
            assert (await relay.status(created["id"]))["status"] == "queued"  # others still work
    finally:
        server.should_exit = True
        await serving


async def sigterm_mid_generation(relay: Relay, worker: Process, model: str) -> dict[str, Any]:
    """Create a stream, wait until ``worker`` has appended 3 events to it, SIGTERM the worker."""
    created = await relay.create("stop the worker", model=model)
    while (await relay.status(created["id"]))["event_count"] < 3:
        await asyncio.sleep(0.05)
    assert worker.popen is not None
    worker.popen.send_signal(signal.SIGTERM)
    return created


async def test_sigterm_worker_finishes_its_generation_and_takes_no_new_job(
    stack: Stack,
) -> None:
    _, base = stack.gateway()
    stopping = stack.worker(TOKENRELAY_WORKER_DRAIN_S="10")
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        relay = Relay(http, stack.mock_url.removesuffix("/v1"), API_KEY)
        running = await sigterm_mid_generation(relay, stopping, "mock?tokens=60&rate=30")
        await asyncio.sleep(0.3)
        queued = await relay.create("not by the stopping worker", model="mock?tokens=3")

        read = await relay.read_sse(running["id"])
        assert read.terminal.type == "done" and read.terminal.data["finish_reason"] == "stop"
        assert read.text == (await relay.mock_record(running["id"]))["sent_text"]
        assert stopping.popen is not None
        stopping.popen.wait(timeout=10)
        assert (await relay.status(queued["id"]))["status"] == "queued"

        stack.worker()  # another worker takes the job the stopping one left
        later = await relay.read_sse(queued["id"])
        assert later.terminal.data["finish_reason"] == "stop"


async def test_sigterm_worker_past_its_drain_ends_the_stream_with_a_terminal_event(
    stack: Stack,
) -> None:
    _, base = stack.gateway()
    stopping = stack.worker(TOKENRELAY_WORKER_DRAIN_S="1")
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        relay = Relay(http, stack.mock_url.removesuffix("/v1"), API_KEY)
        created = await sigterm_mid_generation(relay, stopping, "mock?tokens=400&rate=20")
        sent_at = time.monotonic()
        read = await asyncio.wait_for(relay.read_sse(created["id"]), 10)
        assert 0.8 < time.monotonic() - sent_at < 4
        assert read.terminal.type == "error"
        assert read.terminal.data["code"] == "producer_lost"
        assert read.terminal.data["retryable"] is True
        sent = (await relay.mock_record(created["id"]))["sent_text"]
        assert read.text and sent.startswith(read.text)
        assert stopping.popen is not None
        stopping.popen.wait(timeout=5)
