"""``shared.client`` and ``tokenrelay run`` against real gateways, workers and dev mode."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
import redis

from shared.client import AnswerSoFar, ClientEvent, GatewayError, StreamFailed, TokenRelayClient
from shared.completion import CompletionSoFar
from shared.errors import StreamErrorCode
from shared.events import Event, StreamEvent
from shared.keys import Keys
from tests.processes import API_KEY, REDIS_URL, Stack, free_port
from tests.test_dev import start_dev
from tokenrelay.run import run

MESSAGES = [{"role": "user", "content": "Why is the sky blue?"}]


async def mock_record(stack: Stack, stream_id: str) -> dict[str, Any]:
    """What the mock model recorded for this stream's single upstream request."""
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(
            stack.mock_url.removesuffix("/v1") + "/_mock/requests", params={"stream": stream_id}
        )
    records: list[dict[str, Any]] = response.json()
    assert len(records) == 1, records
    return records[0]


async def sent_text(stack: Stack, stream_id: str) -> str:
    text: str = (await mock_record(stack, stream_id))["sent_text"]
    return text


def text_of(events: list[ClientEvent]) -> str:
    return "".join(event.text for event in events)


async def test_text_is_the_models_answer(shared_stack: tuple[Stack, str]) -> None:
    stack, base = shared_stack
    async with TokenRelayClient(base, api_key=API_KEY) as client:
        created = await client.create(MESSAGES, model="mock?tokens=40&rate=200", max_tokens=100)
        assert created.status == "queued"
        assert created.events_url == f"/v1/streams/{created.id}/events?token={created.read_token}"
        text = await client.text(created.id)
        status = await client.status(created.id)
    assert text == await sent_text(stack, created.id)
    assert status["status"] == "completed" and status["finish_reason"] == "stop"


async def test_events_resume_by_themselves_across_a_gateway_sigkill(stack: Stack) -> None:
    port = free_port()
    first, base = stack.gateway(port=port)
    stack.worker()

    events: list[ClientEvent] = []
    killed_after: list[int] = []

    def kill_and_restart() -> None:
        first.kill()
        killed_after.append(len(events))
        stack.gateway(port=port)

    restart: asyncio.Task[None] | None = None
    async with TokenRelayClient(
        base, api_key=API_KEY, backoff_initial_s=0.1, backoff_max_s=0.5, max_attempts=50
    ) as client:
        created = await client.create(MESSAGES, model="mock?tokens=120&rate=40")
        async for event in client.events(created.id):
            events.append(event)
            if len(events) == 10:
                restart = asyncio.create_task(asyncio.to_thread(kill_and_restart))
    assert restart is not None
    await restart

    assert killed_after[0] < len(events) - 1, "the gateway was killed after the stream ended"
    offsets = [event.offset for event in events]
    assert len(offsets) == len(set(offsets)), "an event was delivered twice"
    assert {event.type for event in events[:-1]} <= {"token", "delta"}
    assert events[-1].type == "done" and events[-1].data["finish_reason"] == "stop"
    assert text_of(events) == await sent_text(stack, created.id)
    # the second gateway served the rest, from where the first one left off
    second_log = stack.processes[-1].log_text()
    assert f"stream={created.id} step=read after=" in second_log
    assert f"stream={created.id} step=read after=0-0" not in second_log


async def test_after_resumes_from_an_offset_and_204_ends_iteration(
    shared_stack: tuple[Stack, str],
) -> None:
    _, base = shared_stack
    async with TokenRelayClient(base) as client:  # the read token alone
        async with TokenRelayClient(base, api_key=API_KEY) as creator:
            created = await creator.create(MESSAGES, model="mock?tokens=30&rate=200")
        token = created.read_token
        everything = [event async for event in client.events(created.id, token=token)]
        rest = [
            event
            async for event in client.events(created.id, token=token, after=everything[4].offset)
        ]
        past_the_end = [
            event
            async for event in client.events(created.id, token=token, after=everything[-1].offset)
        ]
    assert everything[-1].type == "done"
    assert rest == everything[5:]
    assert past_the_end == []


async def test_gateway_errors_carry_code_and_status(shared_stack: tuple[Stack, str]) -> None:
    _, base = shared_stack
    async with TokenRelayClient(base, api_key=API_KEY) as client:
        created = await client.create(MESSAGES, model="mock?tokens=5&rate=0")
        with pytest.raises(GatewayError) as unknown:
            await client.text("A" * 22)
    async with TokenRelayClient(base) as anonymous:
        with pytest.raises(GatewayError) as bad_token:
            async for _ in anonymous.events(created.id, token=created.read_token + "x"):
                pass
        with pytest.raises(GatewayError) as no_token:
            await anonymous.status(created.id)
    assert (unknown.value.status, unknown.value.code) == (404, "stream_not_found")
    assert (bad_token.value.status, bad_token.value.code) == (401, "unauthorized")
    assert (no_token.value.status, no_token.value.code) == (401, "unauthorized")
    assert not bad_token.value.retryable


def calls_of(choice: dict[str, Any]) -> list[tuple[str, str, str]]:
    """A recorded choice's tool calls: (id, name, arguments)."""
    return [(call["id"], call["name"], call["arguments"]) for call in choice["tool_calls"]]


def answered_calls(answer: CompletionSoFar, choice: int = 0) -> list[tuple[str, str, str]]:
    return [
        (call["id"], call["function"]["name"], call["function"]["arguments"])
        for call in answer.choice(choice).tool_calls
    ]


async def test_stream_answer_grows_reasoning_text_and_tool_calls(
    shared_stack: tuple[Stack, str],
) -> None:
    stack, base = shared_stack
    model = "mock?tokens=6&reasoning=10&tools=2&text=1&rate=300"
    seen: list[tuple[str, str, str, int]] = []  # type, reasoning, text, tool calls so far
    async with TokenRelayClient(base, api_key=API_KEY) as client:
        created = await client.create(MESSAGES, model=model)
        answers: list[CompletionSoFar] = []
        async for event, so_far in client.stream_answer(created.id):
            choice = so_far.choice(0)
            seen.append((event.type, choice.reasoning, choice.text, len(choice.tool_calls)))
            answers.append(so_far)
        status = await client.status(created.id)
    recorded = (await mock_record(stack, created.id))["choices"][0]
    answer = answers[-1]
    assert all(so_far is answer for so_far in answers)  # one answer, grown in place
    assert answer.ended == "done" and seen[-1][0] == "done"

    choice = answer.choice(0)
    assert choice.reasoning == recorded["reasoning"] and len(recorded["reasoning"]) > 10
    assert choice.text == recorded["content"] == answer.text and len(answer.text) > 6
    assert answered_calls(answer) == calls_of(recorded)
    assert len(recorded["tool_calls"]) == 2
    assert choice.refusal is None
    assert choice.finish_reason == "tool_calls" == status["finish_reason"]
    # in the order the model streamed them: the whole reasoning, the text, then the calls
    first_text = next(i for i, (_, _, text, _) in enumerate(seen) if text)
    first_call = next(i for i, (*_, calls) in enumerate(seen) if calls)
    assert seen[first_text][1] == recorded["reasoning"]
    assert seen[first_call][2] == recorded["content"]
    assert [len(reasoning) for _, reasoning, _, _ in seen] == sorted(
        len(reasoning) for _, reasoning, _, _ in seen
    )

    completion = answer.chat_completion()
    assert status["completion"] is not None
    assert completion["id"] == status["completion"]["id"]
    assert completion["id"].startswith("chatcmpl-")
    assert completion["model"] == status["completion"]["model"] == model
    assert completion["created"] == status["completion"]["created"]
    assert completion["system_fingerprint"] == status["completion"]["system_fingerprint"]
    message = completion["choices"][0]["message"]
    assert message["reasoning_content"] == recorded["reasoning"]
    assert message["tool_calls"] == [
        {"id": id_, "type": "function", "function": {"name": name, "arguments": arguments}}
        for id_, name, arguments in calls_of(recorded)
    ]
    assert completion["usage"] == status["usage"]


async def test_answer_of_two_choices_and_of_a_refusal(shared_stack: tuple[Stack, str]) -> None:
    stack, base = shared_stack
    async with TokenRelayClient(base, api_key=API_KEY) as client:
        tools = await client.create(MESSAGES, model="mock?tools=3&rate=0", n=2)
        refusal = await client.create(MESSAGES, model="mock?refusal=1&reasoning=4&rate=0")
        # the read token alone is enough, for the status too
        async with TokenRelayClient(base) as reader:
            both = await reader.answer(tools.id, token=tools.read_token)
            refused = await reader.answer(refusal.id, token=refusal.read_token)
            refused_text = await reader.text(refusal.id, token=refusal.read_token)

    recorded = (await mock_record(stack, tools.id))["choices"]
    assert sorted(both.choices) == [0, 1]
    for index in (0, 1):
        assert answered_calls(both, index) == calls_of(recorded[index])
        assert len(recorded[index]["tool_calls"]) == 3
        assert both.choice(index).finish_reason == "tool_calls"
        assert both.choice(index).text == ""
    assert answered_calls(both, 0) != answered_calls(both, 1)
    assert both.completion["id"].startswith("chatcmpl-")

    said = (await mock_record(stack, refusal.id))["choices"][0]
    assert refused.choice(0).refusal == said["refusal"] and len(said["refusal"]) > 10
    assert refused.choice(0).reasoning == said["reasoning"]
    assert refused.text == refused_text == ""
    assert refused.choice(0).finish_reason == "stop"
    message = refused.chat_completion()["choices"][0]["message"]
    assert message["refusal"] == said["refusal"]
    assert not message["content"]


async def test_answer_raises_stream_failed_with_the_answer_so_far(
    shared_stack: tuple[Stack, str],
) -> None:
    stack, base = shared_stack
    async with TokenRelayClient(base, api_key=API_KEY) as client:
        created = await client.create(
            MESSAGES, model="mock?tokens=40&rate=0&fault=disconnect&after=5"
        )
        with pytest.raises(StreamFailed) as failed:
            await client.answer(created.id)
    assert failed.value.code == "upstream_error"
    assert failed.value.answer is not None
    assert failed.value.answer.ended == "error"
    assert failed.value.answer.text == await sent_text(stack, created.id)
    assert len(failed.value.answer.text) > 5


async def test_answer_of_a_responses_stream(shared_stack: tuple[Stack, str]) -> None:
    """A stream made through ``POST /v1/responses``: the same answer, as one choice."""
    stack, base = shared_stack
    model = "mock?tokens=6&reasoning=10&tools=2&text=1&rate=300"
    body = {"model": model, "input": "Weather?", "background": True}
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        created = await http.post(
            "/v1/responses", json=body, headers={"Authorization": f"Bearer {API_KEY}"}
        )
    assert created.status_code == 200, created.text
    stream_id = created.json()["id"].removeprefix("resp_")  # resp_ and the stream's id
    seen: list[tuple[str | None, str, str, int]] = []  # its type, reasoning, text, tool calls
    async with TokenRelayClient(base, api_key=API_KEY) as client:
        answers: list[AnswerSoFar] = []
        async for event, so_far in client.stream_answer(stream_id):
            choice = so_far.choice(0)
            seen.append(
                (event.response_type, choice.reasoning, choice.text, len(choice.tool_calls))
            )
            answers.append(so_far)
        text = await client.text(stream_id)
        again = await client.answer(stream_id)
        status = await client.status(stream_id)
    (sent,) = (await mock_record(stack, stream_id))["choices"]
    answer = answers[-1]
    assert all(so_far is answer for so_far in answers)
    assert answer.ended == "done"
    assert [kind for kind, *_ in seen[:2]] == ["response.created", "response.in_progress"]
    assert [kind for kind, *_ in seen[-2:]] == ["response.completed", None]  # then done

    choice = answer.choice(0)
    assert answer.text == choice.text == sent["content"] == text != ""
    assert choice.reasoning == sent["reasoning"] != ""
    assert answered_calls(answer) == calls_of(sent)
    assert len(sent["tool_calls"]) == 2
    assert choice.refusal is None
    assert choice.finish_reason == "stop" == status["finish_reason"]
    assert choice.message["role"] == "assistant"
    assert answer.usage == status["usage"] and answer.usage["output_tokens"] > 0
    assert answer.response is not None and answer.response["status"] == "completed"
    assert answer.completion == status["completion"]
    assert answer.completion["id"].startswith("resp_")
    assert sorted(answer.choices) == [0]
    # in the order the model streamed them: the whole reasoning, the text, then the calls
    first_text = next(i for i, (_, _, said, _) in enumerate(seen) if said)
    first_call = next(i for i, (*_, calls) in enumerate(seen) if calls)
    assert seen[first_text][1] == sent["reasoning"]
    assert seen[first_call][2] == sent["content"]
    assert again.text == answer.text and answered_calls(again) == answered_calls(answer)


def recorded_responses(name: str) -> list[str]:
    """A recorded Responses stream's events, their JSON as sent (tests/recordings/responses/)."""
    path = Path(__file__).parent / "recordings" / "responses" / f"{name}.sse"
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]


def ndjson_of(events: list[Event]) -> str:
    """The events as the gateway writes them in NDJSON."""
    return "".join(StreamEvent(f"{i}-0", event).ndjson() for i, event in enumerate(events, 1))


async def test_responses_events_read_from_ndjson_as_the_gateway_writes_it() -> None:
    """In-process, from recordings: a ``response`` event's NDJSON line holds two ``type``
    keys (``response``, then its own); each is read as a ``response`` event all the same.
    The upstream's own ``error`` event is not the stream's end; its terminal error is."""
    copilot = recorded_responses("copilot-reasoning-text")  # its type key last, new ids
    failed = recorded_responses("openai-error-failed")
    quota = "You exceeded your current quota"
    bodies = {
        "/v1/streams/ok/events": ndjson_of(
            [*map(Event.response, copilot), Event.done("stop", {"output_tokens": 105})]
        ),
        "/v1/streams/failed/events": ndjson_of(
            [
                *map(Event.response, failed),
                Event.error(StreamErrorCode.UPSTREAM_ERROR, quota, retryable=False),
            ]
        ),
    }
    assert '"type":"response","event":{' in bodies["/v1/streams/ok/events"]

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, text=bodies[request.url.path])

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(answer)) as http:
        client = TokenRelayClient("http://gw", http=http)
        events = [event async for event in client.events("ok")]
        whole = await client.answer("ok")
        text = await client.text("ok")
        failures = [event async for event in client.events("failed")]
        with pytest.raises(StreamFailed) as stopped:
            await client.answer("failed")
    final = json.loads(copilot[-1])["response"]
    (message,) = (item for item in final["output"] if item["type"] == "message")
    said = "".join(part["text"] for part in message["content"])
    assert [event.type for event in events] == ["response"] * len(copilot) + ["done"]
    assert [event.response_type for event in events[:-1]] == [
        json.loads(data)["type"] for data in copilot
    ]
    assert [event.data for event in events[:-1]] == [json.loads(data) for data in copilot]
    assert whole.text == text == said != ""
    assert whole.choice(0).reasoning == "**Counting character occurrences**"
    assert whole.response == final
    assert whole.completion == {
        "id": "capture-id-1",
        "created_at": 1786050349,
        "model": "gpt-5.3-codex",
    }

    assert [(event.type, event.response_type) for event in failures] == [
        ("response", "response.created"),
        ("response", "response.in_progress"),
        ("response", "error"),  # the upstream's: not the end
        ("response", "response.failed"),
        ("error", None),
    ]
    assert not failures[2].is_terminal and failures[-1].is_terminal
    assert stopped.value.code == "upstream_error"
    assert stopped.value.answer is not None
    assert isinstance(stopped.value.answer, AnswerSoFar)
    assert stopped.value.answer.response is not None
    assert stopped.value.answer.response["status"] == "failed"
    assert stopped.value.answer.choice(0).finish_reason is None


def test_answer_so_far_of_responses_events_by_hand() -> None:
    """Refusal, reasoning text parts, interleaved calls whose events change ids, a call the
    reader saw only from its arguments on, an incomplete end; chat events as before."""
    answer = AnswerSoFar()

    def add(kind: str, **data: Any) -> None:
        answer.add("response", {"type": kind, "sequence_number": 0, **data})

    add("response.output_item.added", output_index=0, item={"id": "rs_1", "type": "reasoning"})
    add("response.content_part.added", output_index=0, part={"type": "reasoning_text"})
    add("response.reasoning_text.delta", output_index=0, delta="Think.")
    add("response.content_part.added", output_index=0, part={"type": "reasoning_text"})
    add("response.reasoning_text.delta", output_index=0, delta="Again.")
    add("response.refusal.delta", output_index=1, delta="I can't")
    add("response.refusal.delta", output_index=1, delta=" do that.")
    for index, name in ((2, "get_weather"), (3, "get_time")):
        item = {"id": f"fc_{index}", "type": "function_call", "call_id": f"call_{index}"}
        add("response.output_item.added", output_index=index, item={**item, "name": name})
    add("response.function_call_arguments.delta", item_id="fc_2", output_index=2, delta="{")
    add("response.function_call_arguments.delta", item_id="new1", output_index=3, delta="{}")
    add("response.function_call_arguments.delta", item_id="new2", output_index=2, delta="}")
    add("response.function_call_arguments.delta", item_id="fc_9", output_index=9, delta="[1")
    whole = {"id": "fc_9", "type": "function_call", "call_id": "call_9", "name": "f"}
    add("response.output_item.done", output_index=9, item={**whole, "arguments": "[1]"})
    add(
        "response.incomplete",
        response={"status": "incomplete", "incomplete_details": {"reason": "content_filter"}},
    )
    choice = answer.choice(0)
    assert choice.reasoning == "Think.\n\nAgain."
    assert choice.refusal == "I can't do that."
    assert answered_calls(answer) == [
        ("call_2", "get_weather", "{}"),
        ("call_3", "get_time", "{}"),
        ("call_9", "f", "[1]"),
    ]
    assert choice.finish_reason == "content_filter"
    assert answer.text == ""
    # the stream's own events, after: done ends it as ever
    answer.add("done", {"finish_reason": "content_filter", "usage": None})
    assert answer.ended == "done"
    # NDJSON's shape: a response event nested as "event"
    other = AnswerSoFar()
    nested = ClientEvent.of(
        "1-0", "response", {"event": {"type": "response.output_text.delta", "delta": "Hi"}}
    )
    other.add(nested.type, nested.data)
    other.add("token", {"text": "!"})
    assert other.text == "Hi!"
    assert nested.text == "Hi" and nested.response_type == "response.output_text.delta"
    terminal = ClientEvent.of("2-0", "error", {"code": "x", "message": "y", "retryable": False})
    assert terminal.type == "error" and terminal.is_terminal


def run_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tokenrelay.cli", "run", *args]


def run_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENRELAY_", "OPENAI_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def test_run_prints_the_answer_against_dev_mode(tmp_path: Path) -> None:
    process, base = start_dev(tmp_path, path=os.environ["PATH"])
    model = "mock?tokens=25&rate=200"
    try:
        done = await asyncio.to_thread(
            subprocess.run,
            run_command("Why is the sky blue?", "--url", base, "--model", model),
            env=run_env(),
            capture_output=True,
            text=True,
            timeout=15,
        )
        # the mock model is deterministic: the same prompt again, read as NDJSON
        async with TokenRelayClient(base) as client:
            twin = await client.create(MESSAGES, model=model)
            expected = await client.text(twin.id, token=twin.read_token)
    finally:
        process.stop()
    assert done.returncode == 0, done.stderr
    assert len(expected) > 25
    assert done.stdout == expected + "\n"
    assert done.stderr == ""


async def test_run_ctrl_c_cancels_the_stream(stack: Stack) -> None:
    _, base = stack.gateway()
    stack.worker()
    process = await asyncio.create_subprocess_exec(
        *run_command("Why?", "--url", base, "--model", "mock?tokens=400&rate=40"),
        env={**run_env(), "TOKENRELAY_API_KEY": API_KEY},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    first = await process.stdout.read(1)  # the answer has started
    process.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(process.communicate(), 10)
    assert process.returncode == 130, err

    keys = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        metas = list(keys.scan_iter(match=Keys(stack.prefix).meta("*")))
    finally:
        keys.close()
    assert len(metas) == 1, metas
    stream_id = metas[0].split("{")[1].split("}")[0]
    async with TokenRelayClient(base, api_key=API_KEY) as client:
        deadline = time.monotonic() + 5
        while (status := await client.status(stream_id))["status"] != "cancelled":
            assert time.monotonic() < deadline, status
            await asyncio.sleep(0.1)
        text = await client.text(stream_id)
    assert status["finish_reason"] == "cancelled"
    printed = (first + out).decode()
    assert printed.endswith("\n") and text.startswith(printed.removesuffix("\n"))
    assert (await mock_record(stack, stream_id))["closed_by_client_at"] is not None


async def test_retries_503_with_retry_after_and_a_cut_body_then_gives_up() -> None:
    """In-process: a 503, a body cut before the terminal event, then the rest after the offset."""
    lines = [
        '{"offset":"1-0","type":"token","text":"Hello"}',
        '{"offset":"2-0","type":"token","text":", world"}',
        '{"offset":"3-0","type":"done","finish_reason":"stop","usage":null}',
    ]
    unavailable = {"error": {"code": "redis_unavailable", "message": "Redis is unavailable"}}
    answers = [
        httpx2.Response(503, json=unavailable, headers={"Retry-After": "0.2"}),
        httpx2.Response(200, text="\n".join(lines[:2]) + "\n\n"),  # with a keep-alive
        httpx2.Response(200, text=lines[2] + "\n"),
    ]
    requests: list[httpx2.Request] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        requests.append(request)
        return answers.pop(0) if answers else httpx2.Response(503, json=unavailable)

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(answer)) as http:
        client = TokenRelayClient("http://gw", http=http, backoff_initial_s=0.01, max_attempts=2)
        started = time.monotonic()
        events = [event async for event in client.events("s")]
        waited = time.monotonic() - started
        with pytest.raises(GatewayError) as gave_up:
            await client.text("s")
    assert [event.offset for event in events] == ["1-0", "2-0", "3-0"]
    assert text_of(events) == "Hello, world"
    assert [r.url.params.get("after") for r in requests[:3]] == [None, None, "2-0"]
    assert waited >= 0.2  # Retry-After was honoured
    assert len(requests) == 3 + 3  # the first try, then max_attempts reconnects
    assert (gave_up.value.status, gave_up.value.code) == (503, "redis_unavailable")


def thinking(reasoning: str) -> str:
    """How ``tokenrelay run`` prints reasoning when it is not a terminal."""
    lines = reasoning.split("\n")
    return "thinking:\n" + "\n".join(f"  {line}" if line else "" for line in lines) + "\n"


def call_line(id_: str, name: str, arguments: str) -> str:
    return f"→ tool call {name}({json.dumps(json.loads(arguments), ensure_ascii=False)})\n"


async def test_run_marks_the_reasoning_and_each_tool_call(
    shared_stack: tuple[Stack, str],
) -> None:
    stack, base = shared_stack
    model = "mock?tokens=8&reasoning=12&tools=2&text=1&rate=200"
    done = await asyncio.to_thread(
        subprocess.run,
        run_command("What is the weather in Paris?", "--url", base, "--model", model),
        env={**run_env(), "TOKENRELAY_API_KEY": API_KEY},
        capture_output=True,
        text=True,
        timeout=15,
    )
    assert done.returncode == 0, done.stderr
    stream_id = only_stream_of(stack, model)
    recorded = (await mock_record(stack, stream_id))["choices"][0]
    calls = calls_of(recorded)
    assert len(calls) == 2
    # the answer on stdout, the reasoning apart on stderr; no colours when piped
    assert done.stdout == recorded["content"] + "\n" + "".join(call_line(*c) for c in calls)
    assert done.stderr == thinking(recorded["reasoning"])
    assert "\x1b" not in done.stdout + done.stderr


def only_stream_of(stack: Stack, model: str) -> str:
    """The id of the one stream of the stack created with ``model``."""
    keys = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        ids: list[str] = [
            key.split("{")[1].split("}")[0]
            for key in keys.scan_iter(match=Keys(stack.prefix).meta("*"))
            if keys.hget(key, "model") == model
        ]
    finally:
        keys.close()
    assert len(ids) == 1, ids
    return ids[0]


async def test_run_marks_a_refusal(shared_stack: tuple[Stack, str]) -> None:
    stack, base = shared_stack
    model = "mock?refusal=1&rate=200&ttft=0.01"
    done = await asyncio.to_thread(
        subprocess.run,
        run_command("How do I pick a lock?", "--url", base, "--model", model),
        env={**run_env(), "TOKENRELAY_API_KEY": API_KEY},
        capture_output=True,
        text=True,
        timeout=15,
    )
    assert done.returncode == 0, done.stderr
    recorded = (await mock_record(stack, only_stream_of(stack, model)))["choices"][0]
    assert done.stdout == f"refused: {recorded['refusal']}\n"
    assert done.stderr == ""


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_run_colours_the_marks_on_a_terminal(
    shared_stack: tuple[Stack, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stack, base = shared_stack
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    model = "mock?tokens=3&reasoning=4&tools=1&text=1&rate=0&ttft=0.02"
    out, err = Tty(), Tty()
    code = await run("Weather?", url=base, model=model, api_key=API_KEY, out=out, err=err)
    assert code == 0
    recorded = (await mock_record(stack, only_stream_of(stack, model)))["choices"][0]
    ((id_, name, arguments),) = calls_of(recorded)
    assert err.getvalue().startswith("\x1b[2mthinking:\x1b[0m\n  \x1b[90m")
    assert "\x1b[90m" in err.getvalue() and err.getvalue().endswith("\x1b[0m\n")
    assert out.getvalue() == (
        recorded["content"] + "\n\x1b[36m" + call_line(id_, name, arguments)[:-1] + "\x1b[0m\n"
    )

    monkeypatch.setenv("NO_COLOR", "1")
    out, err = Tty(), Tty()
    model = model.replace("ttft=0.02", "ttft=0.03")  # another stream
    assert await run("Weather?", url=base, model=model, api_key=API_KEY, out=out, err=err) == 0
    assert "\x1b" not in out.getvalue() + err.getvalue()
    assert out.getvalue().endswith(call_line(id_, name, arguments))
