"""The mock model server, exercised through the real openai SDK (and a raw socket or two)."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionChunk
from openai.types.completion_usage import CompletionUsage

from producer.mockmodel import MockModel, MockOptions, MockOptionsError, mock_text

REPO_ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Tell me about relays."
MESSAGES: Any = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": PROMPT},
]


@pytest.fixture
async def mock() -> AsyncIterator[MockModel]:
    async with MockModel() as server:
        yield server


@pytest.fixture
async def client(mock: MockModel) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(api_key="x", base_url=mock.base_url, max_retries=0) as c:
        yield c


async def open_stream(
    client: openai.AsyncOpenAI, model: str, **kwargs: Any
) -> openai.AsyncStream[ChatCompletionChunk]:
    stream: openai.AsyncStream[ChatCompletionChunk] = await client.chat.completions.create(
        model=model, messages=MESSAGES, stream=True, **kwargs
    )
    return stream


async def collect(
    stream: openai.AsyncStream[ChatCompletionChunk],
) -> tuple[str, str | None, CompletionUsage | None]:
    """Return (text, finish_reason, usage) of a whole stream."""
    text, finish_reason, usage = "", None, None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish_reason = chunk.choices[0].finish_reason or finish_reason
        usage = chunk.usage or usage
    return text, finish_reason, usage


async def eventually(predicate: Any, within: float = 2.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def root_url(mock: MockModel) -> str:
    return mock.base_url.removesuffix("/v1")


async def test_stream_text_finish_and_usage(mock: MockModel, client: openai.AsyncOpenAI) -> None:
    stream = await open_stream(
        client, "mock?tokens=30&rate=0", stream_options={"include_usage": True}
    )
    text, finish_reason, usage = await collect(stream)

    assert text == "".join(mock_text(PROMPT, 30))
    assert finish_reason == "stop"
    assert usage is not None
    assert usage.completion_tokens == 30
    assert usage.total_tokens == usage.prompt_tokens + 30
    [record] = mock.requests
    assert record.sent_text == text
    assert (record.tokens_sent, record.finish_reason, record.completed) == (30, "stop", True)
    assert record.closed_by_client_at is None
    assert record.body["messages"] == MESSAGES


async def test_stream_wire_format(mock: MockModel) -> None:
    body = {
        "model": "mock?tokens=2&rate=0",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{mock.base_url}/chat/completions", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line.removeprefix("data: ") for line in response.text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert [c["choices"][0]["delta"] for c in chunks[:-1]] == [
        {"role": "assistant", "content": ""},
        *({"content": token} for token in mock_text(PROMPT, 2)),
        {},
    ]
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None, None, None, "stop"]
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 2
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}
    assert chunks[0]["id"].startswith("chatcmpl-")
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert {c["system_fingerprint"] for c in chunks} == {"fp_mock"}


async def test_max_tokens_finishes_with_length(client: openai.AsyncOpenAI) -> None:
    stream = await open_stream(client, "mock?tokens=30&rate=0", max_tokens=7)
    text, finish_reason, usage = await collect(stream)
    assert text == "".join(mock_text(PROMPT, 7))
    assert finish_reason == "length"
    assert usage is None  # not asked for


async def test_non_streaming_completion(mock: MockModel, client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(model="mock?tokens=12", messages=MESSAGES)
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "".join(mock_text(PROMPT, 12))
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens == 12
    assert mock.requests[0].completed


async def test_models_list(client: openai.AsyncOpenAI) -> None:
    models = await client.models.list()
    assert [model.id for model in models.data] == ["mock"]


async def test_rate_limit_fault(mock: MockModel, client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        await open_stream(client, "mock?fault=429&retry_after=2")
    assert caught.value.response.headers["retry-after"] == "2"
    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.type == "requests"
    assert mock.requests[0].completed
    # The error response left the connection reusable.
    text, _, _ = await collect(await open_stream(client, "mock?tokens=3&rate=0"))
    assert text == "".join(mock_text(PROMPT, 3))


async def test_server_error_fault(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        await open_stream(client, "mock?fault=500")
    assert caught.value.type == "server_error"


async def test_bad_request_fault_and_invalid_option(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        await open_stream(client, "mock?fault=400")
    with pytest.raises(openai.BadRequestError) as caught:
        await open_stream(client, "mock?rate=fast")
    assert caught.value.param == "model"
    assert "rate" in caught.value.message


async def test_invalid_json_and_unknown_path(mock: MockModel) -> None:
    async with httpx.AsyncClient() as http:
        bad = await http.post(f"{mock.base_url}/chat/completions", content=b"{nope")
        missing = await http.get(f"{mock.base_url}/embeddings")
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "invalid_request_error"
    assert missing.status_code == 404
    assert set(missing.json()["error"]) == {"message", "type", "param", "code"}
    assert mock.requests == []


async def test_stall_records_client_close(mock: MockModel, client: openai.AsyncOpenAI) -> None:
    stream = await open_stream(client, "mock?fault=stall&after=4&rate=0")
    text = ""
    while len(text) < len("".join(mock_text(PROMPT, 4))):
        chunk = await anext(stream)
        text += chunk.choices[0].delta.content or ""
    assert text == "".join(mock_text(PROMPT, 4))
    with pytest.raises(TimeoutError):  # nothing more comes
        await asyncio.wait_for(anext(stream), 0.2)
    [record] = mock.requests
    assert record.closed_by_client_at is None
    assert not record.completed

    closed_at = time.monotonic()
    await stream.close()
    await eventually(lambda: record.closed_by_client_at is not None)
    assert record.closed_by_client_at is not None
    assert record.closed_by_client_at - closed_at < 0.5
    assert (record.tokens_sent, record.finish_reason, record.completed) == (4, None, False)


async def test_client_close_during_ttft_is_recorded(mock: MockModel) -> None:
    async with openai.AsyncOpenAI(
        api_key="x", base_url=mock.base_url, max_retries=0, timeout=0.2
    ) as client:
        with pytest.raises(openai.APITimeoutError):
            await client.chat.completions.create(model="mock?ttft=5", messages=MESSAGES)
        gave_up_at = time.monotonic()
    [record] = mock.requests
    await eventually(lambda: record.closed_by_client_at is not None)
    assert record.closed_by_client_at is not None
    assert record.closed_by_client_at - gave_up_at < 0.5
    assert record.tokens_sent == 0


async def test_disconnect_fails_before_finish(mock: MockModel, client: openai.AsyncOpenAI) -> None:
    stream = await open_stream(client, "mock?fault=disconnect&after=5&rate=0")
    text, finish_reasons = "", []
    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            text += chunk.choices[0].delta.content or ""
            finish_reasons.append(chunk.choices[0].finish_reason)
    assert text == "".join(mock_text(PROMPT, 5))
    assert set(finish_reasons) == {None}
    [record] = mock.requests
    assert (record.tokens_sent, record.completed, record.closed_by_client_at) == (5, False, None)


async def test_no_finish_and_length_faults(client: openai.AsyncOpenAI) -> None:
    text, finish_reason, _ = await collect(
        await open_stream(client, "mock?fault=no_finish&after=2&rate=0")
    )
    assert (text, finish_reason) == ("".join(mock_text(PROMPT, 2)), None)
    text, finish_reason, _ = await collect(
        await open_stream(client, "mock?fault=length&after=6&rate=0")
    )
    assert (text, finish_reason) == ("".join(mock_text(PROMPT, 6)), "length")


async def test_malformed_fault(client: openai.AsyncOpenAI) -> None:
    stream = await open_stream(client, "mock?fault=malformed&after=2&rate=0")
    text = ""
    with pytest.raises(json.JSONDecodeError):
        async for chunk in stream:
            text += chunk.choices[0].delta.content or ""
    assert text == "".join(mock_text(PROMPT, 2))


async def test_requests_endpoint_filters_by_stream(
    mock: MockModel, client: openai.AsyncOpenAI
) -> None:
    for stream_id in ("s-1", "s-2", "s-1"):
        await collect(
            await open_stream(
                client, "mock?tokens=3&rate=0", extra_headers={"X-TokenRelay-Stream": stream_id}
            )
        )
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{root_url(mock)}/_mock/requests", params={"stream": "s-1"})
        everything = await http.get(f"{root_url(mock)}/_mock/requests")
    records = response.json()
    assert [r["index"] for r in records] == [0, 2]
    assert {r["stream_id"] for r in records} == {"s-1"}
    assert records[0]["sent_text"] == "".join(mock_text(PROMPT, 3))
    assert records[0]["options"]["tokens"] == 3
    assert isinstance(records[0]["started_at"], float)
    assert "body" not in records[0]
    assert len(everything.json()) == 3


async def test_full_speed(client: openai.AsyncOpenAI) -> None:
    started = time.monotonic()
    text, finish_reason, _ = await collect(await open_stream(client, "mock?tokens=2000&rate=0"))
    elapsed = time.monotonic() - started
    assert text == "".join(mock_text(PROMPT, 2000))
    assert finish_reason == "stop"
    assert elapsed < 5


async def test_rate_and_ttft_pace_tokens(client: openai.AsyncOpenAI) -> None:
    started = time.monotonic()
    stream = await open_stream(client, "mock?tokens=10&rate=100&ttft=0.15")
    arrivals = []
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic() - started)
    assert len(arrivals) == 10
    assert 0.15 <= arrivals[0] < 0.6
    assert 0.24 <= arrivals[-1] < 1.2  # ttft + 9 tokens at 100/s


async def test_keep_alive_and_pipelining(mock: MockModel) -> None:
    body = json.dumps({"model": "mock?tokens=3&rate=0", "messages": MESSAGES}).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    expected = "".join(mock_text(PROMPT, 3))
    reader, writer = await asyncio.open_connection("127.0.0.1", mock.port)
    try:
        writer.write(request + request)  # two requests back to back on one connection
        for _ in range(2):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
            status_line, *header_lines = head.decode().split("\r\n")
            assert status_line == "HTTP/1.1 200 OK"
            headers = dict(line.split(": ", 1) for line in header_lines if line)
            completion = json.loads(await reader.readexactly(int(headers["content-length"])))
            assert completion["choices"][0]["message"]["content"] == expected
    finally:
        writer.close()
        await writer.wait_closed()
    assert len(mock.requests) == 2


async def test_close_drops_open_connections_promptly() -> None:
    server = MockModel()
    await server.start()
    async with openai.AsyncOpenAI(api_key="x", base_url=server.base_url, max_retries=0) as c:
        stream = await open_stream(c, "mock?fault=stall&after=1&rate=0")
        await anext(stream)
        started = time.monotonic()
        await server.close()
        assert time.monotonic() - started < 0.5
        with pytest.raises(openai.APIConnectionError):
            await collect(stream)


def test_options_parsing() -> None:
    assert MockOptions.parse("mock") == MockOptions()
    assert MockOptions.parse("mock?tokens=5&rate=0&ttft=0.5&fault=stall&after=2") == MockOptions(
        tokens=5, rate=0.0, ttft=0.5, fault="stall", after=2
    )
    for bad in ("mock?tokens=-1", "mock?rate=nan", "mock?fault=boom", "mock?colour=red"):
        with pytest.raises(MockOptionsError):
            MockOptions.parse(bad)


def test_mock_text_shape() -> None:
    tokens = mock_text("some prompt", 300)
    assert tokens == mock_text("some prompt", 300)
    assert tokens[:50] == mock_text("some prompt", 50)
    assert tokens != mock_text("other prompt", 300)
    assert not tokens[0][0].isspace()
    assert all(token[0] in " \n" for token in tokens[1:])
    assert any("\n" in token for token in tokens)
    assert any(not token.isascii() for token in tokens)
    assert any(token[-1] in ",.?" for token in tokens)


async def test_cli_serves_until_terminated() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "producer.mockmodel",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
    )
    assert process.stdout is not None
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), 10)).decode()
        match = re.fullmatch(r"mock model listening on (http://127\.0\.0\.1:\d+/v1)\n", line)
        assert match, line
        async with openai.AsyncOpenAI(
            api_key="x", base_url=match.group(1), max_retries=0
        ) as client:
            text, _, _ = await collect(await open_stream(client, "mock?tokens=4&rate=0"))
        assert text == "".join(mock_text(PROMPT, 4))
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
        await process.stdout.read()
