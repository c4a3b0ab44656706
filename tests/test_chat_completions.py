"""The OpenAI Chat Completions API through tokenrelay, as the official SDK sees it: errors in
OpenAI's shape and status, resume, ``stream: false``, the stream's names in headers."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import openai
import pytest

from tests.openai_chat import rebuilt_from_native, snapshot, sse_chunks
from tests.processes import API_KEY, Stack

STACK_ENV = {"TOKENRELAY_UPSTREAM_TIMEOUT_S": "2"}
MESSAGES = [{"role": "user", "content": "Tell me about rivers"}]


@pytest.fixture
def sdk(shared_stack: tuple[Stack, str]) -> openai.OpenAI:
    _, base = shared_stack
    return openai.OpenAI(base_url=f"{base}/v1", api_key=API_KEY, max_retries=0, timeout=30)


@pytest.fixture
def base(shared_stack: tuple[Stack, str]) -> str:
    return shared_stack[1]


def mock_requests(stack: Stack, stream_id: str) -> list[dict[str, object]]:
    mock = stack.mock_url.removesuffix("/v1")
    records: list[dict[str, object]] = httpx.get(f"{mock}/_mock/requests").json()
    return [r for r in records if r.get("stream_id") == stream_id]


def test_streamed_text_equals_the_upstreams_and_names_the_stream(
    sdk: openai.OpenAI, shared_stack: tuple[Stack, str]
) -> None:
    stack, base = shared_stack
    raw = sdk.chat.completions.with_raw_response.create(
        model="mock?tokens=30&rate=300",
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    stream_id = raw.headers["x-tokenrelay-stream-id"]
    assert raw.headers["x-tokenrelay-read-token"]
    assert raw.headers["content-type"].startswith("text/event-stream")
    relayed = snapshot(raw.parse())
    [record] = mock_requests(stack, stream_id)
    message = relayed["choices"][0]["message"]
    assert message["content"] == record["sent_text"]
    assert message["role"] == "assistant"
    assert relayed["choices"][0]["finish_reason"] == "stop"
    assert relayed["usage"]["completion_tokens"] == 30
    assert relayed["system_fingerprint"] == "fp_mock"
    assert relayed["id"].startswith("chatcmpl-")  # the upstream's own id
    # the same answer rebuilt from the native events, and from stream: false
    native = rebuilt_from_native(base, stream_id, API_KEY)
    assert native["choices"][0]["message"]["content"] == message["content"]
    assert native["id"] == relayed["id"]


def test_usage_only_when_asked(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(
        model="mock?tokens=5&rate=0",
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
    )
    chunks = list(stream)
    assert all(chunk.usage is None for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_stream_false_answers_the_completion_object(
    sdk: openai.OpenAI, shared_stack: tuple[Stack, str]
) -> None:
    stack, _ = shared_stack
    raw = sdk.chat.completions.with_raw_response.create(
        model="mock?tokens=12&rate=0",
        messages=MESSAGES,  # type: ignore[arg-type]
        extra_headers={"Idempotency-Key": "chat-once"},
    )
    completion = raw.parse()
    [record] = mock_requests(stack, raw.headers["x-tokenrelay-stream-id"])
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == record["sent_text"]
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens == 12
    again = sdk.chat.completions.with_raw_response.create(
        model="mock?tokens=12&rate=0",
        messages=MESSAGES,  # type: ignore[arg-type]
        extra_headers={"Idempotency-Key": "chat-once"},
    )
    assert again.headers["x-tokenrelay-stream-id"] == raw.headers["x-tokenrelay-stream-id"]
    assert again.parse().model_dump() == completion.model_dump()


@pytest.mark.parametrize("resume_with", ["last_event_id", "after"])
def test_disconnect_and_resume_accumulates_the_same(
    base: str, shared_stack: tuple[Stack, str], resume_with: str
) -> None:
    stack, _ = shared_stack
    auth = {"Authorization": f"Bearer {API_KEY}"}
    body = {"model": "mock?tokens=60&rate=100", "messages": MESSAGES, "stream": True}
    first: list[str] = []
    with httpx.stream(
        "POST", f"{base}/v1/chat/completions", json=body, headers=auth, timeout=30
    ) as response:
        assert response.status_code == 200
        stream_id = response.headers["x-tokenrelay-stream-id"]
        token = response.headers["x-tokenrelay-read-token"]
        for line in response.iter_lines():
            first.append(line)
            if sum(line.startswith("data:") for line in first) == 10 and line == "":
                break
    head = sse_chunks("\n".join(first))
    last_id = head[-1][0]
    assert last_id is not None
    url = f"{base}/v1/chat/completions/{stream_id}/stream"
    if resume_with == "after":
        rest = httpx.get(url, params={"after": last_id, "token": token}, timeout=30)
    else:
        rest = httpx.get(url, headers={**auth, "Last-Event-ID": last_id}, timeout=30)
    assert rest.status_code == 200
    assert rest.text.endswith("data: [DONE]\n\n")
    tail = sse_chunks(rest.text)
    [record] = mock_requests(stack, stream_id)
    relayed = snapshot(chunk for _, chunk in head + tail)
    assert relayed["choices"][0]["message"]["content"] == record["sent_text"]
    ids = [offset for offset, _ in head + tail if offset is not None]
    assert len(ids) == len(set(ids))  # nothing twice
    # after the end, a resume is told to stop
    last = re.findall(r"^id: (\S+)$", rest.text, re.MULTILINE)[-1]  # [DONE]'s: the end's
    again = httpx.get(url, headers={**auth, "Last-Event-ID": last}, timeout=30)
    assert again.status_code == 204


def test_rate_limited_upstream_reaches_the_sdk_as_rate_limit_error(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as raised:
        sdk.chat.completions.create(
            model="mock?fault=429&retry_after=7",
            messages=MESSAGES,  # type: ignore[arg-type]
            stream=True,
        )
    assert raised.value.status_code == 429
    assert raised.value.response.headers["retry-after"] == "7"
    assert raised.value.response.headers["x-tokenrelay-stream-id"]
    assert isinstance(raised.value.body, dict) and raised.value.body["message"]


def test_bad_request_upstream_reaches_the_sdk_as_bad_request(sdk: openai.OpenAI) -> None:
    for stream in (True, False):
        with pytest.raises(openai.BadRequestError) as raised:
            sdk.chat.completions.create(
                model="mock?fault=400",
                messages=MESSAGES,  # type: ignore[arg-type]
                stream=stream,
            )
        assert raised.value.status_code == 400
        assert raised.value.type == "invalid_request_error"


def test_connection_cut_mid_stream_raises_api_error(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(
        model="mock?tokens=30&rate=200&fault=disconnect&after=6",
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
    )
    received = []
    with pytest.raises(openai.APIError) as raised:
        for chunk in stream:
            received.append(chunk)
    assert received  # the failure came after the first chunks
    assert raised.value.code == "upstream_error"


def test_no_credentials_is_401_in_openais_shape(base: str) -> None:
    # checked before the body, which is invalid here
    answer = httpx.post(f"{base}/v1/chat/completions", json={"model": 5})
    assert answer.status_code == 401
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "authentication_error"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(
            base_url=f"{base}/v1", api_key="wrong", max_retries=0
        ).chat.completions.create(
            model="mock",
            messages=MESSAGES,  # type: ignore[arg-type]
        )


def test_invalid_request_is_400_with_the_param(base: str) -> None:
    answer = httpx.post(
        f"{base}/v1/chat/completions",
        json={"model": "mock", "messages": [{"role": "robot", "content": "hi"}]},
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"].startswith("messages.0")


def test_resume_of_an_unknown_stream_is_404_in_openais_shape(base: str) -> None:
    answer = httpx.get(
        f"{base}/v1/chat/completions/{'A' * 22}/stream",
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert answer.status_code == 404
    assert json.loads(answer.text)["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("model", "n"),
    [
        ("mock?tools=2&reasoning=12&rate=300", 1),
        ("mock?refusal=1&rate=300", 1),
        ("mock?tokens=20&rate=300", 3),
        ("mock?tools=1&text=1&tokens=8&rate=300", 2),
    ],
    ids=["reasoning-parallel-tools", "refusal", "n3", "n2-text-and-tool"],
)
def test_every_part_of_the_mocks_answer_arrives(
    sdk: openai.OpenAI, shared_stack: tuple[Stack, str], model: str, n: int
) -> None:
    stack, base = shared_stack
    raw = sdk.chat.completions.with_raw_response.create(
        model=model,
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
        n=n,
    )
    relayed = snapshot(raw.parse())
    stream_id = raw.headers["x-tokenrelay-stream-id"]
    [record] = mock_requests(stack, stream_id)
    sent: Any = record["choices"]
    assert len(relayed["choices"]) == len(sent) == n
    for choice, what in zip(relayed["choices"], sent, strict=True):
        message = choice["message"]
        assert (message["content"] or "") == (what["content"] or "")
        assert (message.get("reasoning_content") or "") == (what["reasoning"] or "")
        assert message["refusal"] == what["refusal"]
        calls = [
            (call["id"], call["function"]["name"], json.loads(call["function"]["arguments"]))
            for call in message["tool_calls"] or []
        ]
        assert calls == [
            (call["id"], call["name"], json.loads(call["arguments"])) for call in what["tool_calls"]
        ]
        assert choice["finish_reason"] == what["finish_reason"]
    # the text format is the answer: choice 0's content
    text = httpx.get(
        f"{base}/v1/streams/{stream_id}/events",
        params={"format": "text"},
        headers={"Authorization": f"Bearer {API_KEY}"},
    ).text
    assert text == (sent[0]["content"] or "")
