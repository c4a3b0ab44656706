"""Nothing lost: recorded real streams, replayed over HTTP, reach an OpenAI SDK through
tokenrelay exactly as they reach it from the upstream itself.

For every recording (tests/recordings/chat/: live OpenAI API recordings from openai-python's
own streaming tests, and streams shaped like vLLM, Ollama, DeepSeek and Azure) the official
``openai`` SDK accumulates the same completion (``ChatCompletionStreamState``, compared on its
whole snapshot: text, tool calls, refusals, reasoning, logprobs, every choice, finish
reasons, usage, the chunk's id, created, model, system_fingerprint, service_tier) pointed at
the upstream and pointed at the gateway; the same after a disconnect mid-stream and a
resume; the same rebuilt from the native ``/v1/streams/{id}/events``; and ``stream: false``
answers the same object.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.openai_chat import rebuilt_from_native, snapshot, sse_chunks
from tests.processes import API_KEY
from tests.replay_upstream import data_payloads, recordings, replaying_stack

MESSAGES: Any = [{"role": "user", "content": "replay"}]


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(upstream, gateway) base URLs: a gateway and a worker whose upstream replays."""
    with replaying_stack(tmp_path_factory.mktemp("recordings")) as (upstream, (base,), _):
        yield upstream, base


def has_usage(name: str) -> bool:
    return any(json.loads(payload).get("usage") for payload in data_payloads(name))


@functools.cache  # one client per base URL: none is left to the garbage collector mid-test
def sdk(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key=API_KEY, max_retries=0, timeout=30)


def streamed(base: str, model: str, *, usage: bool) -> tuple[dict[str, Any], str | None]:
    """The SDK's snapshot of a streamed completion, and the stream id header if any."""
    options: Any = {"stream_options": {"include_usage": True}} if usage else {}
    raw = sdk(base).chat.completions.with_raw_response.create(
        model=model, messages=MESSAGES, stream=True, **options
    )
    return snapshot(raw.parse()), raw.headers.get("x-tokenrelay-stream-id")


def answer(completion: dict[str, Any]) -> dict[str, Any]:
    """What a ``chat.completion`` and an SDK snapshot must agree on, both ways round."""
    choices = []
    for choice in completion["choices"]:
        message = {k: v for k, v in choice["message"].items() if v not in (None, [])}
        message.pop("parsed", None)
        message["tool_calls"] = [
            {
                "id": call.get("id"),
                "type": call.get("type"),
                "name": call["function"].get("name"),
                "arguments": call["function"].get("arguments"),
            }
            for call in message.get("tool_calls") or []
        ]
        choices.append(
            {
                "index": choice["index"],
                "message": message,
                "finish_reason": choice["finish_reason"],
                "logprobs": choice.get("logprobs"),
            }
        )
    kept = ("id", "model", "system_fingerprint", "service_tier", "usage")
    return present({"choices": choices, **{k: completion.get(k) for k in kept}})


def present(value: Any) -> Any:
    """``value`` without its ``None`` fields (a parsed object has every field; raw JSON only
    those that were sent)."""
    if isinstance(value, dict):
        return {k: present(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [present(item) for item in value]
    return value


@pytest.mark.parametrize("name", recordings())
def test_the_sdk_accumulates_the_same_through_tokenrelay(relay: tuple[str, str], name: str) -> None:
    upstream, gateway = relay
    model, usage = f"replay:{name}", has_usage(name)
    direct, _ = streamed(upstream, model, usage=usage)
    relayed, stream_id = streamed(gateway, model, usage=usage)
    assert relayed == direct
    assert stream_id is not None

    # the same completion rebuilt from the native events
    native = rebuilt_from_native(gateway, stream_id, API_KEY)
    expected = answer(direct)
    assert answer(native) == {**expected, "usage": answer(native)["usage"]}
    if usage:
        assert answer(native)["usage"] == expected["usage"]

    # stream: false answers the same object
    whole = answer(
        sdk(gateway).chat.completions.create(model=model, messages=MESSAGES).model_dump()
    )
    assert whole == {**expected, "usage": whole["usage"]}
    if usage:
        assert whole["usage"] == expected["usage"]


@pytest.mark.parametrize("name", recordings())
def test_a_reader_that_disconnects_and_resumes_accumulates_the_same(
    relay: tuple[str, str], name: str
) -> None:
    upstream, gateway = relay
    usage = has_usage(name)
    direct, _ = streamed(upstream, f"replay:{name}", usage=usage)
    body: dict[str, Any] = {
        "model": f"replay:{name}?delay_ms=10",
        "messages": MESSAGES,
        "stream": True,
        **({"stream_options": {"include_usage": True}} if usage else {}),
    }
    auth = {"Authorization": f"Bearer {API_KEY}"}
    received = ""
    with httpx.stream(
        "POST", f"{gateway}/v1/chat/completions", json=body, headers=auth, timeout=30
    ) as response:
        assert response.status_code == 200
        stream_id = response.headers["x-tokenrelay-stream-id"]
        for text in response.iter_text():
            received += text
            if received.count("\n\n") >= 3 and received.endswith("\n\n"):
                break  # hang up after the first few chunks
    head = sse_chunks(received)
    last_id = [offset for offset, _ in head if offset is not None][-1]
    rest = httpx.get(
        f"{gateway}/v1/chat/completions/{stream_id}/stream",
        headers={**auth, "Last-Event-ID": last_id},
        timeout=30,
    )
    assert rest.status_code == 200
    assert rest.text.endswith("data: [DONE]\n\n")
    chunks = head + sse_chunks(rest.text)
    ids = [offset for offset, _ in chunks if offset is not None]
    assert len(ids) == len(set(ids))
    resumed = snapshot(chunk for _, chunk in chunks)
    assert resumed == direct
    # what the SDK's snapshot leaves out reaches the reader too (vLLM's stop_reason)
    recorded = [json.loads(payload) for payload in data_payloads(name)]
    assert choice_fields(chunk for _, chunk in chunks) == choice_fields(recorded)


def choice_fields(chunks: Iterable[dict[str, Any]]) -> set[tuple[int, str, str]]:
    """Each choice's own non-null fields beyond the standard ones, as (choice, key, JSON)."""
    standard = {"index", "delta", "logprobs", "finish_reason"}
    return {
        (choice["index"], key, json.dumps(value))
        for chunk in chunks
        for choice in chunk.get("choices") or ()
        for key, value in choice.items()
        if key not in standard and value is not None
    }


def test_multibyte_characters_split_across_reads_arrive_whole(relay: tuple[str, str]) -> None:
    upstream, gateway = relay
    name = "openai-shaped-n2-tool-calls-multibyte"
    direct, _ = streamed(upstream, f"replay:{name}", usage=has_usage(name))
    relayed, _ = streamed(gateway, f"replay:{name}?split=1", usage=has_usage(name))
    assert relayed == direct
    texts = [choice["message"]["content"] or "" for choice in relayed["choices"]]
    assert any(ord(ch) > 0xFFFF for text in texts for ch in text)  # an emoji made it


def test_recordings_cover_what_the_issue_names() -> None:
    names = set(recordings())
    bodies = {name: "\n".join(data_payloads(name)) for name in names}
    assert len(names) >= 15
    for needle in (
        '"tool_calls"',
        '"refusal":"',
        '"reasoning_content":"',
        '"reasoning":"',
        '"logprobs":{"content":[{',
        '"index":2',
        '"stop_reason"',
    ):
        assert any(needle in body for body in bodies.values()), needle
    assert Path(__file__).with_name("recordings").joinpath("README.md").exists()
