"""``shared.client`` and ``tokenrelay run`` against real gateways, workers and dev mode."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
import redis

from shared.client import ClientEvent, GatewayError, TokenRelayClient
from shared.keys import Keys
from tests.processes import API_KEY, REDIS_URL, Stack, free_port
from tests.test_dev import start_dev

MESSAGES = [{"role": "user", "content": "Why is the sky blue?"}]


async def mock_record(stack: Stack, stream_id: str) -> dict[str, Any]:
    """What the mock model recorded for this stream's single upstream request."""
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(
            stack.mock_url.removesuffix("/v1") + "/_mock/requests", params={"stream": stream_id}
        )
    records: list[dict[str, Any]] = response.json()
    assert len(records) == 1, records
    return records[0]


async def sent_text(stack: Stack, stream_id: str) -> str:
    text: str = (await mock_record(stack, stream_id))["sent_text"]
    return text


def text_of(events: list[ClientEvent]) -> str:
    return "".join(event.text for event in events)


async def test_text_is_the_models_answer(shared_stack: tuple[Stack, str]) -> None:
    stack, base = shared_stack
    async with TokenRelayClient(base, api_key=API_KEY) as client:
        created = await client.create(MESSAGES, model="mock?tokens=40&rate=200", max_tokens=100)
        assert created.status == "queued"
        assert created.events_url == f"/v1/streams/{created.id}/events?token={created.read_token}"
        text = await client.text(created.id)
        status = await client.status(created.id)
    assert text == await sent_text(stack, created.id)
    assert status["status"] == "completed" and status["finish_reason"] == "stop"


async def test_events_resume_by_themselves_across_a_gateway_sigkill(stack: Stack) -> None:
    port = free_port()
    first, base = stack.gateway(port=port)
    stack.worker()

    events: list[ClientEvent] = []
    killed_after: list[int] = []

    def kill_and_restart() -> None:
        first.kill()
        killed_after.append(len(events))
        stack.gateway(port=port)

    restart: asyncio.Task[None] | None = None
    async with TokenRelayClient(
        base, api_key=API_KEY, backoff_initial_s=0.1, backoff_max_s=0.5, max_attempts=50
    ) as client:
        created = await client.create(MESSAGES, model="mock?tokens=120&rate=40")
        async for event in client.events(created.id):
            events.append(event)
            if len(events) == 10:
                restart = asyncio.create_task(asyncio.to_thread(kill_and_restart))
    assert restart is not None
    await restart

    assert killed_after[0] < len(events) - 1, "the gateway was killed after the stream ended"
    offsets = [event.offset for event in events]
    assert len(offsets) == len(set(offsets)), "an event was delivered twice"
    assert [event.type for event in events[:-1]] == ["token"] * (len(events) - 1)
    assert events[-1].type == "done" and events[-1].data["finish_reason"] == "stop"
    assert text_of(events) == await sent_text(stack, created.id)
    # the second gateway served the rest, from where the first one left off
    second_log = stack.processes[-1].log_text()
    assert f"stream={created.id} step=read after=" in second_log
    assert f"stream={created.id} step=read after=0-0" not in second_log


async def test_after_resumes_from_an_offset_and_204_ends_iteration(
    shared_stack: tuple[Stack, str],
) -> None:
    _, base = shared_stack
    async with TokenRelayClient(base) as client:  # the read token alone
        async with TokenRelayClient(base, api_key=API_KEY) as creator:
            created = await creator.create(MESSAGES, model="mock?tokens=30&rate=200")
        token = created.read_token
        everything = [event async for event in client.events(created.id, token=token)]
        rest = [
            event
            async for event in client.events(created.id, token=token, after=everything[4].offset)
        ]
        past_the_end = [
            event
            async for event in client.events(created.id, token=token, after=everything[-1].offset)
        ]
    assert everything[-1].type == "done"
    assert rest == everything[5:]
    assert past_the_end == []


async def test_gateway_errors_carry_code_and_status(shared_stack: tuple[Stack, str]) -> None:
    _, base = shared_stack
    async with TokenRelayClient(base, api_key=API_KEY) as client:
        created = await client.create(MESSAGES, model="mock?tokens=5&rate=0")
        with pytest.raises(GatewayError) as unknown:
            await client.text("A" * 22)
    async with TokenRelayClient(base) as anonymous:
        with pytest.raises(GatewayError) as bad_token:
            async for _ in anonymous.events(created.id, token=created.read_token + "x"):
                pass
        with pytest.raises(GatewayError) as no_token:
            await anonymous.status(created.id)
    assert (unknown.value.status, unknown.value.code) == (404, "stream_not_found")
    assert (bad_token.value.status, bad_token.value.code) == (401, "unauthorized")
    assert (no_token.value.status, no_token.value.code) == (401, "unauthorized")
    assert not bad_token.value.retryable


def run_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tokenrelay.cli", "run", *args]


def run_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENRELAY_", "OPENAI_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def test_run_prints_the_answer_against_dev_mode(tmp_path: Path) -> None:
    process, base = start_dev(tmp_path, path=os.environ["PATH"])
    model = "mock?tokens=25&rate=200"
    try:
        done = await asyncio.to_thread(
            subprocess.run,
            run_command("Why is the sky blue?", "--url", base, "--model", model),
            env=run_env(),
            capture_output=True,
            text=True,
            timeout=15,
        )
        # the mock model is deterministic: the same prompt again, read as NDJSON
        async with TokenRelayClient(base) as client:
            twin = await client.create(MESSAGES, model=model)
            expected = await client.text(twin.id, token=twin.read_token)
    finally:
        process.stop()
    assert done.returncode == 0, done.stderr
    assert len(expected) > 25
    assert done.stdout == expected + "\n"
    assert done.stderr == ""


async def test_run_ctrl_c_cancels_the_stream(stack: Stack) -> None:
    _, base = stack.gateway()
    stack.worker()
    process = await asyncio.create_subprocess_exec(
        *run_command("Why?", "--url", base, "--model", "mock?tokens=400&rate=40"),
        env={**run_env(), "TOKENRELAY_API_KEY": API_KEY},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    first = await process.stdout.read(1)  # the answer has started
    process.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(process.communicate(), 10)
    assert process.returncode == 130, err

    keys = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        metas = list(keys.scan_iter(match=Keys(stack.prefix).meta("*")))
    finally:
        keys.close()
    assert len(metas) == 1, metas
    stream_id = metas[0].split("{")[1].split("}")[0]
    async with TokenRelayClient(base, api_key=API_KEY) as client:
        deadline = time.monotonic() + 5
        while (status := await client.status(stream_id))["status"] != "cancelled":
            assert time.monotonic() < deadline, status
            await asyncio.sleep(0.1)
        text = await client.text(stream_id)
    assert status["finish_reason"] == "cancelled"
    printed = (first + out).decode()
    assert printed.endswith("\n") and text.startswith(printed.removesuffix("\n"))
    assert (await mock_record(stack, stream_id))["closed_by_client_at"] is not None


async def test_retries_503_with_retry_after_and_a_cut_body_then_gives_up() -> None:
    """In-process: a 503, a body cut before the terminal event, then the rest after the offset."""
    lines = [
        '{"offset":"1-0","type":"token","text":"Hello"}',
        '{"offset":"2-0","type":"token","text":", world"}',
        '{"offset":"3-0","type":"done","finish_reason":"stop","usage":null}',
    ]
    unavailable = {"error": {"code": "redis_unavailable", "message": "Redis is unavailable"}}
    answers = [
        httpx2.Response(503, json=unavailable, headers={"Retry-After": "0.2"}),
        httpx2.Response(200, text="\n".join(lines[:2]) + "\n\n"),  # with a keep-alive
        httpx2.Response(200, text=lines[2] + "\n"),
    ]
    requests: list[httpx2.Request] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        requests.append(request)
        return answers.pop(0) if answers else httpx2.Response(503, json=unavailable)

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(answer)) as http:
        client = TokenRelayClient("http://gw", http=http, backoff_initial_s=0.01, max_attempts=2)
        started = time.monotonic()
        events = [event async for event in client.events("s")]
        waited = time.monotonic() - started
        with pytest.raises(GatewayError) as gave_up:
            await client.text("s")
    assert [event.offset for event in events] == ["1-0", "2-0", "3-0"]
    assert text_of(events) == "Hello, world"
    assert [r.url.params.get("after") for r in requests[:3]] == [None, None, "2-0"]
    assert waited >= 0.2  # Retry-After was honoured
    assert len(requests) == 3 + 3  # the first try, then max_attempts reconnects
    assert (gave_up.value.status, gave_up.value.code) == (503, "redis_unavailable")
