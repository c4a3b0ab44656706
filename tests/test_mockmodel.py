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
from openai.lib.streaming.chat import ChatCompletionStreamState, ParsedChatCompletionSnapshot
from openai.types.chat import ChatCompletionChunk
from openai.types.completion_usage import CompletionUsage

from producer.mockmodel import (
    MockModel,
    MockOptions,
    MockOptionsError,
    MockToolCall,
    argument_fragments,
    mock_reasoning,
    mock_refusal,
    mock_text,
    mock_tool_calls,
)

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


# --- tool calls, reasoning, refusals, n choices -----------------------------------------------

TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city", "unit"],
                "additionalProperties": False,
            },
            "strict": True,
        },
    },
    {
        "type": "function",
        "function": {
            "name": "set_alarm",
            "parameters": {
                "type": "object",
                "properties": {
                    "hour": {"type": "integer", "minimum": 0, "maximum": 23},
                    "loud": {"type": "boolean"},
                    "volume": {"type": "number", "minimum": 0, "maximum": 1},
                    "label": {"type": ["string", "null"]},
                },
            },
        },
    },
]
CALL_ID = re.compile(r"call_[0-9a-f]{24}")


async def accumulate(
    stream: openai.AsyncStream[ChatCompletionChunk], **state_args: Any
) -> tuple[ParsedChatCompletionSnapshot, list[ChatCompletionChunk]]:
    """Feed a whole stream to the SDK's own accumulator: (its snapshot, the chunks)."""
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState(**state_args)
    chunks = []
    async for chunk in stream:
        state.handle_chunk(chunk)
        chunks.append(chunk)
    return state.current_completion_snapshot, chunks


def calls_of(message: Any) -> list[tuple[str, Any]]:
    """(name, parsed arguments) of a message's tool calls; every id looks like OpenAI's."""
    assert all(CALL_ID.fullmatch(call.id) for call in message.tool_calls)
    return [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls]


async def raw_chunks(mock: MockModel, model: str, **fields: Any) -> list[dict[str, Any]]:
    """The JSON chunks of a streamed answer, straight off the wire ([DONE] checked, dropped)."""
    body = {"model": model, "messages": MESSAGES, "stream": True, **fields}
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{mock.base_url}/chat/completions", json=body)
    events = [line.removeprefix("data: ") for line in response.text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    return [json.loads(event) for event in events[:-1]]


async def test_tool_calls_stream(mock: MockModel, client: openai.AsyncOpenAI) -> None:
    stream = await open_stream(
        client, "mock?tools=2&rate=0", stream_options={"include_usage": True}
    )
    snapshot, chunks = await accumulate(stream)

    [choice] = snapshot.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert calls_of(choice.message) == [
        ("search_web", {"query": PROMPT, "max_results": 9}),
        ("get_time", {"timezone": "Europe/Zurich"}),
    ]
    expected = mock_tool_calls(PROMPT, 2)
    assert [(c.id, c.function.name, c.function.arguments) for c in choice.message.tool_calls] == [
        (c.id, c.name, c.arguments) for c in expected
    ]
    assert snapshot.usage is not None
    parts = len(chunks) - 3  # all but the role, finish and usage chunks
    assert (
        snapshot.usage.completion_tokens
        == parts
        == 2 + sum(len(argument_fragments(c.arguments)) for c in expected)
    )
    [record] = mock.requests
    assert record.choices[0].tool_calls == tuple(expected)
    assert (record.sent_text, record.finish_reason, record.completed) == ("", "tool_calls", True)


async def test_tool_calls_wire_format(mock: MockModel) -> None:
    chunks = await raw_chunks(mock, "mock?tools=2&rate=0")
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0] == {"role": "assistant", "content": None}
    assert deltas[-1] == {} and chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    calls = [d["tool_calls"] for d in deltas[1:-1]]
    assert all(len(call) == 1 for call in calls)
    for index, expected in enumerate(mock_tool_calls(PROMPT, 2)):
        first, *rest = [call[0] for call in calls if call[0]["index"] == index]
        assert first == {
            "index": index,
            "id": expected.id,
            "type": "function",
            "function": {"name": expected.name, "arguments": ""},
        }
        assert all(set(c) == {"index", "function"} for c in rest)
        assert all(set(c["function"]) == {"arguments"} for c in rest)
        fragments = [c["function"]["arguments"] for c in rest]
        assert "".join(fragments) == expected.arguments
        assert len(fragments) >= 5
        assert all(0 < len(fragment) <= 7 for fragment in fragments)
    # The calls come one after the other: every chunk of call 0, then call 1.
    indexes = [call[0]["index"] for call in calls]
    assert indexes == sorted(indexes)


async def test_tool_calls_use_the_request_tools(
    mock: MockModel, client: openai.AsyncOpenAI
) -> None:
    stream = await open_stream(client, "mock?tools=3&rate=0", tools=TOOLS)
    snapshot, _ = await accumulate(stream, input_tools=TOOLS)
    message = snapshot.choices[0].message
    assert calls_of(message) == [
        ("get_weather", {"city": PROMPT, "unit": "celsius"}),
        ("set_alarm", {"hour": 4, "loud": False, "volume": 0.26, "label": PROMPT}),
        ("get_weather", {"city": PROMPT, "unit": "celsius"}),
    ]
    # The SDK parsed the strict tool's arguments itself.
    assert message.tool_calls is not None
    assert message.tool_calls[0].function.parsed_arguments == {"city": PROMPT, "unit": "celsius"}
    assert mock.requests[0].choices[0].tool_calls == tuple(mock_tool_calls(PROMPT, 3, tools=TOOLS))

    # A named tool_choice makes every call that function's.
    stream = await open_stream(
        client,
        "mock?tools=2&rate=0",
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "set_alarm"}},
    )
    snapshot, _ = await accumulate(stream)
    assert [name for name, _ in calls_of(snapshot.choices[0].message)] == ["set_alarm"] * 2


async def test_text_before_tool_calls(mock: MockModel, client: openai.AsyncOpenAI) -> None:
    snapshot, chunks = await accumulate(
        await open_stream(client, "mock?tools=1&text=1&tokens=5&rate=0")
    )
    [choice] = snapshot.choices
    assert choice.message.content == "".join(mock_text(PROMPT, 5))
    [call] = mock_tool_calls(PROMPT, 1)
    assert calls_of(choice.message) == [(call.name, json.loads(call.arguments))]
    assert choice.finish_reason == "tool_calls"
    kinds = [
        "text" if c.choices[0].delta.content else "call"
        for c in chunks[1:-1]  # between the role and finish chunks
    ]
    assert kinds == ["text"] * 5 + ["call"] * (len(kinds) - 5)
    assert chunks[0].choices[0].delta.content == ""  # the role chunk of a text answer


async def test_reasoning_stream(mock: MockModel, client: openai.AsyncOpenAI) -> None:
    stream = await open_stream(
        client, "mock?reasoning=12&tokens=5&rate=0", stream_options={"include_usage": True}
    )
    snapshot, chunks = await accumulate(stream)
    message = snapshot.choices[0].message.to_dict()
    reasoning = "".join(mock_reasoning(PROMPT, 12))
    assert message["reasoning_content"] == reasoning
    assert message["content"] == "".join(mock_text(PROMPT, 5))
    assert snapshot.choices[0].finish_reason == "stop"
    deltas = [c.choices[0].delta.to_dict() for c in chunks[1:-2]]
    assert [next(iter(d)) for d in deltas] == ["reasoning_content"] * 12 + ["content"] * 5
    usage = snapshot.usage
    assert usage is not None and usage.completion_tokens == 17
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 12
    assert mock.requests[0].choices[0].reasoning == reasoning
    assert mock.requests[0].sent_text == message["content"]

    # OpenRouter's and Ollama's field name.
    snapshot, _ = await accumulate(
        await open_stream(client, "mock?reasoning=3&tokens=2&reasoning_field=reasoning&rate=0")
    )
    message = snapshot.choices[0].message.to_dict()
    assert message["reasoning"] == "".join(mock_reasoning(PROMPT, 3))
    assert "reasoning_content" not in message


async def test_refusal_stream(mock: MockModel, client: openai.AsyncOpenAI) -> None:
    snapshot, chunks = await accumulate(await open_stream(client, "mock?refusal=1&rate=0"))
    [choice] = snapshot.choices
    assert choice.message.refusal == "".join(mock_refusal(PROMPT))
    assert choice.message.refusal == "Sorry, I won't be able to provide that."
    assert choice.message.content is None
    assert choice.finish_reason == "stop"
    assert chunks[0].choices[0].delta.to_dict() == {
        "role": "assistant",
        "content": None,
        "refusal": "",
    }
    refusal_chunks = [c for c in chunks if c.choices[0].delta.refusal]
    assert len(refusal_chunks) == len(mock_refusal(PROMPT)) >= 4
    assert all(c.choices[0].delta.content is None for c in chunks)
    [record] = mock.requests
    assert (record.choices[0].refusal, record.choices[0].content) == (choice.message.refusal, None)

    with pytest.raises(openai.BadRequestError) as caught:
        await open_stream(client, "mock?refusal=1&tools=1")
    assert caught.value.param == "model"


async def test_n_choices_interleaved(mock: MockModel, client: openai.AsyncOpenAI) -> None:
    snapshot, chunks = await accumulate(await open_stream(client, "mock?tokens=6&rate=0", n=3))
    texts = ["".join(mock_text(PROMPT, 6, choice)) for choice in range(3)]
    assert texts[0] == "".join(mock_text(PROMPT, 6))  # choice 0 says what n=1 says
    assert len(set(texts)) == 3
    assert [c.message.content for c in snapshot.choices] == texts
    assert [(c.index, c.finish_reason) for c in snapshot.choices] == [
        (0, "stop"),
        (1, "stop"),
        (2, "stop"),
    ]
    assert all(len(chunk.choices) == 1 for chunk in chunks)
    order = [c.choices[0].index for c in chunks if c.choices[0].delta.content]
    assert order == [0, 1, 2] * 6
    [record] = mock.requests
    assert [c.content for c in record.choices] == texts
    assert record.sent_text == texts[0]
    assert record.tokens_sent == 6

    # Tool calls per choice too.
    snapshot, _ = await accumulate(await open_stream(client, "mock?tools=1&rate=0", n=2))
    for index, choice in enumerate(snapshot.choices):
        [call] = mock_tool_calls(PROMPT, 1, choice=index)
        assert calls_of(choice.message) == [(call.name, json.loads(call.arguments))]
        assert choice.finish_reason == "tool_calls"


async def test_invalid_n(client: openai.AsyncOpenAI) -> None:
    for n in (0, 9):
        with pytest.raises(openai.BadRequestError) as caught:
            await open_stream(client, "mock?rate=0", n=n)
        assert caught.value.param == "n"


async def test_non_streaming_parts(mock: MockModel, client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="mock?tools=2&text=1&tokens=3&reasoning=4&rate=0", messages=MESSAGES, n=2
    )
    assert completion.object == "chat.completion"
    assert len(completion.choices) == 2
    for index, choice in enumerate(completion.choices):
        assert choice.index == index
        assert choice.finish_reason == "tool_calls"
        assert choice.message.content == "".join(mock_text(PROMPT, 3, index))
        assert choice.message.to_dict()["reasoning_content"] == "".join(
            mock_reasoning(PROMPT, 4, index)
        )
        assert choice.message.refusal is None
        calls = mock_tool_calls(PROMPT, 2, choice=index)
        assert calls_of(choice.message) == [(c.name, json.loads(c.arguments)) for c in calls]
    pieces = sum(
        3 + 4 + sum(1 + len(argument_fragments(c.arguments)) for c in calls)
        for calls in (mock_tool_calls(PROMPT, 2, choice=index) for index in range(2))
    )
    assert completion.usage is not None
    assert completion.usage.completion_tokens == pieces
    assert completion.usage.completion_tokens_details is not None
    assert completion.usage.completion_tokens_details.reasoning_tokens == 8

    refusal = await client.chat.completions.create(model="mock?refusal=1", messages=MESSAGES)
    message = refusal.choices[0].message
    assert (message.content, message.refusal) == (None, "".join(mock_refusal(PROMPT)))
    assert refusal.choices[0].finish_reason == "stop"
    assert all(record.completed for record in mock.requests)


async def test_requests_endpoint_carries_parts(mock: MockModel, client: openai.AsyncOpenAI) -> None:
    for stream_id, model in (("parts", "mock?reasoning=3&tools=1&rate=0"), ("text", "mock?")):
        headers = {"X-TokenRelay-Stream": stream_id}
        await accumulate(await open_stream(client, model, extra_headers=headers))
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{root_url(mock)}/_mock/requests")
    parts, text = response.json()
    [call] = mock_tool_calls(PROMPT, 1)
    assert parts["choices"] == [
        {
            "index": 0,
            "content": None,
            "reasoning": "".join(mock_reasoning(PROMPT, 3)),
            "refusal": None,
            "tool_calls": [{"id": call.id, "name": call.name, "arguments": call.arguments}],
            "finish_reason": "tool_calls",
        }
    ]
    assert (parts["sent_text"], parts["options"]["tools"]) == ("", 1)
    assert text["choices"] == [
        {
            "index": 0,
            "content": text["sent_text"],
            "reasoning": None,
            "refusal": None,
            "tool_calls": [],
            "finish_reason": "stop",
        }
    ]


async def test_parts_cut_by_max_tokens_and_faults(
    mock: MockModel, client: openai.AsyncOpenAI
) -> None:
    # max_tokens counts every part: the call's first chunk and three fragments.
    snapshot, _ = await accumulate(await open_stream(client, "mock?tools=1&rate=0", max_tokens=4))
    [call] = mock_tool_calls(PROMPT, 1)
    [got] = snapshot.choices[0].message.tool_calls or []
    assert got.function.arguments == "".join(argument_fragments(call.arguments)[:3])
    assert snapshot.choices[0].finish_reason == "length"
    assert mock.requests[-1].choices[0].tool_calls[0].arguments == got.function.arguments

    stream = await open_stream(client, "mock?reasoning=10&fault=stall&after=4&rate=0")
    reasoning = ""
    for _ in range(5):  # the role chunk, then four reasoning tokens
        chunk = await anext(stream)
        reasoning += chunk.choices[0].delta.to_dict().get("reasoning_content", "")
    assert reasoning == "".join(mock_reasoning(PROMPT, 4))
    with pytest.raises(TimeoutError):  # nothing more comes
        await asyncio.wait_for(anext(stream), 0.2)
    record = mock.requests[-1]
    assert (record.tokens_sent, record.finish_reason, record.completed) == (4, None, False)
    assert record.choices[0].reasoning == reasoning
    await stream.close()
    await eventually(lambda: record.closed_by_client_at is not None)

    text, finish_reason, _ = await collect(
        await open_stream(client, "mock?refusal=1&fault=length&after=2&rate=0")
    )
    assert (text, finish_reason) == ("", "length")
    assert mock.requests[-1].choices[0].refusal == "".join(mock_refusal(PROMPT)[:2])


async def test_rate_paces_tool_call_fragments(client: openai.AsyncOpenAI) -> None:
    started = time.monotonic()
    stream = await open_stream(client, "mock?tools=1&rate=100&ttft=0.1")
    arrivals = []
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.tool_calls:
            arrivals.append(time.monotonic() - started)
    [call] = mock_tool_calls(PROMPT, 1)
    assert len(arrivals) == 1 + len(argument_fragments(call.arguments))
    assert 0.1 <= arrivals[0] < 0.5
    assert 0.1 + (len(arrivals) - 1) / 100 - 0.01 <= arrivals[-1] < 0.1 + len(arrivals) / 100 + 1


def test_parts_options_parsing() -> None:
    assert MockOptions.parse(
        "mock?tools=2&text=1&reasoning=5&reasoning_field=reasoning&refusal=0"
    ) == MockOptions(tools=2, text=True, reasoning=5, reasoning_field="reasoning")
    assert MockOptions().says_text
    assert not MockOptions(tools=1).says_text
    assert MockOptions(tools=1, text=True).says_text
    assert not MockOptions(refusal=True).says_text
    assert MockOptions.parse("mock?refusal=1&text=0").refusal
    for bad in (
        "mock?reasoning_field=thinking",
        "mock?text=2",
        "mock?tools=-1",
        "mock?refusal=1&tools=1",
        "mock?refusal=1&text=1",
    ):
        with pytest.raises(MockOptionsError):
            MockOptions.parse(bad)


def test_mock_tool_calls_follow_the_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "kind": {"const": "fixed"},
            "size": {"type": "integer", "minimum": 5, "maximum": 6},
            "ratio": {"type": "number", "minimum": -1, "maximum": 0},
            "tags": {"type": "array", "items": {"type": "string"}},
            "flag": {"type": "boolean"},
            "maybe": {"anyOf": [{"type": "integer", "maximum": -10}, {"type": "null"}]},
            "nested": {
                "properties": {"colour": {"enum": ["red", "blue"]}, "none": {"type": "null"}}
            },
        },
    }
    tools = [
        {"type": "custom", "custom": {"name": "ignored"}},
        {"type": "function", "function": {"name": "shape", "parameters": schema}},
        {"type": "function", "function": {"name": "bare"}},
    ]
    prompt = "  Über   relays,\n and a rather long prompt that goes on and on  "
    calls = mock_tool_calls(prompt, 8, tools=tools, choice=2)
    assert calls == mock_tool_calls(prompt, 8, tools=tools, choice=2)
    assert calls != mock_tool_calls(prompt, 8, tools=tools, choice=1)
    assert [c.name for c in calls] == ["shape", "bare"] * 4
    assert len({c.id for c in calls}) == 8
    for call in calls:
        assert isinstance(call, MockToolCall)
        assert "".join(argument_fragments(call.arguments)) == call.arguments
        if call.name == "bare":
            assert call.arguments == "{}"
            continue
        args = json.loads(call.arguments)
        assert list(args) == list(schema["properties"])  # type: ignore[call-overload]
        assert args["kind"] == "fixed"
        assert args["size"] in (5, 6)
        assert -1 <= args["ratio"] <= 0
        assert args["tags"] == ["Über relays, and a rather long prompt"]
        assert isinstance(args["flag"], bool)
        assert isinstance(args["maybe"], int) and args["maybe"] <= -10
        assert args["nested"]["colour"] in ("red", "blue") and args["nested"]["none"] is None
    # Without function tools: the built-in set, from an offset the prompt picks.
    names = [c.name for c in mock_tool_calls(prompt, 4)]
    assert sorted(names) == ["convert_currency", "get_time", "get_weather", "search_web"]
