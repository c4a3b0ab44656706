"""AI SDK chats, the translations alone: UI messages into the OpenAI messages of the upstream
request, a generation's events into UI message chunks (only fields the AI SDK's schema knows),
and chunks into the assistant message ``GET /v1/chats/{id}`` shows."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from gateway.chats.openai_messages import openai_messages
from gateway.chats.ui_message import UIMessageBuilder
from gateway.chats.ui_stream import UIMessageChunks
from shared.errors import InvalidFields, StreamErrorCode
from shared.events import Event, StreamEvent

# What AI SDK 5's uiMessageChunkSchema allows in each chunk (z.strictObject: no other field).
AI_SDK_5_FIELDS: dict[str, set[str]] = {
    "start": {"type", "messageId", "messageMetadata"},
    "start-step": {"type"},
    "finish-step": {"type"},
    "text-start": {"type", "id", "providerMetadata"},
    "text-delta": {"type", "id", "delta", "providerMetadata"},
    "text-end": {"type", "id", "providerMetadata"},
    "reasoning-start": {"type", "id", "providerMetadata"},
    "reasoning-delta": {"type", "id", "delta", "providerMetadata"},
    "reasoning-end": {"type", "id", "providerMetadata"},
    "tool-input-start": {"type", "toolCallId", "toolName", "providerExecuted", "dynamic"},
    "tool-input-delta": {"type", "toolCallId", "inputTextDelta"},
    "tool-input-available": {
        "type",
        "toolCallId",
        "toolName",
        "input",
        "providerExecuted",
        "providerMetadata",
        "dynamic",
    },
    "tool-input-error": {
        "type",
        "toolCallId",
        "toolName",
        "input",
        "providerExecuted",
        "providerMetadata",
        "dynamic",
        "errorText",
    },
    "finish": {"type", "finishReason", "messageMetadata"},
    "abort": {"type", "reason"},
    "error": {"type", "errorText"},
}
REQUIRED: dict[str, set[str]] = {
    "start": {"type"},
    "text-delta": {"type", "id", "delta"},
    "reasoning-delta": {"type", "id", "delta"},
    "tool-input-start": {"type", "toolCallId", "toolName"},
    "tool-input-delta": {"type", "toolCallId", "inputTextDelta"},
    "tool-input-available": {"type", "toolCallId", "toolName", "input"},
    "error": {"type", "errorText"},
}


def known_to_the_sdk(chunk: dict[str, Any]) -> bool:
    allowed = AI_SDK_5_FIELDS.get(chunk["type"])
    return (
        allowed is not None
        and set(chunk) <= allowed
        and set(chunk) >= REQUIRED.get(chunk["type"], {"type"})
    )


_offsets = itertools.count(1)


def events(*made: Event) -> list[StreamEvent]:
    return [StreamEvent(f"{next(_offsets)}-0", event) for event in made]


def translate(stream: list[StreamEvent], message_id: str = "msg-1") -> list[dict[str, Any]]:
    chunks = UIMessageChunks(message_id)
    out = chunks.opening()
    for event in stream:
        out += chunks.chunks(event)
    assert all(known_to_the_sdk(chunk) for chunk in out), out
    return out


def built(chunks: list[dict[str, Any]], message_id: str = "msg-1") -> dict[str, Any]:
    builder = UIMessageBuilder(message_id)
    for chunk in chunks:
        builder.add(chunk)
    return builder.message


def call(index: int, **fields: Any) -> Event:
    """A delta event with one tool call fragment of choice 0."""
    return Event.delta({"choice": 0, "tool_calls": [{"index": index, **fields}]})


def test_text_and_reasoning_become_parts_in_the_order_they_came() -> None:
    chunks = translate(
        events(
            Event.delta({"choice": 0, "role": "assistant", "reasoning_content": "Let me"}),
            Event.delta({"choice": 0, "reasoning_content": " think."}),
            Event.token("Rivers "),
            Event.token("flow."),
            Event.done("stop", {"total_tokens": 9}),
        )
    )
    assert chunks == [
        {"type": "start", "messageId": "msg-1"},
        {"type": "start-step"},
        {"type": "reasoning-start", "id": "reasoning-1"},
        {"type": "reasoning-delta", "id": "reasoning-1", "delta": "Let me"},
        {"type": "reasoning-delta", "id": "reasoning-1", "delta": " think."},
        {"type": "reasoning-end", "id": "reasoning-1"},
        {"type": "text-start", "id": "text-2"},
        {"type": "text-delta", "id": "text-2", "delta": "Rivers "},
        {"type": "text-delta", "id": "text-2", "delta": "flow."},
        {"type": "text-end", "id": "text-2"},
        {"type": "finish-step"},
        {"type": "finish", "finishReason": "stop"},
    ]
    assert built(chunks) == {
        "id": "msg-1",
        "role": "assistant",
        "parts": [
            {"type": "step-start"},
            {"type": "reasoning", "text": "Let me think.", "state": "done"},
            {"type": "text", "text": "Rivers flow.", "state": "done"},
        ],
    }


def test_parallel_tool_calls_keep_the_upstreams_ids_and_arrive_parsed() -> None:
    chunks = translate(
        events(
            call(
                0, id="call_a", type="function", function={"name": "get_weather", "arguments": ""}
            ),
            call(0, function={"arguments": '{"city":'}),
            call(1, id="call_b", type="function", function={"name": "get_time", "arguments": "{}"}),
            call(0, function={"arguments": '"Oslo"}'}),
            Event.done("tool_calls"),
        )
    )
    assert chunks[2:] == [
        {"type": "tool-input-start", "toolCallId": "call_a", "toolName": "get_weather"},
        {"type": "tool-input-delta", "toolCallId": "call_a", "inputTextDelta": '{"city":'},
        {"type": "tool-input-start", "toolCallId": "call_b", "toolName": "get_time"},
        {"type": "tool-input-delta", "toolCallId": "call_b", "inputTextDelta": "{}"},
        {"type": "tool-input-delta", "toolCallId": "call_a", "inputTextDelta": '"Oslo"}'},
        {
            "type": "tool-input-available",
            "toolCallId": "call_a",
            "toolName": "get_weather",
            "input": {"city": "Oslo"},
        },
        {
            "type": "tool-input-available",
            "toolCallId": "call_b",
            "toolName": "get_time",
            "input": {},
        },
        {"type": "finish-step"},
        {"type": "finish", "finishReason": "tool-calls"},
    ]
    parts = built(chunks)["parts"]
    assert parts[1:] == [
        {
            "type": "tool-get_weather",
            "toolCallId": "call_a",
            "state": "input-available",
            "input": {"city": "Oslo"},
        },
        {"type": "tool-get_time", "toolCallId": "call_b", "state": "input-available", "input": {}},
    ]


def test_a_call_named_after_its_first_fragment_starts_once_named_with_nothing_lost() -> None:
    chunks = translate(
        events(
            call(0, id="call_x", function={"arguments": '{"q"'}),
            call(0, function={"name": "search", "arguments": ':"x"}'}),
            Event.done("tool_calls"),
        )
    )
    assert chunks[2:5] == [
        {"type": "tool-input-start", "toolCallId": "call_x", "toolName": "search"},
        {"type": "tool-input-delta", "toolCallId": "call_x", "inputTextDelta": '{"q":"x"}'},
        {
            "type": "tool-input-available",
            "toolCallId": "call_x",
            "toolName": "search",
            "input": {"q": "x"},
        },
    ]


def test_arguments_that_are_not_json_are_a_tool_input_error_with_the_text() -> None:
    chunks = translate(
        events(
            call(0, id="call_y", function={"name": "search", "arguments": '{"q": tru'}),
            Event.done("tool_calls"),
        )
    )
    error = chunks[-3]
    assert error["type"] == "tool-input-error"
    assert (error["toolCallId"], error["toolName"], error["input"]) == (
        "call_y",
        "search",
        '{"q": tru',
    )
    assert error["errorText"].startswith("the model's arguments are not JSON")
    assert built(chunks)["parts"][-1]["state"] == "output-error"


def test_a_refusal_is_the_answers_text_and_other_choices_are_not_a_chats() -> None:
    chunks = translate(
        events(
            Event.delta({"choice": 0, "refusal": "I can't help with that."}),
            Event.delta({"choice": 1, "content": "Other choice"}),
            Event.done("stop"),
        )
    )
    text = "".join(chunk.get("delta", "") for chunk in chunks)
    assert text == "I can't help with that."


def test_content_sent_with_logprobs_is_text_and_the_logprobs_stay_out() -> None:
    chunks = translate(
        events(
            Event.delta({"choice": 0, "content": "Hi", "logprobs": {"content": [{"token": "Hi"}]}}),
            Event.token(" there"),
            Event.done("length"),
        )
    )
    assert [c["delta"] for c in chunks if c["type"] == "text-delta"] == ["Hi", " there"]
    assert len([c for c in chunks if c["type"] == "text-start"]) == 1
    assert chunks[-1] == {"type": "finish", "finishReason": "length"}


@pytest.mark.parametrize(
    ("finish_reason", "sdk_reason"),
    [("content_filter", "content-filter"), ("stop", "stop"), ("length", "length")],
)
def test_finish_reasons_take_the_sdks_names(finish_reason: Any, sdk_reason: str) -> None:
    assert translate(events(Event.done(finish_reason)))[-1] == {
        "type": "finish",
        "finishReason": sdk_reason,
    }


def test_a_cancelled_generation_ends_with_abort_and_keeps_its_text() -> None:
    chunks = translate(
        events(
            Event.token("Half an"),
            call(0, id="call_z", function={"name": "search", "arguments": '{"q":'}),
            Event.done("cancelled"),
        )
    )
    assert chunks[-2:] == [{"type": "finish-step"}, {"type": "abort"}]
    assert not any(c["type"] == "tool-input-available" for c in chunks)
    message = built(chunks)
    assert message["parts"][1] == {"type": "text", "text": "Half an", "state": "done"}
    assert message["parts"][2]["state"] == "input-streaming"


def test_a_failed_generation_ends_with_the_error_text() -> None:
    failed = Event.error(StreamErrorCode.UPSTREAM_ERROR, "upstream said 500", retryable=True)
    assert translate(events(Event.token("so"), failed))[-2:] == [
        {"type": "text-end", "id": "text-1"},  # what came before it is whole
        {"type": "error", "errorText": "upstream said 500"},
    ]


def test_an_answer_continuing_a_message_keeps_its_id_and_earlier_parts() -> None:
    earlier = {
        "id": "msg-0",
        "role": "assistant",
        "parts": [{"type": "step-start"}, {"type": "text", "text": "Checking.", "state": "done"}],
    }
    builder = UIMessageBuilder("msg-0", earlier)
    for chunk in translate(events(Event.token("Done."), Event.done("stop")), "msg-0"):
        builder.add(chunk)
    assert builder.message["id"] == "msg-0"
    assert [part.get("text") for part in builder.message["parts"]] == [
        None,
        "Checking.",
        None,
        "Done.",
    ]
    assert earlier["parts"] == [  # the stored message is left as it was
        {"type": "step-start"},
        {"type": "text", "text": "Checking.", "state": "done"},
    ]


# --- UI messages -> OpenAI messages ------------------------------------------------------


def user(text: str, id_: str = "u") -> dict[str, Any]:
    return {"id": id_, "role": "user", "parts": [{"type": "text", "text": text}]}


def test_a_conversation_with_a_tool_call_and_its_result_is_what_openais_docs_write() -> None:
    conversation = [
        {"id": "s", "role": "system", "parts": [{"type": "text", "text": "Be brief."}]},
        user("Weather in Paris?", "u1"),
        {
            "id": "a1",
            "role": "assistant",
            "parts": [
                {"type": "step-start"},
                {"type": "reasoning", "text": "Need the tool.", "state": "done"},
                {
                    "type": "tool-get_weather",
                    "toolCallId": "call_1",
                    "state": "output-available",
                    "input": {"city": "Paris"},
                    "output": {"temperature": 14, "unit": "C"},
                },
                {"type": "step-start"},
                {"type": "text", "text": "14 °C in Paris.", "state": "done"},
            ],
        },
        user("And tomorrow?", "u2"),
    ]
    assert openai_messages(conversation) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "Need the tool.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature":14,"unit":"C"}'},
        {"role": "assistant", "content": "14 °C in Paris."},
        {"role": "user", "content": "And tomorrow?"},
    ]


def test_tool_results_errors_denials_and_unfinished_calls() -> None:
    def tool(kind: str, call_id: str, state: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "toolCallId": call_id, "state": state, "input": {}, **fields}

    denial = {"id": "a", "approved": False, "reason": "not allowed"}
    parts = [
        tool("dynamic-tool", "c1", "output-available", toolName="lookup", output="plain text"),
        tool("tool-search", "c2", "output-error", errorText="timed out"),
        tool("tool-delete", "c3", "output-denied", approval=denial),
        {"type": "tool-search", "toolCallId": "c4", "state": "input-streaming"},
        {"type": "source-url", "sourceId": "s", "url": "https://example.com"},
    ]
    messages = openai_messages([user("hi"), {"id": "a", "role": "assistant", "parts": parts}])
    assert [call["id"] for call in messages[1]["tool_calls"]] == ["c1", "c2", "c3"]
    assert messages[1]["tool_calls"][0]["function"]["name"] == "lookup"
    assert messages[2:] == [
        {"role": "tool", "tool_call_id": "c1", "content": "plain text"},
        {"role": "tool", "tool_call_id": "c2", "content": "timed out"},
        {"role": "tool", "tool_call_id": "c3", "content": "not allowed"},
    ]


def test_a_user_message_with_an_image_is_a_list_of_content_parts() -> None:
    message = {
        "id": "u",
        "role": "user",
        "parts": [
            {"type": "text", "text": "What is this?"},
            {"type": "file", "mediaType": "image/png", "url": "data:image/png;base64,iVBO"},
        ],
    }
    assert openai_messages([message]) == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
            ],
        }
    ]


@pytest.mark.parametrize(
    ("part", "says"),
    [
        ({"type": "file", "mediaType": "application/zip", "url": "x"}, "only images"),
        ({"type": "text"}, "needs 'text'"),
        ({"type": "tool-x", "state": "input-available", "input": {}}, "toolCallId"),
    ],
)
def test_parts_that_cannot_be_sent_are_refused_with_a_reason(
    part: dict[str, Any], says: str
) -> None:
    role = "assistant" if part["type"].startswith("tool-") else "user"
    with pytest.raises(InvalidFields, match=says):
        openai_messages([{"id": "m", "role": role, "parts": [part]}])
