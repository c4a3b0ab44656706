"""From upstream chunks to events and back, without Redis or HTTP: for every recorded stream,
merged as much as an append in flight could merge it, or not at all, the chunks the Chat
Completions API rebuilds accumulate (in the official SDK) to what the upstream's did."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.batch import Batch
from gateway.chat_completions.protocol import ChunkEncoder
from producer.appender import Pending
from producer.chunks import ChunkTranslator, Opening, Part, merge_into
from shared.completion import CompletionSoFar
from shared.events import Event, StreamEvent
from tests.openai_chat import snapshot, sse_chunks
from tests.replay_upstream import data_payloads, expected_snapshot, recordings


def translated(name: str) -> tuple[list[list[Part]], ChunkTranslator]:
    """The parts of each chunk of a recording."""
    chunks = ChunkTranslator()
    parts_per_chunk = []
    for payload in data_payloads(name):
        parts: list[Part] = []
        chunks.feed([payload.encode()], parts)
        parts_per_chunk.append(parts)
    return parts_per_chunk, chunks


def events_of(name: str, *, merged: bool) -> tuple[list[StreamEvent], ChunkTranslator]:
    parts_per_chunk, chunks = translated(name)
    pending, events = Pending(max_chars=4096), []
    for parts in parts_per_chunk:
        pending.add(parts)
        if not merged:
            while pending:
                events += pending.take(max_events=1)
    while pending:
        events += pending.take()
    assert chunks.finish_reason is not None
    events.append(
        Event.done(chunks.finish_reason, chunks.usage, completion=chunks.completion_changes())  # type: ignore[arg-type]
    )
    return [StreamEvent(f"1-{i}", event) for i, event in enumerate(events)], chunks


def has_usage(name: str) -> bool:
    return any(json.loads(payload).get("usage") for payload in data_payloads(name))


@pytest.mark.parametrize("merged", [True, False], ids=["merged", "one-event-per-part"])
@pytest.mark.parametrize("name", recordings())
def test_rebuilt_chunks_accumulate_to_the_upstreams_completion(name: str, merged: bool) -> None:
    events, chunks = events_of(name, merged=merged)
    encoder = ChunkEncoder(chunks.completion, include_usage=has_usage(name))
    body = encoder.encode(Batch(events)).decode()
    assert snapshot(chunk for _, chunk in sse_chunks(body)) == expected_snapshot(name)
    assert body.endswith("data: [DONE]\n\n")


@pytest.mark.parametrize("name", recordings())
def test_every_event_is_as_small_as_it_can_be(name: str) -> None:
    """Merging never makes more events than parts, and plain text is mostly tokens."""
    merged, _ = events_of(name, merged=True)
    single, _ = events_of(name, merged=False)
    assert len(merged) <= len(single)


def test_the_completion_is_the_first_chunks_fields() -> None:
    _, chunks = translated("openai-text")
    first = json.loads(data_payloads("openai-text")[0])
    assert chunks.completion == {
        k: first[k] for k in first if k not in ("choices", "object", "usage", "obfuscation")
    }
    _, azure = translated("azure-model-router")
    assert "prompt_filter_results" in azure.completion
    assert "obfuscation" not in azure.completion


def test_plain_text_takes_the_token_path_after_the_opening() -> None:
    parts_per_chunk, _ = translated("openai-text")
    opening = parts_per_chunk[0][0]
    assert isinstance(opening, Opening)
    assert opening == {
        "choice": 0,
        "role": "assistant",
        "content": "",
        "refusal": None,
        "logprobs": None,
    }
    texts = [part for parts in parts_per_chunk[1:] for part in parts]
    assert texts and all(isinstance(part, list) for part in texts)  # runs of text


def test_a_repeated_null_is_kept_once() -> None:
    parts_per_chunk, _ = translated("deepseek-reasoning")
    flat = [part for parts in parts_per_chunk for part in parts]
    sent = sum('"reasoning_content":null' in p for p in data_payloads("deepseek-reasoning"))
    nulls = [p for p in flat if isinstance(p, dict) and p.get("reasoning_content", "") is None]
    assert sent > 10 and len(nulls) <= 1
    tokens = sum(len(part) for part in flat if isinstance(part, list))
    assert tokens >= sent - 1  # the answer: tokens
    answer = CompletionSoFar()
    for part in flat:
        if isinstance(part, list):
            answer.add("token", {"text": "".join(part)})
        else:
            answer.add("delta", part)
    assert answer.choices[0].reasoning and answer.text


def fragment(arguments: str, index: int = 0) -> dict[str, Any]:
    return {"choice": 0, "tool_calls": [{"index": index, "function": {"arguments": arguments}}]}


def test_argument_fragments_join_their_call() -> None:
    first = {
        "choice": 0,
        "tool_calls": [
            {"index": 0, "id": "call_a", "type": "function", "function": {"name": "f"}},
        ],
    }
    assert merge_into(first, fragment('{"a"'))
    assert merge_into(first, fragment(":1}"))
    assert merge_into(first, fragment("{}", index=1))
    assert first["tool_calls"] == [
        {
            "index": 0,
            "id": "call_a",
            "type": "function",
            "function": {"name": "f", "arguments": '{"a":1}'},
        },
        {"index": 1, "function": {"arguments": "{}"}},
    ]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (Opening(choice=0, role="assistant", content=""), {"choice": 0, "content": "x"}),
        ({"choice": 1, "content": "a", "finish_reason": "stop"}, {"choice": 1, "content": "b"}),
        ({"choice": 1, "content": "a"}, {"choice": 2, "content": "b"}),
        ({"choice": 1, "content": "a"}, {"choice": 1, "role": "assistant"}),
        ({"choice": 0, "content": "a"}, {"choice": 0, "choice_fields": {"stop_reason": 2}}),
        (  # a new call's first fragment (its id, its name) opens it: left as it came
            {"choice": 0, "tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]},
            {"choice": 0, "tool_calls": [{"index": 1, "id": "b", "function": {"name": "g"}}]},
        ),
        ({"choice": 0, "content": None}, {"choice": 0, "content": "a"}),
    ],
)
def test_what_does_not_merge(first: dict[str, Any], second: dict[str, Any]) -> None:
    before = json.dumps(first)
    assert not merge_into(first, second)
    assert json.dumps(first) == before


def test_what_orjson_refuses_but_json_allows_still_decodes() -> None:
    chunks = ChunkTranslator()
    parts: list[Part] = []
    opening = b'{"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}'
    lone = (
        b'{"id":"c","choices":[{"index":0,"delta":{"content":"\\ud800x"}}],"seed":'
        + str(2**70).encode()
        + b"}"
    )
    chunks.feed([opening, lone], parts)
    assert parts[-1] == ["\ud800x"]
    assert chunks.completion["seed"] == 2**70


def test_a_payload_that_is_no_chunk_is_an_upstream_error() -> None:
    from shared.errors import UpstreamError

    parts: list[Part] = []
    with pytest.raises(UpstreamError, match="malformed chunk"):
        ChunkTranslator().feed([b'{"id":"c","choices":[]}', b"{not json"], parts)
    with pytest.raises(UpstreamError) as raised:
        ChunkTranslator().feed([b'{"error":{"message":"overloaded","code":"x"}}'], parts)
    assert raised.value.upstream == {"error": {"message": "overloaded", "code": "x"}}
