"""The replay upstream (tests/replay_upstream.py) and its recordings, read by the official SDK.

For every chat recording: the chunks the ``openai`` SDK yields over HTTP, and their
accumulation by ``ChatCompletionStreamState``, equal the same built from the file, whole or
with every event split in two writes (inside a multi-byte character where it has one). For
every Responses recording: the events ``client.responses.create(stream=True)`` yields equal the
file's events built the way the SDK builds them. A few exact facts per recording pin down what
the files hold; the error options give the SDK's own exceptions.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk
from openai.types.responses import ResponseStreamEvent

from tests.replay_upstream import (
    RECORDINGS_DIR,
    ReplayOptionsError,
    accumulate,
    data_payloads,
    expected_chunks,
    expected_response_events,
    expected_snapshot,
    fetch_requests,
    parse_event,
    parse_model,
    recorded_response_events,
    recording_bytes,
    recordings,
    replay_upstream_in_thread,
    replay_upstream_process,
    response_event_names,
    responses_recording_bytes,
    responses_recordings,
    split_events,
    utf8_split_point,
)

MESSAGES: list[Any] = [{"role": "user", "content": "replay"}]


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with replay_upstream_in_thread() as url:
        yield url


@pytest.fixture
def client(upstream: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=f"{upstream}/v1", api_key="sk-replay", max_retries=0, timeout=10
    ) as sdk:
        yield sdk


def sdk_chunks(client: openai.OpenAI, model: str) -> list[ChatCompletionChunk]:
    with client.chat.completions.create(model=model, messages=MESSAGES, stream=True) as stream:
        return list(stream)


def wait_for(predicate: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def last_request(upstream: str) -> dict[str, Any]:
    return fetch_requests(upstream)[-1]


# --- every recording through the SDK ------------------------------------------------------


def test_the_recordings_are_there_and_small() -> None:
    names = recordings()
    assert len(names) >= 16
    for name in names:
        body = recording_bytes(name)
        assert len(body) <= 35_000, name
        assert body.endswith(b"data: [DONE]\n\n"), name
        body.decode("utf-8")  # every file is valid UTF-8
        events = split_events(body)
        assert all(event.startswith(b"data: ") for event in events), name
        assert b"".join(events) == body


# inline-snapshot names openai-python's recordings by the SHA-256 of their bytes
OPENAI_PYTHON_SNAPSHOTS = {
    "openai-length": "4cc50a6135d254573a502310e6af1246f55edb6ad95fa24059f160996b68866d",
    "openai-logprobs-content": "83b060bae42eb41c4f1edbb7c1542b954b37d9dfd1910b964ddebc9677e6ae85",
    "openai-logprobs-refusal": "569c877e69429d4cbc1577d2cd6dd33878095c68badc6b6654a69769b391a1c1",
    "openai-n3-refusal": "a0c4f0be184e8234cdc0e3abae5dfafc1d712c253b42bafe07991b3058541016",
    "openai-n3": "a491adda08c3d4fde95f5b2ee3f60f7f745f1a56d82e62f58031cc2add502380",
    "openai-refusal": "173417d553406f034f643e5db3f8d591fb691ebac56f5ae39a22cc7d455c5353",
    "openai-text": "e2aad469b71d1d4894ff833ea147020a9d875eb7ce644a0ff355581690a4cbfd",
    "openai-tool-call-parallel": "f82268f2fefd5cfbc7eeb59c297688be2f6ca0849a6e4f17851b517310841d9b",
    "openai-tool-call-strict": "a247c49c5fcd492bfb7a02a3306ad615ed8d8f649888ebfddfbc3ee151f44d46",
    "openai-tool-call": "c6aa7e397b7123c3501f25df3a05d4daf7e8ad6d61ffa406ab5361fe36a8d5b1",
}


@pytest.mark.parametrize("name", sorted(OPENAI_PYTHON_SNAPSHOTS))
def test_openai_recordings_are_byte_exact_copies(name: str) -> None:
    """Each equals openai-python's `.inline-snapshot/external/<sha256>.bin` byte for byte."""
    assert hashlib.sha256(recording_bytes(name)).hexdigest() == OPENAI_PYTHON_SNAPSHOTS[name]


def test_the_readme_lists_every_recording() -> None:
    readme = (RECORDINGS_DIR.parent / "README.md").read_text()
    for name in recordings():
        assert f"`{name}.sse`" in readme, name


@pytest.mark.parametrize("name", recordings())
def test_the_sdk_reads_what_the_file_holds(client: openai.OpenAI, name: str) -> None:
    chunks = sdk_chunks(client, f"replay:{name}")
    assert [chunk.model_dump() for chunk in chunks] == expected_chunks(name)
    assert accumulate(chunks) == expected_snapshot(name)


@pytest.mark.parametrize("name", recordings())
def test_split_writes_change_nothing(client: openai.OpenAI, name: str) -> None:
    chunks = sdk_chunks(client, f"replay:{name}?split=1")
    assert [chunk.model_dump() for chunk in chunks] == expected_chunks(name)
    assert accumulate(chunks) == expected_snapshot(name)


@pytest.mark.parametrize("split", ["", "?split=1"])
def test_the_body_is_the_file_byte_for_byte(upstream: str, split: str) -> None:
    name = "openai-shaped-n2-tool-calls-multibyte"
    with httpx.stream(
        "POST",
        f"{upstream}/v1/chat/completions",
        json={"model": f"replay:{name}{split}", "messages": MESSAGES, "stream": True},
        timeout=10,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["transfer-encoding"] == "chunked"
        body = b"".join(response.iter_raw())
    assert body == recording_bytes(name)
    record = last_request(upstream)
    assert record["completed"] and not record["client_closed"] and not record["cut"]
    assert record["events_sent"] == len(split_events(body))


def test_split_cuts_multibyte_characters_across_reads(upstream: str) -> None:
    """With split=1 the reads themselves end inside UTF-8 characters: the socket is read raw."""
    name = "vllm-n2-stop-reason"
    request = json.dumps({"model": f"replay:{name}?split=1", "messages": [], "stream": True})
    port = int(upstream.rsplit(":", 1)[1])
    reads: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            (
                "POST /v1/chat/completions HTTP/1.1\r\nHost: replay\r\nConnection: close\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(request)}\r\n\r\n"
                f"{request}"
            ).encode()
        )
        while data := sock.recv(65536):
            reads.append(data)
    broken = 0
    for data in reads:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            broken += 1
    # "Ça", "très", "😊", the en dash: each is cut between its own event's two halves
    assert broken >= 4, reads
    assert len(reads) > len(split_events(recording_bytes(name)))


def test_split_point_falls_inside_a_multibyte_character() -> None:
    event = 'data: {"content":"東京"}\n\n'.encode()
    cut = utf8_split_point(event)
    with pytest.raises(UnicodeDecodeError):
        event[:cut].decode("utf-8")
    assert event[:cut] + event[cut:] == event
    assert 0 < utf8_split_point(b"data: ascii\n\n") < len(b"data: ascii\n\n")


# --- exact facts per recording ------------------------------------------------------------


def snapshot(name: str) -> dict[str, Any]:
    return expected_snapshot(name)


def message(name: str, choice: int = 0) -> dict[str, Any]:
    result: dict[str, Any] = snapshot(name)["choices"][choice]["message"]
    return result


def arguments(name: str, choice: int = 0) -> list[tuple[str, Any]]:
    return [
        (call["function"]["name"], json.loads(call["function"]["arguments"]))
        for call in message(name, choice)["tool_calls"]
    ]


def test_openai_text() -> None:
    assert message("openai-text")["content"] == (
        "I'm unable to provide real-time weather updates. To get the current weather in San "
        "Francisco, I recommend checking a reliable weather website or a weather app."
    )
    assert snapshot("openai-text")["usage"]["total_tokens"] == 44
    assert json.loads(data_payloads("openai-text")[-1])["choices"] == []  # the usage chunk


def test_openai_n3() -> None:
    done = snapshot("openai-n3")
    assert [c["finish_reason"] for c in done["choices"]] == ["stop"] * 3
    temperatures = [json.loads(c["message"]["content"])["temperature"] for c in done["choices"]]
    assert temperatures == [65, 61, 59]


def test_openai_n3_with_a_refusal() -> None:
    done = snapshot("openai-n3-refusal")
    assert json.loads(done["choices"][0]["message"]["content"])["temperature"] == 63
    assert json.loads(done["choices"][1]["message"]["content"])["temperature"] == 58.6
    assert done["choices"][2]["message"]["content"] is None
    assert done["choices"][2]["message"]["refusal"].startswith("I'm sorry, but I can't")


def test_openai_tool_calls() -> None:
    assert arguments("openai-tool-call") == [
        ("GetWeatherArgs", {"city": "Edinburgh", "country": "UK", "units": "c"})
    ]
    assert arguments("openai-tool-call-parallel") == [
        ("GetWeatherArgs", {"city": "Edinburgh", "country": "GB", "units": "c"}),
        ("get_stock_price", {"ticker": "AAPL", "exchange": "NASDAQ"}),
    ]
    assert [c["id"] for c in message("openai-tool-call-parallel")["tool_calls"]] == [
        "call_JMW1whyEaYG438VE1OIflxA2",
        "call_DNYTawLBoN8fj3KN6qU9N1Ou",
    ]
    assert arguments("openai-tool-call-strict") == [
        ("get_weather", {"city": "San Francisco", "state": "CA"})
    ]
    for name in ("openai-tool-call", "openai-tool-call-parallel", "openai-tool-call-strict"):
        assert snapshot(name)["choices"][0]["finish_reason"] == "tool_calls"


def test_openai_refusal_and_logprobs() -> None:
    assert message("openai-refusal")["refusal"] == "I'm sorry, I can't assist with that request."
    assert message("openai-refusal")["content"] is None
    logprobs = snapshot("openai-logprobs-content")["choices"][0]["logprobs"]
    assert [t["token"] for t in logprobs["content"]] == ["Foo", "!"]
    assert logprobs["content"][0]["bytes"] == [70, 111, 111]
    refusal = snapshot("openai-logprobs-refusal")["choices"][0]
    tokens = [t["token"] for t in refusal["logprobs"]["refusal"]]
    assert (
        "".join(tokens)
        == refusal["message"]["refusal"]
        == ("I'm very sorry, but I can't assist with that.")
    )
    assert refusal["logprobs"]["refusal"][2]["logprob"] == pytest.approx(-3.4121115e-6)


def test_openai_length() -> None:
    chunks = [
        ChatCompletionChunk.construct(**json.loads(p)) for p in data_payloads("openai-length")
    ]
    state: ChatCompletionStreamState[object] = ChatCompletionStreamState()
    for chunk in chunks:
        state.handle_chunk(chunk)
    assert state.current_completion_snapshot.choices[0].finish_reason == "length"
    assert state.current_completion_snapshot.choices[0].message.content == '{"'
    with pytest.raises(openai.LengthFinishReasonError):
        state.get_final_completion()


def test_azure_model_router() -> None:
    done = snapshot("azure-model-router")
    assert message("azure-model-router")["content"] == "Capital of Denmark."
    # the first chunk (Azure's prompt filter results) has an empty id, model and created:
    # the SDK's snapshot keeps them, as it keeps the first chunk's of any stream
    assert (done["id"], done["model"], done["created"]) == ("", "", 0)
    assert done["usage"]["completion_tokens_details"]["reasoning_tokens"] == 64
    first = json.loads(data_payloads("azure-model-router")[0])
    assert first["prompt_filter_results"][0]["content_filter_results"]["jailbreak"] == {
        "filtered": False,
        "detected": False,
    }
    chunks = expected_chunks("azure-model-router")
    assert all("obfuscation" in chunk for chunk in chunks[1:])
    assert chunks[2]["choices"][0]["content_filter_results"]["hate"]["severity"] == "safe"


def test_deepseek_reasoning() -> None:
    done = snapshot("deepseek-reasoning")
    assert message("deepseek-reasoning")["content"] == "There are **3** “r”s in **“strawberry”**."
    assert message("deepseek-reasoning")["reasoning_content"].startswith("We need answer simple.")
    assert done["usage"]["prompt_cache_miss_tokens"] == 97
    payloads = [json.loads(p) for p in data_payloads("deepseek-reasoning")]
    assert payloads[-1]["choices"][0]["finish_reason"] == "stop"  # usage rides on the last one
    assert payloads[-2]["choices"][0]["delta"] == {"content": "**.", "reasoning_content": None}


def test_ollama_reasoning_and_a_whole_tool_call() -> None:
    payloads = [json.loads(p) for p in data_payloads("ollama-reasoning-tool-call")]
    whole = [p for p in payloads if p["choices"] and p["choices"][0]["delta"].get("tool_calls")]
    assert len(whole) == 1  # the whole call in one chunk
    assert arguments("ollama-reasoning-tool-call") == [
        ("get_weather", {"city": "Kraków", "unit": "celsius"})
    ]
    assert message("ollama-reasoning-tool-call")["reasoning"] == (
        "Okay, the user wants the weather in Kraków. I should call get_weather."
    )
    # Ollama repeats "role" in every delta, and the SDK's accumulation concatenates it
    assert message("ollama-reasoning-tool-call")["role"] == "assistant" * 19


def test_vllm_stop_reason_and_tool_call() -> None:
    finals = [
        choice
        for chunk in expected_chunks("vllm-n2-stop-reason")
        for choice in chunk["choices"]
        if choice["finish_reason"]
    ]
    assert [(c["index"], c["finish_reason"], c["stop_reason"]) for c in finals] == [
        (0, "stop", "\n\n"),  # the request's stop string that ended choice 0
        (1, "length", None),
    ]
    assert message("vllm-n2-stop-reason", 0)["content"] == "Bonjour ! Ça va très bien, merci 😊"
    assert arguments("vllm-tool-call") == [
        ("get_weather", {"city": "São Paulo", "unit": "celsius"})
    ]
    first = json.loads(data_payloads("vllm-tool-call")[0])
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}


def test_n2_tool_calls_with_multibyte_text() -> None:
    assert message("openai-shaped-n2-tool-calls-multibyte", 0)["content"] == (
        "Je vérifie la météo à Zürich et à 東京 🌦️…"
    )
    assert arguments("openai-shaped-n2-tool-calls-multibyte", 0) == [
        ("get_weather", {"city": "Zürich", "country": "CH"})
    ]
    assert arguments("openai-shaped-n2-tool-calls-multibyte", 1) == [
        ("get_weather", {"city": "東京", "country": "JP"}),
        ("get_weather", {"city": "São Paulo", "country": "BR"}),
    ]


# --- the options --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (403, openai.PermissionDeniedError),
        (404, openai.NotFoundError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
def test_status_answers_openai_errors(
    client: openai.OpenAI, upstream: str, status: int, error: type[openai.APIStatusError]
) -> None:
    with pytest.raises(error) as raised:
        sdk_chunks(client, f"replay:openai-text?status={status}")
    assert raised.value.status_code == status
    body = raised.value.body
    assert isinstance(body, dict)
    assert set(body) == {"message", "type", "param", "code"}
    assert last_request(upstream)["status"] == status


def test_rate_limit_with_retry_after(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as raised:
        sdk_chunks(client, "replay:openai-text?status=429&retry_after=2")
    assert raised.value.response.headers["retry-after"] == "2"
    assert raised.value.code == "rate_limit_exceeded"
    assert raised.value.type == "requests"


def test_cut_after_breaks_the_stream(client: openai.OpenAI, upstream: str) -> None:
    received: list[ChatCompletionChunk] = []
    with pytest.raises((openai.APIError, httpx.HTTPError)):
        with client.chat.completions.create(
            model="replay:openai-tool-call-parallel?cut_after=5", messages=MESSAGES, stream=True
        ) as stream:
            received.extend(stream)
    assert [c.model_dump() for c in received] == expected_chunks("openai-tool-call-parallel")[:5]
    record = last_request(upstream)
    assert record["cut"] and record["events_sent"] == 5 and not record["completed"]


def test_silent_sends_headers_then_nothing(upstream: str) -> None:
    with openai.OpenAI(
        base_url=f"{upstream}/v1", api_key="sk-replay", max_retries=0, timeout=0.5
    ) as client:
        started = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            sdk_chunks(client, "replay:openai-text?silent=1")
        assert time.monotonic() - started >= 0.4
    wait_for(lambda: last_request(upstream)["client_closed"])
    record = last_request(upstream)
    assert record["status"] == 200 and record["events_sent"] == 0


def test_delay_between_events(client: openai.OpenAI) -> None:
    started = time.monotonic()
    chunks = sdk_chunks(client, "replay:openai-length?delay_ms=60")  # 5 events: 4 pauses
    assert time.monotonic() - started >= 0.24
    assert [c.model_dump() for c in chunks] == expected_chunks("openai-length")


def test_a_client_hanging_up_is_recorded(upstream: str) -> None:
    with (
        httpx.Client(timeout=10) as http,
        http.stream(
            "POST",
            f"{upstream}/v1/chat/completions",
            json={"model": "replay:openai-text?delay_ms=50", "messages": [], "stream": True},
        ) as response,
    ):
        next(response.iter_raw())
    wait_for(lambda: last_request(upstream)["client_closed"])
    record = last_request(upstream)
    assert not record["completed"]
    assert 0 < record["events_sent"] < len(split_events(recording_bytes("openai-text")))
    assert record["client_closed_after_s"] > 0


def test_requests_are_recorded(client: openai.OpenAI, upstream: str) -> None:
    sdk_chunks(client, "replay:openai-refusal?delay_ms=0")
    record = last_request(upstream)
    assert record["body"]["model"] == "replay:openai-refusal?delay_ms=0"
    assert record["body"]["messages"] == MESSAGES and record["body"]["stream"] is True
    assert record["headers"]["authorization"] == "Bearer sk-replay"
    assert record["recording"] == "openai-refusal" and record["options"]["delay_ms"] == 0
    assert record["completed"] and not record["client_closed"]


def test_unknown_recordings_options_and_non_streaming_requests(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        sdk_chunks(client, "replay:no-such-recording")
    with pytest.raises(openai.BadRequestError):
        sdk_chunks(client, "replay:openai-text?frobnicate=1")
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="replay:openai-text", messages=MESSAGES)
    with pytest.raises(ReplayOptionsError):
        parse_model("replay:openai-text?cut_after=-1")
    assert parse_model("replay:x?split=1&cut_after=3")[1].cut_after == 3


def test_models_lists_the_recordings(client: openai.OpenAI) -> None:
    ids = [model.id for model in client.models.list()]
    names = sorted(set(recordings()) | set(responses_recordings()))
    assert ids == [f"replay:{name}" for name in names]


def test_as_a_process(tmp_path: Path) -> None:
    with replay_upstream_process(tmp_path) as (process, url):
        assert process.alive()
        with openai.OpenAI(base_url=f"{url}/v1", api_key="sk-replay", max_retries=0) as client:
            chunks = sdk_chunks(client, "replay:vllm-tool-call?split=1")
        assert [c.model_dump() for c in chunks] == expected_chunks("vllm-tool-call")
        records = fetch_requests(url)
        assert [r["recording"] for r in records] == ["vllm-tool-call"]
        assert records[0]["completed"]
        httpx.delete(f"{url}/_replay/requests", timeout=5).raise_for_status()
        assert fetch_requests(url) == []
    assert not process.alive()


# --- the Responses API (POST /v1/responses) ------------------------------------------------

TERMINAL_EVENTS = {"response.completed", "response.failed", "response.incomplete"}


def sdk_events(client: openai.OpenAI, model: str) -> list[ResponseStreamEvent]:
    with client.responses.create(model=model, input="hi", stream=True) as stream:
        return list(stream)


def error_index(name: str) -> int | None:
    """Where a recording has an ``error`` event: the SDK raises there instead of yielding it."""
    types = [event["type"] for event in recorded_response_events(name)]
    return types.index("error") if "error" in types else None


def test_the_responses_recordings_are_there_and_small() -> None:
    names = responses_recordings()
    assert len(names) >= 10
    for name in names:
        body = responses_recording_bytes(name)
        # the code interpreter's only real recording is ~110 KB; the rest stay small
        assert len(body) <= (120_000 if name == "openai-code-interpreter" else 40_000), name
        body.decode("utf-8")
        events = split_events(body)
        assert b"".join(events) == body
        assert b"[DONE]" not in body, name  # Responses streams end with their last event
        for event, value in zip(events, recorded_response_events(name), strict=True):
            # exactly "event: <type>\ndata: <json>\n\n", the type on both lines
            kind, data = parse_event(event)
            assert data is not None
            assert event == f"event: {value['type']}\ndata: {data}\n\n".encode(), name
            assert kind == value["type"]
        recorded = recorded_response_events(name)
        # sequence_number on every event, gapless from 0
        assert [event["sequence_number"] for event in recorded] == list(range(len(recorded)))
        assert recorded[0]["type"] == "response.created"
        assert recorded[-1]["type"] in TERMINAL_EVENTS, name


def test_the_readme_lists_every_responses_recording() -> None:
    readme = (RECORDINGS_DIR.parent / "README.md").read_text()
    for name in responses_recordings():
        assert f"`responses/{name}.sse`" in readme, name


@pytest.mark.parametrize("split", ["", "?split=1"])
@pytest.mark.parametrize("name", responses_recordings())
def test_the_sdk_reads_what_the_responses_file_holds(
    client: openai.OpenAI, name: str, split: str
) -> None:
    expected = expected_response_events(name)
    stop = error_index(name)
    if stop is None:
        events = sdk_events(client, f"replay:{name}{split}")
        assert [event.model_dump() for event in events] == expected
        assert events[-1].type == recorded_response_events(name)[-1]["type"]
        assert events[-1].type in TERMINAL_EVENTS
        return
    # an `error` event: the SDK raises APIError with its `error` object, having yielded the
    # events before it (those after it, response.failed here, are never seen)
    received: list[ResponseStreamEvent] = []
    with pytest.raises(openai.APIError) as raised:
        with client.responses.create(
            model=f"replay:{name}{split}", input="hi", stream=True
        ) as stream:
            received.extend(stream)
    assert [event.model_dump() for event in received] == expected[:stop]
    assert raised.value.body == recorded_response_events(name)[stop]["error"]


@pytest.mark.parametrize("split", ["", "?split=1"])
def test_the_responses_body_is_the_file_byte_for_byte(upstream: str, split: str) -> None:
    name = "openai-web-search"  # curly apostrophes, en dashes: cut when split
    with httpx.stream(
        "POST",
        f"{upstream}/v1/responses",
        json={"model": f"replay:{name}{split}", "input": "hi", "stream": True},
        timeout=10,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        body = b"".join(response.iter_raw())
    assert body == responses_recording_bytes(name)
    record = last_request(upstream)
    assert record["path"] == "/v1/responses" and record["recording"] == name
    assert record["completed"] and record["events_sent"] == len(split_events(body))


def test_a_name_in_both_directories_replays_the_endpoints_own(upstream: str) -> None:
    assert "openai-text" in recordings() and "openai-text" in responses_recordings()
    for path, expected in [
        ("/v1/chat/completions", recording_bytes("openai-text")),
        ("/v1/responses", responses_recording_bytes("openai-text")),
    ]:
        response = httpx.post(
            f"{upstream}{path}",
            json={"model": "replay:openai-text", "input": "hi", "messages": [], "stream": True},
            timeout=10,
        )
        assert response.content == expected


def test_cut_after_breaks_the_responses_stream(client: openai.OpenAI, upstream: str) -> None:
    received: list[ResponseStreamEvent] = []
    with pytest.raises((openai.APIError, httpx.HTTPError)):
        with client.responses.create(
            model="replay:openai-function-call?cut_after=5", input="hi", stream=True
        ) as stream:
            received.extend(stream)
    assert [e.model_dump() for e in received] == expected_response_events("openai-function-call")[
        :5
    ]
    record = last_request(upstream)
    assert record["path"] == "/v1/responses"
    assert record["cut"] and record["events_sent"] == 5 and not record["completed"]


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
def test_responses_status_answers_openai_errors(
    client: openai.OpenAI, upstream: str, status: int, error: type[openai.APIStatusError]
) -> None:
    with pytest.raises(error) as raised:
        sdk_events(client, f"replay:openai-text?status={status}&retry_after=1")
    assert raised.value.status_code == status
    assert raised.value.response.headers["retry-after"] == "1"
    body = raised.value.body
    assert isinstance(body, dict) and set(body) == {"message", "type", "param", "code"}
    record = last_request(upstream)
    assert record["path"] == "/v1/responses" and record["status"] == status


def test_responses_rate_limit(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as raised:
        sdk_events(client, "replay:openai-web-search?status=429")
    assert raised.value.code == "rate_limit_exceeded"


def test_responses_silent_and_delay(upstream: str, client: openai.OpenAI) -> None:
    with openai.OpenAI(
        base_url=f"{upstream}/v1", api_key="sk-replay", max_retries=0, timeout=0.5
    ) as impatient:
        with pytest.raises(openai.APITimeoutError):
            sdk_events(impatient, "replay:openai-failed?silent=1")
    wait_for(lambda: last_request(upstream)["client_closed"])
    started = time.monotonic()
    events = sdk_events(client, "replay:openai-failed?delay_ms=100")  # 2 events: 1 pause
    assert time.monotonic() - started >= 0.1
    assert [e.model_dump() for e in events] == expected_response_events("openai-failed")


def test_responses_requests_are_recorded(client: openai.OpenAI, upstream: str) -> None:
    sdk_events(client, "replay:azure-text")
    record = last_request(upstream)
    assert record["method"] == "POST" and record["path"] == "/v1/responses"
    assert record["body"] == {"model": "replay:azure-text", "input": "hi", "stream": True}
    assert record["headers"]["authorization"] == "Bearer sk-replay"
    assert record["recording"] == "azure-text" and record["status"] == 200
    assert record["completed"] and not record["client_closed"]


def test_responses_unknown_recordings_and_non_streaming_requests(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        sdk_events(client, "replay:no-such-recording")
    with pytest.raises(openai.NotFoundError):  # a chat recording is not a Responses one
        sdk_events(client, "replay:vllm-tool-call")
    with pytest.raises(openai.BadRequestError):
        sdk_events(client, "replay:openai-text?frobnicate=1")
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="replay:openai-text", input="hi")


# --- exact facts per Responses recording ---------------------------------------------------


def events_of(name: str, kind: str) -> list[dict[str, Any]]:
    return [event for event in recorded_response_events(name) if event["type"] == kind]


def final_response(name: str) -> dict[str, Any]:
    response: dict[str, Any] = recorded_response_events(name)[-1]["response"]
    return response


def joined_deltas(name: str, kind: str) -> str:
    return "".join(event["delta"] for event in events_of(name, kind))


def test_responses_text() -> None:
    assert joined_deltas("openai-text", "response.output_text.delta") == "OK"
    assert final_response("openai-text")["output"][0]["content"][0]["text"] == "OK"
    assert final_response("openai-text")["id"] == "resp_sanitized_streaming"  # sanitized
    assert final_response("openai-text")["usage"]["total_tokens"] == 14
    azure = recorded_response_events("azure-text")
    assert azure[0]["response"]["content_filters"] is None
    filters = final_response("azure-text")["content_filters"]
    assert [f["source_type"] for f in filters] == ["prompt", "completion"]
    assert events_of("azure-text", "response.output_text.delta")[0]["obfuscation"] == (
        "VLMdSoETMf5"
    )


def test_responses_function_calls() -> None:
    [call] = [item for item in final_response("openai-function-call")["output"]]
    assert (call["type"], call["name"], json.loads(call["arguments"])) == (
        "function_call",
        "get_weather",
        {"city": "Beijing"},
    )
    assert call["id"].startswith("fc_") and call["call_id"] == "call_2FQdm3Br7Qb35YUBSkDR7kue"
    deltas = joined_deltas("openai-function-call", "response.function_call_arguments.delta")
    assert deltas == call["arguments"]
    assert all(
        "obfuscation" in event
        for event in events_of("openai-function-call", "response.function_call_arguments.delta")
    )
    reasoning, lookup = final_response("openai-reasoning-encrypted-function-call")["output"]
    assert reasoning["id"].startswith("rs_") and reasoning["summary"] == []
    # the encrypted reasoning differs in output_item.added, .done and response.completed
    blobs = {
        event["item"]["encrypted_content"]
        for event in recorded_response_events("openai-reasoning-encrypted-function-call")
        if event["type"].startswith("response.output_item.") and event["output_index"] == 0
    } | {reasoning["encrypted_content"]}
    assert len(blobs) == 3
    assert (lookup["name"], lookup["arguments"]) == ("lookupCode", "{}")


def test_responses_reasoning_summary() -> None:
    name = "openai-reasoning-summary-function-call"
    summary = joined_deltas(name, "response.reasoning_summary_text.delta")
    assert summary.startswith("**Calculating step-by-step using calculator**\n\nI'll compute")
    assert events_of(name, "response.reasoning_summary_text.done")[0]["text"] == summary
    reasoning, call = final_response(name)["output"]
    assert reasoning["summary"] == [{"type": "summary_text", "text": summary}]
    assert reasoning["encrypted_content"].startswith("gAAAAA")
    assert json.loads(call["arguments"]) == {"a": 12, "b": 7, "op": "add"}
    assert events_of("copilot-reasoning-text", "response.reasoning_summary_text.done")[0][
        "text"
    ] == ("**Counting character occurrences**")


def test_responses_web_search() -> None:
    name = "openai-web-search"
    output = final_response(name)["output"]
    assert [item["type"] for item in output] == ["reasoning", "web_search_call"] * 4 + [
        "reasoning",
        "message",
    ]
    assert output[1]["action"]["query"] == "Berlin news today"
    text = joined_deltas(name, "response.output_text.delta")
    assert text == output[-1]["content"][0]["text"]
    assert text.startswith("Here\u2019s what\u2019s notable in Berlin today")
    annotations = events_of(name, "response.output_text.annotation.added")
    assert [a["annotation_index"] for a in annotations] == list(range(6))
    assert [a["annotation"] for a in annotations] == output[-1]["content"][0]["annotations"]
    # obfuscation pads every delta to a random length, sometimes with nothing
    paddings = [e["obfuscation"] for e in events_of(name, "response.output_text.delta")]
    assert len(paddings) == 12 and "" in paddings and "Y" in paddings


def test_responses_errors_failed_and_incomplete() -> None:
    error = events_of("openai-error-failed", "error")[0]["error"]
    assert error["code"] == "insufficient_quota" and error["param"] is None
    failed = final_response("openai-error-failed")
    assert failed["status"] == "failed" and failed["error"]["code"] == "insufficient_quota"
    assert final_response("openai-failed")["error"]["code"] == "rate_limit_exceeded"
    incomplete = final_response("openai-shaped-incomplete")
    assert incomplete["status"] == "incomplete"
    assert incomplete["incomplete_details"] == {"reason": "max_output_tokens"}
    assert incomplete["output"][0]["status"] == "incomplete"
    deltas = events_of("openai-shaped-incomplete", "response.output_text.delta")
    assert len(deltas) == incomplete["usage"]["output_tokens"] == incomplete["max_output_tokens"]


def test_copilot_rotates_ids() -> None:
    """GitHub Copilot's Responses API: a new id on every event, even for the same item (the
    fixture's author replaced each by ``capture-id-N``), and keys in alphabetical order."""
    events = recorded_response_events("copilot-reasoning-text")
    deltas = events_of("copilot-reasoning-text", "response.output_text.delta")
    assert len({event["item_id"] for event in deltas}) == len(deltas) == 55
    assert events[0]["response"]["id"] != events[-1]["response"]["id"]
    assert list(events[-1]) == ["copilot_usage", "response", "sequence_number", "type"]
    assert response_event_names("copilot-reasoning-text")[-1] == "response.completed"
    text = joined_deltas("copilot-reasoning-text", "response.output_text.delta")
    assert text.startswith("There are **3** letter **“r”**s in **“strawberry.”**")


def test_response_ids() -> None:
    """OpenAI's ids: a prefix (resp_, msg_, fc_, rs_, ws_) and 48 or 50 hex digits shared in
    part by every id of one response; function calls also have a call_ id of 24 characters."""
    shapes = {
        "openai-function-call": (
            r"(resp|fc)_0775572d10a16b66006a8d85[0-9a-f]{26}",
            r"call_[A-Za-z0-9]{24}",
        ),
        "openai-web-search": (r"(resp|rs|ws|msg)_68c187[0-9a-f]{26}05ca09a4773fcd25",),
        "openai-reasoning-summary-function-call": (
            r"(resp|rs|fc)_01830d662ab3856501693c32[0-9a-f]{26}",
            r"call_[A-Za-z0-9]{24}",
        ),
    }
    for name, patterns in shapes.items():
        ids = {
            value
            for event in recorded_response_events(name)
            for value in re.findall(
                r'"(?:id|item_id|call_id)":"([^"]+)"', json.dumps(event, separators=(",", ":"))
            )
        }
        assert ids and all(any(re.fullmatch(p, i) for p in patterns) for i in ids), (name, ids)
