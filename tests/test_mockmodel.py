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
from typing import Any, get_args

import httpx
import openai
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState, ParsedChatCompletionSnapshot
from openai.types.chat import ChatCompletionChunk
from openai.types.completion_usage import CompletionUsage
from openai.types.responses import Response, ResponseStreamEvent

from producer.mockmodel import (
    MockModel,
    MockOptions,
    MockOptionsError,
    MockToolCall,
    argument_fragments,
    echo_text,
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
    # the server's --defaults, under what a model name says
    assert MockOptions.parse("gpt-4o?tokens=3", "rate=0&tokens=9") == MockOptions(tokens=3, rate=0)
    with pytest.raises(MockOptionsError):
        MockModel(defaults="rate=fast")


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


async def test_echo_says_the_prompt(mock: MockModel, client: openai.AsyncOpenAI) -> None:
    prompt = "Some **bold**, then\n\n```py\nprint('hi')\n```\n<img src=x onerror=alert(1)>  "
    tokens = echo_text(prompt)
    assert "".join(tokens) == prompt
    assert tokens[:3] == ["Some", " **bold**,", " then"]
    assert echo_text("") == [] and echo_text(" ") == [" "]
    messages: Any = [
        {"role": "user", "content": "An earlier question"},
        {"role": "assistant", "content": "An earlier answer"},
        {"role": "user", "content": prompt},
    ]
    stream = await client.chat.completions.create(
        model="mock?echo=1&tokens=3&rate=0", messages=messages, stream=True
    )
    assert await collect(stream) == (prompt, "stop", None)  # the last user message, whole
    assert mock.requests[-1].sent_text == prompt

    # every choice says it (the parts path), and max_tokens cuts it
    snapshot, _ = await accumulate(
        await client.chat.completions.create(
            model="mock?echo=1&reasoning=2&rate=0", messages=messages, stream=True, n=2
        )
    )
    assert [c.message.content for c in snapshot.choices] == [prompt, prompt]
    stream = await client.chat.completions.create(
        model="mock?echo=1&rate=0", messages=messages, stream=True, max_tokens=2
    )
    assert await collect(stream) == ("Some **bold**,", "length", None)
    assert MockOptions.parse("mock?echo=1") == MockOptions(echo=True)


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


# --- the Responses API ------------------------------------------------------------------------

RESPONSES_TOOLS: Any = [{"type": "function", **tool["function"]} for tool in TOOLS]
RESP_ID = re.compile(r"resp_[0-9a-f]{48}")
# The SDK's class of every Responses stream event, by its type.
EVENT_CLASSES: dict[str, Any] = {
    get_args(cls.model_fields["type"].annotation)[0]: cls
    for cls in get_args(get_args(ResponseStreamEvent)[0])
}
TEXT_ITEM = ["response.output_item.added", "response.content_part.added"]
TEXT_DONE = ["response.output_text.done", "response.content_part.done", "response.output_item.done"]


async def response_events(client: openai.AsyncOpenAI, model: str, **kwargs: Any) -> list[Any]:
    """Every event of a streamed Response, checked against the SDK's types and numbered 0..N-1."""
    kwargs.setdefault("input", PROMPT)
    stream = await client.responses.create(model=model, stream=True, **kwargs)
    events = [event async for event in stream]
    check_events(events)
    return events


def check_events(events: list[Any]) -> None:
    for event in events:
        cls = EVENT_CLASSES[event.type]
        assert isinstance(event, cls)
        cls.model_validate(event.to_dict())  # strictly: every required field, of the right type
    assert [event.sequence_number for event in events] == list(range(len(events)))


def types_of(events: list[Any]) -> list[str]:
    return [event.type for event in events]


async def test_responses_stream_text(mock: MockModel, client: openai.AsyncOpenAI) -> None:
    model = "mock?tokens=7&rate=0"
    headers = {"X-TokenRelay-Stream": "r-1"}
    events = await response_events(client, model, extra_headers=headers)

    assert types_of(events) == [
        "response.created",
        "response.in_progress",
        *TEXT_ITEM,
        *["response.output_text.delta"] * 7,
        *TEXT_DONE,
        "response.completed",
    ]
    text = "".join(mock_text(PROMPT, 7))
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert "".join(e.delta for e in deltas) == text
    assert {(e.output_index, e.content_index) for e in deltas} == {(0, 0)}
    created, completed = events[0], events[-1]
    assert (created.response.status, created.response.output, created.response.usage) == (
        "in_progress",
        [],
        None,
    )
    response = completed.response
    assert RESP_ID.fullmatch(response.id) and response.id == created.response.id
    assert (response.object, response.status, response.model) == ("response", "completed", model)
    assert response.output_text == text
    [message] = response.output
    assert (message.type, message.status, message.role) == ("message", "completed", "assistant")
    assert re.fullmatch(r"msg_[0-9a-f]{48}", message.id)
    assert {e.item_id for e in events if hasattr(e, "item_id")} == {message.id}
    assert events[-2].item == message  # output_item.done carries the final item
    assert events[-4].text == text  # output_text.done
    usage = response.usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens) == (len(PROMPT.split()), 7)
    assert usage.total_tokens == usage.input_tokens + 7
    assert usage.output_tokens_details.reasoning_tokens == 0
    [record] = mock.requests
    assert (record.path, record.stream_id, record.response_id) == (
        "/v1/responses",
        "r-1",
        response.id,
    )
    assert (record.sent_text, record.tokens_sent, record.finish_reason) == (text, 7, "stop")
    assert (record.status, record.completed, record.closed_by_client_at) == (
        "completed",
        True,
        None,
    )
    assert record.body["input"] == PROMPT


async def test_responses_wire_format(mock: MockModel) -> None:
    body = {"model": "mock?tokens=2&rate=0", "input": PROMPT, "stream": True}
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{mock.base_url}/responses", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.endswith("\n\n") and "[DONE]" not in response.text
    events = []
    for block in response.text.removesuffix("\n\n").split("\n\n"):
        event_line, data_line = block.split("\n")
        data = json.loads(data_line.removeprefix("data: "))
        assert event_line == f"event: {data['type']}"
        EVENT_CLASSES[data["type"]].model_validate(data)
        events.append(data)
    assert [e["sequence_number"] for e in events] == list(range(len(events))) == list(range(10))
    item_id = events[2]["item"]["id"]
    assert events[2] == {
        "type": "response.output_item.added",
        "item": {
            "id": item_id,
            "type": "message",
            "status": "in_progress",
            "content": [],
            "role": "assistant",
        },
        "output_index": 0,
        "sequence_number": 2,
    }
    part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
    assert events[3] == {
        "type": "response.content_part.added",
        "content_index": 0,
        "item_id": item_id,
        "output_index": 0,
        "part": part,
        "sequence_number": 3,
    }
    first, second = mock_text(PROMPT, 2)
    assert events[4] == {
        "type": "response.output_text.delta",
        "content_index": 0,
        "delta": first,
        "item_id": item_id,
        "logprobs": [],
        "output_index": 0,
        "sequence_number": 4,
    }
    assert events[5]["delta"] == second
    assert events[6]["text"] == events[7]["part"]["text"] == first + second
    assert events[8]["item"]["content"] == [{**part, "text": first + second}]
    final = events[9]["response"]
    assert final["output"] == [events[8]["item"]]
    assert final["incomplete_details"] is None and isinstance(final["completed_at"], int)
    assert final["usage"]["input_tokens_details"] == {"cache_write_tokens": 0, "cached_tokens": 0}


async def test_responses_input_items_and_instructions(
    mock: MockModel, client: openai.AsyncOpenAI
) -> None:
    response = await client.responses.create(
        model="mock?tokens=5&rate=0",
        instructions="Be terse and kind.",
        input=[
            {"role": "user", "content": "An earlier question."},
            {"role": "assistant", "content": "An earlier answer."},
            {"role": "user", "content": [{"type": "input_text", "text": PROMPT}]},
        ],
    )
    assert response.output_text == "".join(mock_text(PROMPT, 5))  # keyed on the last user text
    assert response.instructions == "Be terse and kind."
    assert response.usage is not None
    assert response.usage.input_tokens == 4 + 3 + 3 + len(PROMPT.split())
    assert mock.requests[0].sent_text == response.output_text


async def test_responses_function_calls(mock: MockModel, client: openai.AsyncOpenAI) -> None:
    events = await response_events(client, "mock?tools=2&rate=0")
    expected = mock_tool_calls(PROMPT, 2)  # the same calls the chat path makes
    fragments = [argument_fragments(call.arguments) for call in expected]
    assert types_of(events) == [
        "response.created",
        "response.in_progress",
        *(
            t
            for f in fragments
            for t in (
                "response.output_item.added",
                *["response.function_call_arguments.delta"] * len(f),
                "response.function_call_arguments.done",
                "response.output_item.done",
            )
        ),
        "response.completed",
    ]
    response = events[-1].response
    calls = response.output
    assert [(c.type, c.status) for c in calls] == [("function_call", "completed")] * 2
    assert [(c.call_id, c.name, json.loads(c.arguments)) for c in calls] == [
        (expected[0].id, "search_web", {"query": PROMPT, "max_results": 9}),
        (expected[1].id, "get_time", {"timezone": "Europe/Zurich"}),
    ]
    assert all(re.fullmatch(r"fc_[0-9a-f]{48}", c.id) for c in calls)
    added = [e for e in events if e.type == "response.output_item.added"]
    assert [(e.item.arguments, e.item.status, e.output_index) for e in added] == [
        ("", "in_progress", 0),
        ("", "in_progress", 1),
    ]
    for index, call in enumerate(calls):
        deltas = [
            e
            for e in events
            if e.type == "response.function_call_arguments.delta" and e.output_index == index
        ]
        assert [e.delta for e in deltas] == fragments[index]
        assert {e.item_id for e in deltas} == {call.id}
        [done] = [
            e
            for e in events
            if e.type == "response.function_call_arguments.done" and e.output_index == index
        ]
        assert done.arguments == call.arguments
    assert response.output_text == ""
    assert response.usage is not None
    assert response.usage.output_tokens == 2 + sum(map(len, fragments))
    [record] = mock.requests
    assert record.choices[0].tool_calls == tuple(expected)
    assert (record.sent_text, record.finish_reason, record.status) == (
        "",
        "tool_calls",
        "completed",
    )


async def test_responses_stream_helper_with_request_tools(
    mock: MockModel, client: openai.AsyncOpenAI
) -> None:
    async with client.responses.stream(
        model="mock?tools=2&text=1&tokens=4&rate=0", input=PROMPT, tools=RESPONSES_TOOLS
    ) as stream:
        texts = [
            event.delta async for event in stream if event.type == "response.output_text.delta"
        ]
        final = await stream.get_final_response()
    assert final.output_text == "".join(texts) == "".join(mock_text(PROMPT, 4))
    output: list[Any] = final.output
    message, *calls = output
    assert message.type == "message"
    assert [(c.type, c.name, json.loads(c.arguments)) for c in calls] == [
        ("function_call", "get_weather", {"city": PROMPT, "unit": "celsius"}),
        ("function_call", "set_alarm", {"hour": 4, "loud": False, "volume": 0.26, "label": PROMPT}),
    ]
    # The SDK parsed the strict tool's arguments itself.
    assert [c.parsed_arguments for c in calls] == [{"city": PROMPT, "unit": "celsius"}, None]
    assert [c.call_id for c in calls] == [c.id for c in mock_tool_calls(PROMPT, 2, tools=TOOLS)]
    assert [tool.name for tool in final.tools] == ["get_weather", "set_alarm"]  # type: ignore[union-attr]
    assert mock.requests[0].sent_text == final.output_text

    # A named tool_choice makes every call that function's.
    response = await client.responses.create(
        model="mock?tools=2&rate=0",
        input=PROMPT,
        tools=RESPONSES_TOOLS,
        tool_choice={"type": "function", "name": "set_alarm"},
    )
    assert [item.name for item in response.output] == ["set_alarm"] * 2  # type: ignore[union-attr]


async def test_responses_reasoning_summary(mock: MockModel, client: openai.AsyncOpenAI) -> None:
    events = await response_events(client, "mock?reasoning=6&tokens=3&rate=0")
    assert types_of(events) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        *["response.reasoning_summary_text.delta"] * 6,
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        *TEXT_ITEM,
        *["response.output_text.delta"] * 3,
        *TEXT_DONE,
        "response.completed",
    ]
    summary = "".join(mock_reasoning(PROMPT, 6))
    deltas = [e for e in events if e.type == "response.reasoning_summary_text.delta"]
    assert "".join(e.delta for e in deltas) == summary
    assert {(e.output_index, e.summary_index) for e in deltas} == {(0, 0)}
    assert events[2].item.summary == []
    assert events[3].part.text == ""
    assert events[10].text == events[11].part.text == summary
    response = events[-1].response
    reasoning, message = response.output
    assert reasoning.type == "reasoning" and re.fullmatch(r"rs_[0-9a-f]{48}", reasoning.id)
    assert [(s.type, s.text) for s in reasoning.summary] == [("summary_text", summary)]
    assert response.output_text == "".join(mock_text(PROMPT, 3))
    assert {e.output_index for e in events if e.type == "response.output_text.delta"} == {1}
    assert message.id != reasoning.id
    assert response.usage.output_tokens == 9
    assert response.usage.output_tokens_details.reasoning_tokens == 6
    [record] = mock.requests
    assert (record.choices[0].reasoning, record.sent_text) == (summary, response.output_text)


async def test_responses_refusal(mock: MockModel, client: openai.AsyncOpenAI) -> None:
    events = await response_events(client, "mock?refusal=1&rate=0")
    refusal = mock_refusal(PROMPT)
    assert types_of(events) == [
        "response.created",
        "response.in_progress",
        *TEXT_ITEM,
        *["response.refusal.delta"] * len(refusal),
        "response.refusal.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    [message] = events[-1].response.output
    assert [(p.type, p.refusal) for p in message.content] == [("refusal", "".join(refusal))]
    assert events[3].part.refusal == ""
    assert mock.requests[0].choices[0].refusal == "".join(refusal)
    assert mock.requests[0].choices[0].content is None


async def test_responses_error_faults(mock: MockModel, client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        await client.responses.create(
            model="mock?fault=429&retry_after=3", input=PROMPT, stream=True
        )
    assert caught.value.response.headers["retry-after"] == "3"
    assert (caught.value.code, caught.value.type) == ("rate_limit_exceeded", "requests")
    assert mock.requests[0].completed and mock.requests[0].response_id is None
    with pytest.raises(openai.InternalServerError):
        await client.responses.create(model="mock?fault=500", input=PROMPT, stream=True)
    with pytest.raises(openai.BadRequestError):
        await client.responses.create(model="mock?fault=400", input=PROMPT)
    for param, fields in (
        ("model", {"model": "mock?tokens=many"}),
        ("max_output_tokens", {"max_output_tokens": -1}),
        ("input", {"extra_body": {"input": 7}}),
    ):
        request: dict[str, Any] = {"model": "mock", "input": PROMPT, **fields}
        with pytest.raises(openai.BadRequestError) as invalid:
            await client.responses.create(**request)
        assert invalid.value.param == param
    # The fault hits only the first `times` requests of a stream.
    headers = {"X-TokenRelay-Stream": "retry-me"}
    model = "mock?fault=429&times=1&tokens=2&rate=0"
    with pytest.raises(openai.RateLimitError):
        await client.responses.create(model=model, input=PROMPT, extra_headers=headers)
    response = await client.responses.create(model=model, input=PROMPT, extra_headers=headers)
    assert response.output_text == "".join(mock_text(PROMPT, 2))


async def test_responses_stall_records_client_close(
    mock: MockModel, client: openai.AsyncOpenAI
) -> None:
    stream = await client.responses.create(
        model="mock?fault=stall&after=4&rate=0", input=PROMPT, stream=True
    )
    events: list[Any] = [await anext(stream) for _ in range(8)]  # 4 deltas after 4 events
    check_events(events)
    assert types_of(events)[-4:] == ["response.output_text.delta"] * 4
    assert "".join(e.delta for e in events[4:]) == "".join(mock_text(PROMPT, 4))
    with pytest.raises(TimeoutError):  # nothing more comes
        await asyncio.wait_for(anext(stream), 0.2)
    [record] = mock.requests
    assert (record.tokens_sent, record.status, record.completed) == (4, "in_progress", False)
    assert record.closed_by_client_at is None

    closed_at = time.monotonic()
    await stream.close()
    await eventually(lambda: record.closed_by_client_at is not None)
    assert record.closed_by_client_at is not None
    assert record.closed_by_client_at - closed_at < 0.5
    assert (record.finish_reason, record.completed) == (None, False)


async def test_responses_incomplete(mock: MockModel, client: openai.AsyncOpenAI) -> None:
    # fault=length: cut after `after` tokens, then response.incomplete.
    events = await response_events(client, "mock?fault=length&after=5&rate=0")
    assert types_of(events) == [
        "response.created",
        "response.in_progress",
        *TEXT_ITEM,
        *["response.output_text.delta"] * 5,
        *TEXT_DONE,
        "response.incomplete",
    ]
    response = events[-1].response
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.completed_at is None
    assert response.output_text == "".join(mock_text(PROMPT, 5))
    assert [item.status for item in response.output] == ["incomplete"]
    assert events[-2].item.status == "incomplete"
    record = mock.requests[-1]
    assert (record.status, record.finish_reason, record.completed) == ("incomplete", "length", True)

    # max_output_tokens counts every part: here the call's added event and two fragments.
    events = await response_events(client, "mock?tools=1&rate=0", max_output_tokens=3)
    [call] = mock_tool_calls(PROMPT, 1)
    response = events[-1].response
    assert (response.status, response.max_output_tokens) == ("incomplete", 3)
    [item] = response.output
    assert item.arguments == "".join(argument_fragments(call.arguments)[:2])
    assert item.status == "incomplete"
    assert response.usage.output_tokens == 3
    assert mock.requests[-1].choices[0].tool_calls[0].arguments == item.arguments

    # Cut inside the reasoning: its summary part is marked incomplete.
    events = await response_events(client, "mock?reasoning=8&rate=0", max_output_tokens=2)
    [part_done] = [e for e in events if e.type == "response.reasoning_summary_part.done"]
    assert (part_done.part.text, part_done.status) == (
        "".join(mock_reasoning(PROMPT, 2)),
        "incomplete",
    )
    assert types_of(events)[-1] == "response.incomplete"


async def test_responses_stream_breaking_faults(
    mock: MockModel, client: openai.AsyncOpenAI
) -> None:
    stream = await client.responses.create(
        model="mock?fault=disconnect&after=5&rate=0", input=PROMPT, stream=True
    )
    seen: list[Any] = []
    with pytest.raises(openai.APIConnectionError):
        async for event in stream:
            seen.append(event)
    assert types_of(seen)[-5:] == ["response.output_text.delta"] * 5
    record = mock.requests[-1]
    assert (record.tokens_sent, record.completed, record.closed_by_client_at) == (5, False, None)

    events = await response_events(client, "mock?fault=no_finish&after=2&rate=0")
    assert types_of(events)[-1] == "response.output_text.delta"  # no terminal event
    assert mock.requests[-1].completed and mock.requests[-1].status == "in_progress"

    stream = await client.responses.create(
        model="mock?fault=malformed&after=2&rate=0", input=PROMPT, stream=True
    )
    with pytest.raises(json.JSONDecodeError):
        async for _ in stream:
            pass


async def test_responses_non_streaming(mock: MockModel, client: openai.AsyncOpenAI) -> None:
    response = await client.responses.create(model="mock?tokens=12", input=PROMPT)
    Response.model_validate(response.to_dict())
    assert (response.object, response.status) == ("response", "completed")
    assert response.output_text == "".join(mock_text(PROMPT, 12))
    assert response.usage is not None and response.usage.output_tokens == 12
    record = mock.requests[-1]
    assert (record.response_id, record.status, record.completed) == (response.id, "completed", True)
    assert record.sent_text == response.output_text

    response = await client.responses.create(
        model="mock?tools=1&text=1&tokens=3&reasoning=4&rate=0", input=PROMPT
    )
    assert [item.type for item in response.output] == ["reasoning", "message", "function_call"]
    reasoning, _, call = response.output
    assert reasoning.summary[0].text == "".join(mock_reasoning(PROMPT, 4))  # type: ignore[union-attr]
    [expected] = mock_tool_calls(PROMPT, 1)
    assert (call.call_id, call.arguments) == (expected.id, expected.arguments)  # type: ignore[union-attr]
    assert response.output_text == "".join(mock_text(PROMPT, 3))
    assert response.usage is not None
    assert response.usage.output_tokens_details.reasoning_tokens == 4

    response = await client.responses.create(
        model="mock?tokens=10&rate=0", input=PROMPT, max_output_tokens=4
    )
    assert (response.status, response.output_text) == ("incomplete", "".join(mock_text(PROMPT, 4)))
    assert response.incomplete_details is not None
    response = await client.responses.create(model="mock?fault=no_finish&after=2", input=PROMPT)
    assert response.status == "in_progress"
    assert response.output_text == "".join(mock_text(PROMPT, 2))


async def test_responses_in_requests_endpoint(mock: MockModel, client: openai.AsyncOpenAI) -> None:
    headers = {"X-TokenRelay-Stream": "resp"}
    events = await response_events(
        client, "mock?reasoning=3&tools=1&text=1&tokens=2&rate=0", extra_headers=headers
    )
    await collect(await open_stream(client, "mock?tokens=2&rate=0"))
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{root_url(mock)}/_mock/requests", params={"stream": "resp"})
        everything = await http.get(f"{root_url(mock)}/_mock/requests")
    [record] = response.json()
    [call] = mock_tool_calls(PROMPT, 1)
    assert record["path"] == "/v1/responses"
    assert (record["response_id"], record["status"]) == (events[-1].response.id, "completed")
    assert record["sent_text"] == "".join(mock_text(PROMPT, 2))
    assert record["choices"] == [
        {
            "index": 0,
            "content": record["sent_text"],
            "reasoning": "".join(mock_reasoning(PROMPT, 3)),
            "refusal": None,
            "tool_calls": [{"id": call.id, "name": call.name, "arguments": call.arguments}],
            "finish_reason": "tool_calls",
        }
    ]
    assert record["tokens_sent"] == 3 + 2 + 1 + len(argument_fragments(call.arguments))
    assert (record["completed"], record["closed_by_client_at"]) == (True, None)
    chat = everything.json()[1]
    assert (chat["path"], chat["response_id"], chat["status"]) == (
        "/v1/chat/completions",
        None,
        None,
    )


async def test_responses_pace_and_speed(client: openai.AsyncOpenAI) -> None:
    started = time.monotonic()
    events = await response_events(client, "mock?tokens=2000&rate=0")
    assert time.monotonic() - started < 5
    assert events[-1].response.output_text == "".join(mock_text(PROMPT, 2000))

    started = time.monotonic()
    stream = await client.responses.create(
        model="mock?tokens=5&rate=100&ttft=0.1", input=PROMPT, stream=True
    )
    arrivals = [
        time.monotonic() - started async for e in stream if e.type == "response.output_text.delta"
    ]
    assert len(arrivals) == 5
    assert 0.1 <= arrivals[0] < 0.5
    assert 0.14 <= arrivals[-1] < 1.0
