"""The replay upstream (tests/replay_upstream.py) and its recordings, read by the official SDK.

For every recording: the chunks the ``openai`` SDK yields over HTTP, and their accumulation by
``ChatCompletionStreamState``, equal the same built from the file, whole or with every event
split in two writes (inside a multi-byte character where it has one). A few exact facts per
recording pin down what the files hold; the error options give the SDK's own exceptions.
"""

from __future__ import annotations

import hashlib
import json
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

from tests.replay_upstream import (
    RECORDINGS_DIR,
    ReplayOptionsError,
    accumulate,
    data_payloads,
    expected_chunks,
    expected_snapshot,
    fetch_requests,
    parse_model,
    recording_bytes,
    recordings,
    replay_upstream_in_thread,
    replay_upstream_process,
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
    assert ids == [f"replay:{name}" for name in recordings()]


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
