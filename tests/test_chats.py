"""AI SDK chats end to end (a real gateway, worker and mock model): what the upstream is sent
for a conversation, what ``GET /v1/chats/{id}`` shows, chat tokens, and a chat's one answer
in progress. (The ``ai`` npm SDK itself: tests/test_ai_sdk_chats.py.)"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from tests.processes import API_KEY, Stack

AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def base(shared_stack: tuple[Stack, str]) -> str:
    return shared_stack[1]


def mock_record(stack: Stack, stream_id: str) -> dict[str, Any]:
    mock = stack.mock_url.removesuffix("/v1")
    [record] = httpx.get(f"{mock}/_mock/requests", params={"stream": stream_id}).json()
    assert isinstance(record, dict)
    return record


def chunks_of(body: str) -> list[dict[str, Any]]:
    """The UI message chunks of a whole answer, which ends with ``[DONE]``."""
    frames = [
        line.removeprefix("data: ") for line in body.splitlines() if line.startswith("data: ")
    ]
    assert frames[-1] == "[DONE]"
    return [json.loads(frame) for frame in frames[:-1]]


def send(base: str, chat_id: str, messages: list[dict[str, Any]], **body: Any) -> httpx.Response:
    """``POST /v1/chats`` as DefaultChatTransport sends it, read to its end."""
    payload = {"id": chat_id, "messages": messages, "trigger": "submit-message", **body}
    return httpx.post(f"{base}/v1/chats", json=payload, headers=AUTH, timeout=30)


def user(text: str, id_: str) -> dict[str, Any]:
    return {"id": id_, "role": "user", "parts": [{"type": "text", "text": text}]}


def new_chat_id() -> str:
    return f"chat-{time.monotonic_ns()}"


def test_a_conversation_with_a_tool_call_reaches_the_upstream_as_openai_messages(
    base: str, shared_stack: tuple[Stack, str]
) -> None:
    chat_id = new_chat_id()
    conversation = [
        {"id": "s1", "role": "system", "parts": [{"type": "text", "text": "You are terse."}]},
        user("What's the weather in Lyon?", "u1"),
        {
            "id": "a1",
            "role": "assistant",
            "parts": [
                {"type": "step-start"},
                {
                    "type": "tool-get_weather",
                    "toolCallId": "call_lyon",
                    "state": "output-available",
                    "input": {"city": "Lyon"},
                    "output": {"forecast": "rain", "celsius": 11},
                },
                {"type": "step-start"},
                {"type": "text", "text": "Rain, 11 °C.", "state": "done"},
            ],
        },
        user("Should I take an umbrella?", "u2"),
    ]
    answer = send(base, chat_id, conversation, model="mock?tokens=6&rate=0", temperature=0.2)
    assert answer.status_code == 200
    assert answer.headers["x-vercel-ai-ui-message-stream"] == "v1"
    record = mock_record(shared_stack[0], answer.headers["x-tokenrelay-stream-id"])
    # what a reader of OpenAI's function-calling guide writes by hand
    assert record["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What's the weather in Lyon?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_lyon",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Lyon"}'},
                }
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "call_lyon",
            "content": '{"forecast":"rain","celsius":11}',
        },
        {"role": "assistant", "content": "Rain, 11 °C."},
        {"role": "user", "content": "Should I take an umbrella?"},
    ]
    chunks = chunks_of(answer.text)
    text = "".join(chunk["delta"] for chunk in chunks if chunk["type"] == "text-delta")
    assert text == record["sent_text"]
    # the conversation, shown again: as sent, then the answer under the start's message id
    shown = httpx.get(f"{base}/v1/chats/{chat_id}", headers=AUTH).json()
    assert shown["id"] == chat_id
    assert shown["messages"][:-1] == conversation
    assert shown["messages"][-1] == {
        "id": chunks[0]["messageId"],
        "role": "assistant",
        "parts": [{"type": "step-start"}, {"type": "text", "text": text, "state": "done"}],
    }


def test_an_answer_after_a_browsers_tool_result_continues_that_message(
    base: str, shared_stack: tuple[Stack, str]
) -> None:
    chat_id = new_chat_id()
    first = send(base, chat_id, [user("Convert 10 EUR", "u1")], model="mock?tools=1&text=0")
    start, *_, finish = chunks_of(first.text)
    assert finish == {"type": "finish", "finishReason": "tool-calls"}
    [asked] = httpx.get(f"{base}/v1/chats/{chat_id}", headers=AUTH).json()["messages"][1:]
    [tool_part] = [part for part in asked["parts"] if part["type"].startswith("tool-")]
    # useChat's addToolOutput, then sendAutomaticallyWhen: the same message, with the output
    tool_part.update(state="output-available", output="10 EUR = 11.6 USD")
    conversation = [user("Convert 10 EUR", "u1"), asked]
    second = send(base, chat_id, conversation, model="mock?tokens=5")
    chunks = chunks_of(second.text)
    assert chunks[0] == {"type": "start", "messageId": start["messageId"]}
    record = mock_record(shared_stack[0], second.headers["x-tokenrelay-stream-id"])
    assert record["messages"][-1] == {
        "role": "tool",
        "tool_call_id": tool_part["toolCallId"],
        "content": "10 EUR = 11.6 USD",
    }
    shown = httpx.get(f"{base}/v1/chats/{chat_id}", headers=AUTH).json()["messages"]
    assert [message["id"] for message in shown] == ["u1", start["messageId"]]
    kinds = [part["type"] for part in shown[1]["parts"]]
    assert kinds == ["step-start", tool_part["type"], "step-start", "text"]
    assert shown[1]["parts"][-1]["text"] == record["sent_text"]


def test_a_new_turn_stops_the_answer_still_in_progress(
    base: str, shared_stack: tuple[Stack, str]
) -> None:
    chat_id = new_chat_id()
    payload = {
        "id": chat_id,
        "messages": [user("Long one", "u1")],
        "model": "mock?tokens=500&rate=20",
    }
    with httpx.stream("POST", f"{base}/v1/chats", json=payload, headers=AUTH) as first:
        earlier = first.headers["x-tokenrelay-stream-id"]
        for line in first.iter_lines():  # the upstream is answering
            if '"text-delta"' in line:
                break
    again = send(base, chat_id, [user("Never mind", "u2")], model="mock?tokens=3")
    assert again.status_code == 200
    deadline = time.monotonic() + 5
    while (status := httpx.get(f"{base}/v1/streams/{earlier}", headers=AUTH).json())[
        "status"
    ] == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (status["status"], status["finish_reason"]) == ("cancelled", "cancelled")
    assert mock_record(shared_stack[0], earlier)["closed_by_client_at"] is not None


def test_a_chat_with_nothing_in_progress(base: str) -> None:
    chat_id = new_chat_id()
    assert httpx.get(f"{base}/v1/chats/{chat_id}", headers=AUTH).json() == {
        "id": chat_id,
        "messages": [],
    }
    assert httpx.get(f"{base}/v1/chats/{chat_id}/stream", headers=AUTH).status_code == 204
    stop = httpx.post(f"{base}/v1/chats/{chat_id}/stop", headers=AUTH)
    assert (stop.status_code, stop.json()) == (202, {"id": chat_id, "stopped": False})
    send(base, chat_id, [user("Hi", "u1")], model="mock?tokens=2")
    assert httpx.get(f"{base}/v1/chats/{chat_id}/stream", headers=AUTH).status_code == 204


def test_a_chat_token_covers_its_chat_alone(base: str) -> None:
    chat_id, other = new_chat_id(), new_chat_id() + "-other"
    minted = httpx.post(f"{base}/v1/chats/{chat_id}/token", headers=AUTH)
    assert minted.status_code == 201
    token = minted.json()
    assert token["chat_id"] == chat_id and token["expires_at"] > time.time() + 3600
    bearer = {"Authorization": f"Bearer {token['token']}"}
    payload = {"id": chat_id, "messages": [user("Hi", "u1")], "model": "mock?tokens=3"}
    sent = httpx.post(f"{base}/v1/chats", json=payload, headers=bearer)
    assert sent.status_code == 200 and chunks_of(sent.text)[-1]["type"] == "finish"
    assert len(httpx.get(f"{base}/v1/chats/{chat_id}", headers=bearer).json()["messages"]) == 2
    # another chat, the same token
    for response in (
        httpx.post(f"{base}/v1/chats", json={**payload, "id": other}, headers=bearer),
        httpx.get(f"{base}/v1/chats/{other}", headers=bearer),
        httpx.get(f"{base}/v1/chats/{other}/stream", headers=bearer),
        httpx.post(f"{base}/v1/chats/{other}/stop", headers=bearer),
    ):
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "forbidden"
    # a chat token mints nothing, reads no stream; a stream's read token covers no chat
    assert httpx.post(f"{base}/v1/chats/{chat_id}/token", headers=bearer).status_code == 401
    stream_id = sent.headers["x-tokenrelay-stream-id"]
    assert httpx.get(f"{base}/v1/streams/{stream_id}", headers=bearer).status_code == 403
    native = {"model": "mock?tokens=1", "messages": [{"role": "user", "content": "x"}]}
    read_token = httpx.post(f"{base}/v1/streams", json=native, headers=AUTH).json()["read_token"]
    as_reader = {"Authorization": f"Bearer {read_token}"}
    assert httpx.get(f"{base}/v1/chats/{chat_id}", headers=as_reader).status_code == 403


def test_credentials_are_checked_before_the_body(base: str) -> None:
    no_body = httpx.post(f"{base}/v1/chats", content=b"{not json")
    assert no_body.status_code == 401
    forged = {"Authorization": "Bearer chat:x.9999999999.forged"}
    assert httpx.post(f"{base}/v1/chats", json={}, headers=forged).status_code == 401
    for path in ("/v1/chats/c1", "/v1/chats/c1/stream"):
        assert httpx.get(base + path).status_code == 401
    assert httpx.post(f"{base}/v1/chats/c1/token").status_code == 401


HI = [{"id": "u", "role": "user", "parts": [{"type": "text", "text": "hi"}]}]
AUDIO = [{"id": "u", "role": "user", "parts": [{"type": "file", "mediaType": "audio/wav"}]}]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"id": "c1", "messages": HI}, "model"),
        ({"id": "c 1", "model": "mock", "messages": HI}, "id"),
        ({"id": "c1", "model": "mock", "messages": []}, "messages"),
        ({"id": "c1", "model": "mock", "messages": AUDIO}, "only images"),
    ],
)
def test_a_request_the_upstream_could_not_take_is_refused_with_a_reason(
    base: str, body: dict[str, Any], says: str
) -> None:
    refused = httpx.post(f"{base}/v1/chats", json=body, headers=AUTH)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "invalid_fields"
    assert says in refused.text
