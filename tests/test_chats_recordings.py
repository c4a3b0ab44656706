"""AI SDK chats on recorded real streams: what a real upstream sent reaches the chat whole.

A chat's answer is translated twice (chunks to events in the worker, events to UI message
chunks in the gateway); the mock model exercises every shape, and these recordings
(tests/recordings/chat/, replayed over HTTP by tests/replay_upstream.py) hold it to what
real APIs send: OpenAI's parallel tool calls, DeepSeek's ``reasoning_content``, Ollama's
``reasoning`` with a tool call, plain text. The answer a chat shows (``GET /v1/chats/{id}``,
the AI SDK's ``UIMessage``) must carry choice 0's exact text, reasoning and tool calls, each
call with its id, name and parsed arguments; the stream must end with the finish reason the
upstream gave. The same again through the real ``ai`` npm package (``DefaultChatTransport``,
``readUIMessageStream``: tests/node/chats/recordings.test.mjs).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.node_tests import node_with, run_node_tests
from tests.processes import API_KEY, REPO, Stack
from tests.replay_upstream import data_payloads, replaying_stack

AUTH = {"Authorization": f"Bearer {API_KEY}"}
RECORDINGS = [
    "openai-text",
    "openai-tool-call-parallel",
    "deepseek-reasoning",
    "ollama-reasoning-tool-call",
    "vllm-tool-call",
]
RECORDINGS_TESTS = REPO / "tests" / "node" / "chats" / "recordings.test.mjs"
FINISH_REASONS = {"stop": "stop", "length": "length", "tool_calls": "tool-calls"}


@pytest.fixture(scope="module")
def replaying(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Stack]]:
    """(upstream, gateway, stack): a gateway and a worker whose upstream replays."""
    with replaying_stack(tmp_path_factory.mktemp("chats-recordings")) as (upstream, (base,), stack):
        yield upstream, base, stack


@pytest.fixture
def gateway(replaying: tuple[str, str, Stack]) -> str:
    return replaying[1]


def recorded_answer(name: str) -> dict[str, Any]:
    """Choice 0 of a recording, accumulated by hand: text, reasoning, tool calls, finish."""
    text, reasoning, finish = "", "", None
    calls: dict[int, dict[str, str]] = {}
    for payload in data_payloads(name):
        for choice in json.loads(payload).get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text += delta.get("content") or ""
            reasoning += delta.get("reasoning_content") or delta.get("reasoning") or ""
            for call in delta.get("tool_calls") or []:
                into = calls.setdefault(call["index"], {"id": "", "name": "", "arguments": ""})
                into["id"] = call.get("id") or into["id"]
                function = call.get("function") or {}
                into["name"] += function.get("name") or ""
                into["arguments"] += function.get("arguments") or ""
            finish = choice.get("finish_reason") or finish
    return {
        "text": text,
        "reasoning": reasoning,
        "tools": [
            {"toolCallId": c["id"], "name": c["name"], "input": json.loads(c["arguments"])}
            for _, c in sorted(calls.items())
        ],
        "finish": finish,
    }


def shown_answer(message: dict[str, Any]) -> dict[str, Any]:
    parts = message["parts"]
    return {
        "text": "".join(p["text"] for p in parts if p["type"] == "text"),
        "reasoning": "".join(p["text"] for p in parts if p["type"] == "reasoning"),
        "tools": [
            {
                "toolCallId": p["toolCallId"],
                "name": p["type"].removeprefix("tool-"),
                "input": p["input"],
            }
            for p in parts
            if p["type"].startswith("tool-")
        ],
    }


@pytest.mark.parametrize("name", RECORDINGS)
def test_a_chat_shows_exactly_what_the_upstream_sent(gateway: str, name: str) -> None:
    expected = recorded_answer(name)
    assert expected["text"] or expected["tools"]  # the recording has something to show
    chat_id = f"rec-{name}-{time.monotonic_ns()}"
    question = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "replay"}]}
    body = {"id": chat_id, "messages": [question], "trigger": "submit-message"}
    answered = httpx.post(
        f"{gateway}/v1/chats", json=body | {"model": f"replay:{name}"}, headers=AUTH, timeout=30
    )
    assert answered.status_code == 200, answered.text
    frames = [line[6:] for line in answered.text.splitlines() if line.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    chunks = [json.loads(frame) for frame in frames[:-1]]
    assert chunks[-1] == {"type": "finish", "finishReason": FINISH_REASONS[expected["finish"]]}

    shown = httpx.get(f"{gateway}/v1/chats/{chat_id}", headers=AUTH, timeout=10)
    assert shown.status_code == 200
    messages = shown.json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert shown_answer(messages[-1]) == {k: expected[k] for k in ("text", "reasoning", "tools")}
    # nothing in progress once it ended: the transport's resume gets 204
    resumed = httpx.get(f"{gateway}/v1/chats/{chat_id}/stream", headers=AUTH, timeout=10)
    assert resumed.status_code == 204


@pytest.mark.timeout(90)
def test_the_ai_sdk_reads_each_recording_as_it_was_sent(
    replaying: tuple[str, str, Stack],
) -> None:
    node = node_with("ai")
    upstream, base, stack = replaying
    expected = {name: recorded_answer(name) for name in RECORDINGS}
    env = {
        "TOKENRELAY_GATEWAY_URL": base,
        "TOKENRELAY_MOCK_URL": upstream,  # (stack.mjs names it; these tests do not ask it)
        "TOKENRELAY_API_KEY": API_KEY,
        "TOKENRELAY_RECORDED_ANSWERS": json.dumps(expected),
    }
    counts = run_node_tests(node, [RECORDINGS_TESTS], env, stack, timeout=75)
    assert counts["tests"] == counts["pass"] == len(RECORDINGS), counts
