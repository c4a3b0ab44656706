"""``tokenrelay admin``: its rendering in-process against canned answers, then the real
command against a real gateway and worker."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest

from shared.client import ClientEvent
from tests.processes import API_KEY, Stack
from tokenrelay import admin_cli
from tokenrelay.admin_cli import age, main
from tokenrelay.cli import parser

ADMIN_TOKEN = "test-admin-token"
NOW = time.time()

SUMMARY: dict[str, Any] = {
    "id": "Zq3vXwJ1b9kL0mN2oP4qRs",
    "status": "running",
    "model": "mock",
    "upstream": "mock:http://127.0.0.1:9000/v1",
    "created_at": NOW - 185,
    "started_at": NOW - 184.9,
    "finished_at": None,
    "finish_reason": None,
    "error": None,
    "usage": None,
    "event_count": 12,
    "last_offset": "1795690795012-0",
    "metadata": {},
    "readers": 2,
    "token_events": 12,
}
FAILED: dict[str, Any] = {
    **SUMMARY,
    "id": "Ab0cDe1fGh2iJk3lMn4oPq",
    "status": "failed",
    "created_at": NOW - 12.5,
    "finished_at": NOW - 11,
    "error": {"code": "upstream_error", "message": "the model said no", "retryable": False},
    "readers": 0,
    "token_events": 3,
}
DETAIL: dict[str, Any] = {
    **SUMMARY,
    "readers": [
        {"gateway": "gw-host:4242", "offset": "1795690794900-0", "lag": 3, "since": NOW - 42}
    ],
    "worker": "wk-host:77:abc123",
    "attempts": 1,
    "bytes": 2048,
    "first_token_at": NOW - 184.7,
    "time_to_first_token_s": 0.18,
    "tokens_per_s": 41.5,
    "usage": {"prompt_tokens": 5, "completion_tokens": 12},
    "completion": {
        "id": "chatcmpl-abc123",
        "created": 1795690794,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_44709d6fcb",
        "service_tier": "default",
    },
}
EVENTS: list[dict[str, Any]] = [
    {"offset": "1-0", "type": "delta", "choice": 0, "role": "assistant", "content": "The"},
    *({"offset": f"{i}-0", "type": "token", "text": f" w{i}"} for i in range(2, 13)),
]
SYSTEM: dict[str, Any] = {
    "queue_depth": 4,
    "jobs_in_progress": 3,
    "workers": [
        {"id": "wk-host:77:abc", "jobs": 3, "upstream": "mock:x", "last_heartbeat": 0, "age_s": 1.2}
    ],
    "gateways": [{"id": "gw-host:4242", "readers": 12, "last_heartbeat": 0, "age_s": 0.4}],
    "redis": {"version": "7.0.15", "used_memory": 1234567, "used_memory_human": "1.18M"},
}

Handler = Callable[[httpx2.Request], httpx2.Response]


@pytest.fixture(autouse=True)
def clock_at_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """The canned answers are dated relative to NOW: render them as if it still were."""
    monkeypatch.setattr(admin_cli.time, "time", lambda: NOW)


def admin(
    handler: Handler, *argv: str, stdin: str = "", token: str | None = ADMIN_TOKEN
) -> tuple[int, str, str]:
    """Run ``tokenrelay admin *argv`` in-process against ``handler``: status, stdout, stderr."""
    args = parser().parse_args(
        ["admin", "--url", "http://gw", *(["--token", token] if token else []), *argv]
    )
    if token is None:
        args.token = None  # whatever the environment running the tests holds
    out, err = io.StringIO(), io.StringIO()
    with httpx2.Client(transport=httpx2.MockTransport(handler)) as http:
        code = main(args, out=out, err=err, stdin=io.StringIO(stdin), http=http)
    return code, out.getvalue(), err.getvalue()


def cells(line: str) -> list[str]:
    """A table row's cells."""
    return [cell.strip() for cell in line.split("│")[1:-1]]


def answer(routes: dict[str, Any], seen: list[httpx2.Request] | None = None) -> Handler:
    """Answer ``"METHOD /path"`` with the JSON in ``routes``; 404 ``stream_not_found`` else."""

    def handle(request: httpx2.Request) -> httpx2.Response:
        if seen is not None:
            seen.append(request)
        assert request.headers["authorization"] == f"Bearer {ADMIN_TOKEN}"
        route = f"{request.method} {request.url.path}"
        if route in routes:
            body = routes[route]
            return body(request) if callable(body) else httpx2.Response(200, json=body)
        error = {"code": "stream_not_found", "message": "no such stream"}
        return httpx2.Response(404, json={"error": error})

    return handle


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")


def test_age_is_short_and_rounds_down() -> None:
    assert [age(s) for s in (-1, 0, 12.9, 59, 60, 185, 3599, 3600, 86399, 2 * 86400)] == [
        "0s",
        "0s",
        "12s",
        "59s",
        "1m",
        "3m",
        "59m",
        "1h",
        "23h",
        "2d",
    ]


def test_ls_prints_a_row_per_stream_newest_first() -> None:
    page = {"streams": [FAILED, SUMMARY], "next_cursor": None}
    code, out, err = admin(answer({"GET /admin/api/streams": page}), "ls")
    assert (code, err) == (0, "")
    rows = [line for line in out.splitlines() if FAILED["id"] in line or SUMMARY["id"] in line]
    assert len(rows) == 2
    assert rows[0].split("│")[1:-1] == [
        f" {FAILED['id']} ",
        " failed  ",
        " mock  ",
        " 12s ",
        "      3 ",
        "       0 ",
        " upstream_error ",
    ]
    assert cells(rows[1]) == [
        SUMMARY["id"],
        "running",
        "mock",
        "3m",
        "12",
        "2",
        "",
    ]
    assert "--all" not in out


def test_ls_all_follows_the_cursor_and_passes_status_and_limit() -> None:
    pages = {
        None: {"streams": [FAILED], "next_cursor": "c1"},
        "c1": {"streams": [], "next_cursor": "c2"},  # a filtered page may be empty
        "c2": {"streams": [SUMMARY], "next_cursor": None},
    }
    seen: list[httpx2.Request] = []

    def page(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json=pages[request.url.params.get("cursor")])

    routes = {"GET /admin/api/streams": page}
    code, out, _ = admin(answer(routes, seen), "ls", "--all", "--status", "failed", "--limit", "7")
    assert code == 0
    assert out.index(FAILED["id"]) < out.index(SUMMARY["id"])
    assert [dict(r.url.params) for r in seen] == [
        {"status": "failed", "limit": "7"},
        {"status": "failed", "limit": "7", "cursor": "c1"},
        {"status": "failed", "limit": "7", "cursor": "c2"},
    ]


def test_ls_without_all_says_there_is_more() -> None:
    page = {"streams": [SUMMARY], "next_cursor": "c1"}
    code, out, _ = admin(answer({"GET /admin/api/streams": page}), "ls")
    assert code == 0 and "more streams: --all" in out
    code, out, _ = admin(
        answer({"GET /admin/api/streams": {"streams": [], "next_cursor": None}}), "ls"
    )
    assert (code, out) == (0, "no streams\n")


def fields_of(out: str) -> dict[str, str]:
    """The name/value rows of ``show``'s panel."""
    fields: dict[str, str] = {}
    for line in out.splitlines():
        if line.startswith("│ "):
            name, _, value = line.strip("│ ").partition("  ")
            fields[name] = value.strip()
    return fields


def test_show_prints_every_field_and_the_readers() -> None:
    route = f"GET /admin/api/streams/{SUMMARY['id']}"
    events = {f"{route}/events": {"events": EVENTS}}
    code, out, err = admin(answer({route: DETAIL, **events}), "show", str(SUMMARY["id"]))
    assert (code, err) == (0, "")
    fields = fields_of(out)
    assert fields["id"] == SUMMARY["id"]
    assert fields["status"] == "running"
    assert fields["model"] == "mock"
    assert fields["upstream"] == "mock:http://127.0.0.1:9000/v1"
    assert fields["worker"] == "wk-host:77:abc123"
    assert fields["attempts"] == "1"
    assert fields["created"].endswith("(3m ago)")
    assert fields["started"].endswith("(+0.10 s)")
    assert fields["finished"] == "-"
    assert fields["first token"] == "after 0.180 s"
    assert fields["tokens/s"] == "41.5"
    assert fields["events"] == "12 (11 tokens, 1 delta)"
    assert fields["last offset"] == "1795690795012-0"
    assert fields["finish reason"] == "-"
    assert fields["bytes"] == "2.0 KiB (2048 B)"
    assert fields["usage"] == "prompt_tokens 5, completion_tokens 12"
    assert fields["error"] == "-"
    assert fields["completion id"] == "chatcmpl-abc123"
    assert fields["completion model"] == "gpt-4o-mini-2024-07-18"
    assert fields["completion created"].startswith(
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(1795690794))
    )
    assert fields["fingerprint"] == "fp_44709d6fcb"
    assert fields["service tier"] == "default"
    reader = next(line for line in out.splitlines() if "gw-host:4242" in line)
    assert cells(reader) == [
        "gw-host:4242",
        "1795690794900-0",
        "3",
        "42s ago",
    ]
    # the answer so far, whole and unwrapped
    assert out.endswith("\ntext\nThe" + "".join(f" w{i}" for i in range(2, 13)) + "\n")


def test_show_of_a_failed_stream_without_readers() -> None:
    detail = {**FAILED, "readers": [], "worker": None, "attempts": 1, "bytes": None}
    route = f"GET /admin/api/streams/{FAILED['id']}"
    events: dict[str, Any] = {f"{route}/events": {"events": []}}
    code, out, _ = admin(answer({route: detail, **events}), "show", str(FAILED["id"]))
    assert code == 0
    assert "upstream_error: the model said no" in out
    assert out.endswith("no readers\n")
    assert fields_of(out)["completion"] == "-"
    assert fields_of(out)["events"] == "12 (0 tokens)"


def test_show_prints_each_part_of_the_answer_page_by_page() -> None:
    """Reasoning, text, tool calls and a refusal of two choices, from two pages of events."""
    call = {"index": 0, "id": "call_1", "type": "function"}
    events: list[dict[str, Any]] = [
        {"type": "delta", "choice": 0, "role": "assistant", "reasoning_content": "Rain"},
        {"type": "delta", "choice": 1, "role": "assistant", "refusal": "I can't"},
        {"type": "delta", "choice": 0, "reasoning_content": "?\nCheck."},
        {"type": "delta", "choice": 0, "content": "Let me look."},
        {"type": "delta", "choice": 1, "refusal": " help.", "finish_reason": "stop"},
        {
            "type": "delta",
            "choice": 0,
            "tool_calls": [{**call, "function": {"name": "get_weather", "arguments": '{"ci'}}],
        },
        {
            "type": "delta",
            "choice": 0,
            "tool_calls": [{"index": 0, "function": {"arguments": 'ty":"Paris"}'}}],
        },
        {"type": "done", "finish_reason": "tool_calls", "usage": {"completion_tokens": 9}},
    ]
    for number, event in enumerate(events, 1):
        event["offset"] = f"{number}-0"
    detail = {**DETAIL, "status": "completed", "readers": [], "event_count": len(events)}
    pages: list[str | None] = []

    def page(request: httpx2.Request) -> httpx2.Response:
        after = request.url.params.get("after")
        pages.append(after)
        start = 0 if after is None else int(after.split("-")[0])
        count = int(request.url.params["count"])
        return httpx2.Response(200, json={"events": events[start : start + count]})

    route = f"GET /admin/api/streams/{SUMMARY['id']}"
    handler = answer({route: detail, f"{route}/events": page})
    with httpx2.Client(transport=httpx2.MockTransport(handler)) as http:
        client = admin_cli.AdminClient("http://gw", ADMIN_TOKEN, http=http)
        assert [e.offset for e in client.all_events(str(SUMMARY["id"]), page=3)] == [
            f"{n}-0" for n in range(1, 9)
        ]
        assert pages == [None, "3-0", "6-0"]
    code, out_text, err = admin(handler, "show", str(SUMMARY["id"]))
    assert (code, err) == (0, "")
    assert fields_of(out_text)["events"] == "8 (0 tokens, 7 deltas)"
    assert out_text.endswith(
        "no readers\n"
        "\n"
        "choice 0 reasoning\n"
        "Rain?\n"
        "Check.\n"
        "\n"
        "choice 0 text\n"
        "Let me look.\n"
        "\n"
        "choice 0 tool calls\n"
        '0  get_weather({"city":"Paris"})  id call_1\n'
        "\n"
        "choice 1 refusal\n"
        "I can't help.\n"
        "\n"
        "choice 1 finish reason\n"
        "stop\n"
    )


def test_stats_prints_queue_workers_gateways_and_redis() -> None:
    code, out, err = admin(answer({"GET /admin/api/system": SYSTEM}), "stats")
    assert (code, err) == (0, "")
    lines = [line.strip() for line in out.splitlines()]
    assert "queue depth       4" in lines
    assert "jobs in progress  3" in lines
    assert "redis version     7.0.15" in lines
    assert "redis memory      1.18M" in lines
    worker = next(line for line in lines if "wk-host:77:abc" in line)
    assert cells(worker) == [
        "wk-host:77:abc",
        "3",
        "mock:x",
        "1.2s ago",
    ]
    gateway = next(line for line in lines if "gw-host:4242" in line)
    assert cells(gateway) == ["gw-host:4242", "12", "0.4s ago"]


def sse(*events: tuple[str, str, dict[str, Any]]) -> str:
    return "retry: 1000\n\n" + "".join(
        f"id: {offset}\nevent: {kind}\ndata: {json.dumps(data)}\n\n: ping\n\n"
        for offset, kind, data in events
    )


def test_tail_prints_the_text_then_the_terminal_event() -> None:
    body = sse(
        ("1-0", "token", {"text": "Hello"}),
        ("2-0", "token", {"text": ", world"}),
        ("3-0", "done", {"finish_reason": "stop", "usage": None}),
    )
    seen: list[httpx2.Request] = []
    tail = httpx2.Response(200, text=body, headers={"content-type": "text/event-stream"})
    routes = {"GET /admin/api/streams/s/tail": lambda _: tail}
    code, out, err = admin(answer(routes, seen), "tail", "s")
    assert (code, out, err) == (0, "Hello, world\n[done: stop]\n", "")
    assert "after" not in seen[0].url.params


def test_tail_resumes_a_cut_connection_and_exits_1_on_an_error_event() -> None:
    bodies = [
        sse(("1-0", "token", {"text": "Hel"})),  # cut before the terminal event
        sse(("2-0", "token", {"text": "lo"}), ("3-0", "error", {"code": "x", "message": "y"})),
    ]
    seen: list[httpx2.Request] = []

    def tail(request: httpx2.Request) -> httpx2.Response:
        text = bodies.pop(0)
        return httpx2.Response(200, text=text, headers={"content-type": "text/event-stream"})

    routes = {"GET /admin/api/streams/s/tail": tail}
    code, out, _ = admin(answer(routes, seen), "tail", "s", "--after", "0-1")
    assert (code, out) == (1, "Hello\n[error: x: y]\n")
    assert [r.url.params["after"] for r in seen] == ["0-1", "0-1"]
    assert [r.headers.get("last-event-id") for r in seen] == [None, "1-0"]


def test_tail_marks_reasoning_tool_calls_refusals_and_choices() -> None:
    weather = {"index": 0, "id": "call_1", "type": "function"}
    body = sse(
        ("1-0", "delta", {"choice": 0, "role": "assistant", "reasoning_content": "Let me"}),
        ("2-0", "delta", {"choice": 0, "reasoning_content": " think."}),
        ("3-0", "delta", {"choice": 0, "content": "Hi", "reasoning_content": None}),
        ("4-0", "token", {"text": " there"}),
        (
            "5-0",
            "delta",
            {"choice": 0, "tool_calls": [{**weather, "function": {"name": "get_weather"}}]},
        ),
        (
            "6-0",
            "delta",
            {"choice": 0, "tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]},
        ),
        ("7-0", "delta", {"choice": 1, "role": "assistant", "refusal": "I can't."}),
        (
            "8-0",
            "delta",
            {"choice": 0, "tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]},
        ),
        ("9-0", "delta", {"choice": 1, "finish_reason": "stop"}),
        ("10-0", "delta", {"choice": 0, "audio": {"id": "audio_1"}, "logprobs": {"content": []}}),
        ("11-0", "done", {"finish_reason": "tool_calls", "usage": None}),
    )
    tail = httpx2.Response(200, text=body, headers={"content-type": "text/event-stream"})
    code, out, err = admin(answer({"GET /admin/api/streams/s/tail": lambda _: tail}), "tail", "s")
    assert (code, err) == (0, "")
    assert out == (
        "[reasoning] Let me think.\n"
        "[text] Hi there\n"
        '[tool call 0: get_weather id call_1] {"city":\n'
        "[choice 1 refusal] I can't.\n"
        '[tool call 0] "Paris"}\n'
        "[choice 1 finish: stop]\n"
        '[audio: {"id": "audio_1"}]\n'
        "[done: tool_calls]\n"
    )


def responses(*events: dict[str, Any], first: int = 1) -> list[tuple[str, str, dict[str, Any]]]:
    """Responses API events as a stream's ``response`` events (offset, type, data)."""
    return [
        (f"{number}-0", "response", {**event, "sequence_number": number - first})
        for number, event in enumerate(events, first)
    ]


RESPONSE_EVENTS = responses(
    {"type": "response.created", "response": {"id": "resp_1", "status": "in_progress"}},
    {"type": "response.in_progress", "response": {"id": "resp_1", "status": "in_progress"}},
    {"type": "response.output_item.added", "output_index": 0, "item": {"type": "reasoning"}},
    {"type": "response.reasoning_summary_part.added", "item_id": "rs_1", "output_index": 0},
    {"type": "response.reasoning_summary_text.delta", "output_index": 0, "delta": "Rain"},
    {"type": "response.reasoning_summary_text.delta", "output_index": 0, "delta": "? Check."},
    {"type": "response.output_item.done", "output_index": 0, "item": {"type": "reasoning"}},
    {
        "type": "response.output_item.added",
        "output_index": 1,
        "item": {"id": "msg_1", "type": "message", "role": "assistant", "content": []},
    },
    {
        "type": "response.content_part.added",
        "output_index": 1,
        "part": {"type": "output_text", "text": ""},
    },
    {
        "type": "response.output_text.delta",
        "output_index": 1,
        "delta": "Let me",
        "obfuscation": "x",
    },
    {"type": "response.output_text.delta", "output_index": 1, "delta": " look."},
    {"type": "response.output_text.done", "output_index": 1, "text": "Let me look."},
    {
        "type": "response.output_item.added",
        "output_index": 2,
        "item": {
            "id": "fc_1",
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": "",
        },
    },
    {
        "type": "response.function_call_arguments.delta",
        "item_id": "fc_1",
        "output_index": 2,
        "delta": '{"city":',
    },
    {  # an upstream that gives every event a new id: the output index tells the call
        "type": "response.function_call_arguments.delta",
        "item_id": "fc_rotated",
        "output_index": 2,
        "delta": '"Paris"}',
    },
    {
        "type": "response.output_item.done",
        "output_index": 2,
        "item": {
            "id": "fc_1",
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
        },
    },
    {
        "type": "response.completed",
        "response": {"id": "resp_1", "status": "completed", "usage": {"output_tokens": 9}},
    },
)
RESPONSE_TAIL = (
    "[response.created] [response.in_progress] [response.output_item.added reasoning]"
    " [response.reasoning_summary_part.added]\n"
    "[reasoning] Rain? Check.\n"
    "[response.output_item.done reasoning] [response.output_item.added message]"
    " [response.content_part.added output_text]\n"
    "[text] Let me look.\n"
    "[response.output_text.done]\n"
    '[tool call get_weather call_1] {"city":"Paris"}\n'
    "[response.output_item.done function_call] [response.completed]\n"
    "[done: stop]\n"
)


def test_tail_shows_a_responses_stream_compactly() -> None:
    done = ("18-0", "done", {"finish_reason": "stop", "usage": {"output_tokens": 9}})
    tail = httpx2.Response(
        200, text=sse(*RESPONSE_EVENTS, done), headers={"content-type": "text/event-stream"}
    )
    code, out, err = admin(answer({"GET /admin/api/streams/s/tail": lambda _: tail}), "tail", "s")
    assert (code, err) == (0, "")
    assert out == RESPONSE_TAIL


def test_tail_of_a_responses_stream_that_begins_with_text_or_mid_call() -> None:
    """The text unmarked below the first notes; arguments of a call added before the tail."""
    printer = admin_cli.TailPrinter(out := io.StringIO())
    for offset, kind, data in responses(
        {"type": "response.created", "response": {"status": "in_progress"}},
        {"type": "response.output_text.delta", "output_index": 0, "delta": "Hello"},
        {"type": "response.output_text.annotation.added", "output_index": 0, "annotation": {}},
        {"type": "response.output_text.delta", "output_index": 0, "delta": " world"},
        {"type": "response.refusal.delta", "output_index": 0, "delta": "No."},
        {"type": "response.function_call_arguments.delta", "item_id": "fc_9", "delta": "{}"},
        {"type": "response.code_interpreter_call_code.delta", "delta": "print(1)"},
        {"type": "response.code_interpreter_call_code.delta", "delta": "\n"},
        {
            "type": "response.incomplete",
            "response": {"incomplete_details": {"reason": "max_output_tokens"}},
        },
    ):
        printer.add(ClientEvent(offset, kind, data))
    printer.add(ClientEvent("10-0", "done", {"finish_reason": "length"}))
    assert out.getvalue() == (
        "[response.created]\n"
        "Hello\n"
        "[response.output_text.annotation.added]\n"
        " world\n"
        "[refusal] No.\n"
        "[tool call ? fc_9] {}\n"
        "[response.code_interpreter_call_code.delta] print(1)\n"
        "[response.incomplete: max_output_tokens]\n"
        "[done: length]\n"
    )


def recorded_responses(name: str) -> list[dict[str, Any]]:
    """A recorded Responses stream's events (tests/recordings/responses/<name>.sse)."""
    path = Path(__file__).parent / "recordings" / "responses" / f"{name}.sse"
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: ")]


def test_tail_of_a_failed_responses_stream_shows_both_errors_and_exits_1() -> None:
    events = responses(*recorded_responses("openai-error-failed"))
    quota = "You exceeded your current quota, please check your plan and billing details."
    error = ("5-0", "error", {"code": "upstream_error", "message": quota, "retryable": False})
    tail = httpx2.Response(
        200, text=sse(*events, error), headers={"content-type": "text/event-stream"}
    )
    code, out, _ = admin(answer({"GET /admin/api/streams/s/tail": lambda _: tail}), "tail", "s")
    assert code == 1
    lines = out.splitlines()
    assert len(lines) == 2, out
    assert lines[0].startswith(
        "[response.created] [response.in_progress] [error event: insufficient_quota: You exceeded"
    )
    assert "[response.failed: insufficient_quota: You exceeded" in lines[0]
    assert lines[1] == f"[error: upstream_error: {quota}]"


def test_show_of_a_responses_stream_reads_the_admin_apis_events() -> None:
    """The admin API's events are ``{"offset", "type", ...data}``, a response event's data
    nested as ``event``; the answer is its one choice all the same."""
    done = ("18-0", "done", {"finish_reason": "stop", "usage": {"output_tokens": 9}})
    events: list[dict[str, Any]] = [
        {"offset": offset, "type": "response", "event": {"type": kind, **data}}
        for offset, kind, data in RESPONSE_EVENTS
    ]
    events.append({"offset": done[0], "type": done[1], **done[2]})
    detail = {
        **DETAIL,
        "status": "completed",
        "readers": [],
        "event_count": len(events),
        "finish_reason": "stop",
        "completion": {"id": "resp_upstream", "created_at": 1795690794, "model": "gpt-5.1"},
    }
    route = f"GET /admin/api/streams/{SUMMARY['id']}"
    handler = answer({route: detail, f"{route}/events": {"events": events}})
    with httpx2.Client(transport=httpx2.MockTransport(handler)) as http:
        client = admin_cli.AdminClient("http://gw", ADMIN_TOKEN, http=http)
        read = list(client.all_events(str(SUMMARY["id"])))
    assert [event.type for event in read] == ["response"] * 17 + ["done"]
    assert read[0].data["type"] == "response.created" == read[0].response_type
    code, out, err = admin(handler, "show", str(SUMMARY["id"]))
    assert (code, err) == (0, "")
    fields = fields_of(out)
    assert fields["events"] == "18 (17 response events)"
    assert fields["completion id"] == "resp_upstream"
    assert fields["completion created"].startswith(
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(1795690794))
    )
    assert out.endswith(
        "no readers\n"
        "\n"
        "reasoning\n"
        "Rain? Check.\n"
        "\n"
        "text\n"
        "Let me look.\n"
        "\n"
        "tool calls\n"
        '0  get_weather({"city":"Paris"})  id call_1\n'
    )


def test_cancel_prints_the_status() -> None:
    cancelled = {**SUMMARY, "status": "cancelled"}
    code, out, _ = admin(answer({"POST /admin/api/streams/s/cancel": cancelled}), "cancel", "s")
    assert (code, out) == (0, f"{SUMMARY['id']}: cancelled\n")


def test_purge_asks_on_a_terminal_and_refuses_without_one() -> None:
    seen: list[httpx2.Request] = []
    routes = {"DELETE /admin/api/streams/s": {"id": "s", "purged_keys": 4}}
    assert admin(answer(routes, seen), "purge", "s", "--yes")[:2] == (0, "s: purged 4 keys\n")

    code, out, err = admin(answer(routes, seen), "purge", "s")  # stdin is not a TTY
    assert (code, out) == (2, "")
    assert err == "error: purge deletes the stream for good: pass --yes\n"
    assert len(seen) == 1

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    args = parser().parse_args(
        ["admin", "--url", "http://gw", "--token", ADMIN_TOKEN, "purge", "s"]
    )
    for reply, expected in (("n\n", 1), ("yes\n", 0)):
        prompt = io.StringIO()
        with httpx2.Client(transport=httpx2.MockTransport(answer(routes, seen))) as http:
            code = main(args, out=io.StringIO(), err=prompt, stdin=Tty(reply), http=http)
        assert code == expected
        assert prompt.getvalue().startswith("purge stream s and every key of it? [y/N] ")
    assert len(seen) == 2  # only the "yes" purged


def test_errors_print_the_code_and_message_and_exit_1() -> None:
    code, out, err = admin(answer({}), "show", "nope")
    assert (code, out, err) == (1, "", "error: stream_not_found: no such stream\n")

    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    code, _, err = admin(refuse, "stats")
    assert code == 1 and err.startswith("error: cannot reach http://gw")

    not_json = httpx2.Response(200, text="<html>")
    code, _, err = admin(answer({"GET /admin/api/system": lambda _: not_json}), "stats")
    assert code == 1 and err.startswith("error: invalid_response: ")


def test_no_token_is_a_usage_error() -> None:
    code, out, err = admin(answer({}), "ls", token=None)
    assert (code, out) == (2, "")
    assert err == "error: no admin token: set TOKENRELAY_ADMIN_TOKEN (or pass --token)\n"


EVERY_COMMAND = {
    "ls": (["ls"], {"GET /admin/api/streams": {"streams": [SUMMARY], "next_cursor": None}}),
    "show": (
        ["show", "s"],
        {"GET /admin/api/streams/s": DETAIL, "GET /admin/api/streams/s/events": {"events": []}},
    ),
    "tail": (
        ["tail", "s", "--after", "0-1"],
        {
            "GET /admin/api/streams/s/tail": lambda _: httpx2.Response(
                200,
                text=sse(("1-0", "done", {"finish_reason": "stop", "usage": None})),
                headers={"content-type": "text/event-stream"},
            )
        },
    ),
    "cancel": (["cancel", "s"], {"POST /admin/api/streams/s/cancel": SUMMARY}),
    "purge": (
        ["purge", "s", "--yes"],
        {"DELETE /admin/api/streams/s": {"id": "s", "purged_keys": 1}},
    ),
    "stats": (["stats"], {"GET /admin/api/system": SYSTEM}),
}
"""Each admin subcommand with its arguments, and the answers it needs to succeed."""

BEFORE = ["--url", "http://before:8000", "--token", "token-before"]
AFTER = ["--url", "http://after:8000", "--token", "token-after"]


@pytest.mark.parametrize("command", EVERY_COMMAND)
@pytest.mark.parametrize(
    ("before", "after", "url", "token"),
    [
        ([], [], "http://127.0.0.1:8000", "token-from-env"),
        (BEFORE, [], "http://before:8000", "token-before"),
        ([], AFTER, "http://after:8000", "token-after"),
        (BEFORE, AFTER, "http://after:8000", "token-after"),  # after the subcommand wins
        (
            ["--url", "http://before:8000"],
            ["--token", "token-after"],
            "http://before:8000",
            "token-after",
        ),
        (
            ["--token", "token-before"],
            ["--url", "http://after:8000"],
            "http://after:8000",
            "token-before",
        ),
    ],
    ids=["neither", "before", "after", "both", "url-before-token-after", "token-before-url-after"],
)
def test_url_and_token_go_before_or_after_the_subcommand(
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    before: list[str],
    after: list[str],
    url: str,
    token: str,
) -> None:
    # issue 16: `tokenrelay admin ls --url …` (SPEC's form) was "unrecognized arguments"
    monkeypatch.setenv("TOKENRELAY_ADMIN_TOKEN", "token-from-env")
    argv, routes = EVERY_COMMAND[command]
    args = parser().parse_args(["admin", *before, *argv, *after])
    seen: list[httpx2.Request] = []

    def handle(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        body = routes[f"{request.method} {request.url.path}"]
        return body(request) if callable(body) else httpx2.Response(200, json=body)

    err = io.StringIO()
    with httpx2.Client(transport=httpx2.MockTransport(handle)) as http:
        code = main(args, out=io.StringIO(), err=err, stdin=io.StringIO(), http=http)
    assert (code, err.getvalue()) == (0, "")
    assert seen
    for request in seen:
        assert str(request.url).startswith(f"{url}/admin/api/")
        assert request.headers["authorization"] == f"Bearer {token}"


# --- end to end: the real command against a real gateway and worker --------------------------


def admin_command(
    base: str, *args: str, token: str = ADMIN_TOKEN
) -> subprocess.CompletedProcess[str]:
    """``tokenrelay admin --url base *args``, the admin token in the environment."""
    return tokenrelay_admin("--url", base, *args, token=token)


def tokenrelay_admin(*argv: str, token: str) -> subprocess.CompletedProcess[str]:
    """``tokenrelay admin *argv``, ``token`` as ``TOKENRELAY_ADMIN_TOKEN``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENRELAY_", "OPENAI_"))}
    env.update(PYTHONUNBUFFERED="1", COLUMNS="200", TOKENRELAY_ADMIN_TOKEN=token)
    return subprocess.run(
        [sys.executable, "-m", "tokenrelay.cli", "admin", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=15,
    )


async def run_admin(
    base: str, *args: str, token: str = ADMIN_TOKEN
) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(admin_command, base, *args, token=token)


class Public:
    """The public API, with the test API key."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.auth = {"Authorization": f"Bearer {API_KEY}"}

    async def create(self, model: str, **params: Any) -> str:
        body = {
            "model": model,
            "messages": [{"role": "user", "content": "Why is the sky blue?"}],
            **params,
        }
        response = await self.http.post("/v1/streams", json=body, headers=self.auth)
        assert response.status_code == 201, response.text
        stream_id: str = response.json()["id"]
        return stream_id

    async def status(self, stream_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/v1/streams/{stream_id}", headers=self.auth)
        assert response.status_code == 200, response.text
        status: dict[str, Any] = response.json()
        return status

    async def wait_for(self, stream_id: str, *statuses: str) -> dict[str, Any]:
        deadline = time.monotonic() + 8
        while (status := await self.status(stream_id))["status"] not in statuses:
            assert time.monotonic() < deadline, status
            await asyncio.sleep(0.05)
        return status

    async def text(self, stream_id: str) -> str:
        response = await self.http.get(
            f"/v1/streams/{stream_id}/events", headers={**self.auth, "Accept": "text/plain"}
        )
        assert response.status_code == 200, response.text
        return response.text

    async def event_types(self, stream_id: str) -> list[str]:
        response = await self.http.get(
            f"/v1/streams/{stream_id}/events", params={"format": "ndjson"}, headers=self.auth
        )
        assert response.status_code == 200, response.text
        return [json.loads(line)["type"] for line in response.text.splitlines() if line]


STACK_ENV = {"TOKENRELAY_ADMIN_TOKEN": ADMIN_TOKEN}
"""The module's gateway and worker (``shared_stack``): the admin API on."""


@pytest.fixture
async def gateway(shared_stack: tuple[Stack, str]) -> AsyncIterator[tuple[str, Public]]:
    """The module's gateway (admin API on) and worker: its URL and its public API."""
    _, base = shared_stack
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        yield base, Public(http)


def row_of(out: str, stream_id: str) -> list[str]:
    return cells(next(line for line in out.splitlines() if stream_id in line))


async def test_ls_and_show_a_finished_and_a_running_stream(gateway: tuple[str, Public]) -> None:
    base, public = gateway
    finished = await public.create("mock?tokens=20&rate=0")
    await public.wait_for(finished, "completed")
    running = await public.create("mock?tokens=400&rate=20")
    await public.wait_for(running, "running")

    listed = await run_admin(base, "ls")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.index(running) < listed.stdout.index(finished)  # newest first
    assert row_of(listed.stdout, finished)[:3] == [finished, "completed", "mock?tokens=20&rate=0"]
    assert row_of(listed.stdout, finished)[-1] == "stop"
    assert row_of(listed.stdout, running)[:2] == [running, "running"]

    only_running = await run_admin(base, "ls", "--status", "running", "--all")
    assert only_running.returncode == 0, only_running.stderr
    assert running in only_running.stdout and finished not in only_running.stdout

    shown = await run_admin(base, "show", finished)
    assert shown.returncode == 0, shown.stderr
    status = await public.status(finished)
    fields = fields_of(shown.stdout)
    assert (fields["id"], fields["status"]) == (finished, "completed")
    assert fields["model"] == "mock?tokens=20&rate=0"
    types = await public.event_types(finished)
    assert len(types) == status["event_count"]
    counted = [(types.count(kind), kind) for kind in ("token", "delta")]
    assert (
        fields["events"]
        == f"{status['event_count']} ("
        + ", ".join(
            f"{n} {kind}{'' if n == 1 else 's'}" for n, kind in counted if n or kind == "token"
        )
        + ")"
    )
    assert fields["finish reason"] == "stop"
    await public.http.post(f"/v1/streams/{running}/cancel", headers=public.auth)


async def test_cancel_stops_a_running_stream(gateway: tuple[str, Public]) -> None:
    base, public = gateway
    stream_id = await public.create("mock?tokens=400&rate=20")
    await public.wait_for(stream_id, "running")

    cancelled = await run_admin(base, "cancel", stream_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.startswith(f"{stream_id}: ")
    status = await public.wait_for(stream_id, "cancelled", "completed", "failed")
    assert (status["status"], status["finish_reason"]) == ("cancelled", "cancelled")
    assert status["event_count"] < 400


async def test_purge_then_show_is_stream_not_found(gateway: tuple[str, Public]) -> None:
    base, public = gateway
    stream_id = await public.create("mock?tokens=10&rate=0")
    await public.wait_for(stream_id, "completed")

    refused = await run_admin(base, "purge", stream_id)  # no --yes, no terminal
    assert refused.returncode == 2
    assert "--yes" in refused.stderr

    purged = await run_admin(base, "purge", "--yes", stream_id)
    assert purged.returncode == 0, purged.stderr
    assert purged.stdout.startswith(f"{stream_id}: purged ")
    assert int(purged.stdout.split("purged ")[1].split()[0]) > 0

    shown = await run_admin(base, "show", stream_id)
    assert shown.returncode == 1
    assert shown.stdout == ""
    assert shown.stderr.startswith("error: stream_not_found: ")
    response = await public.http.get(f"/v1/streams/{stream_id}", headers=public.auth)
    assert response.status_code == 404


async def test_url_and_token_after_the_subcommand_as_the_spec_writes(
    gateway: tuple[str, Public],
) -> None:
    base, public = gateway
    stream_id = await public.create("mock?tokens=3&rate=0")
    await public.wait_for(stream_id, "completed")
    argv = ("ls", "--url", base, "--token", ADMIN_TOKEN)  # over a wrong one in the environment
    listed = await asyncio.to_thread(tokenrelay_admin, *argv, token="not-the-admin-token")
    assert listed.returncode == 0, listed.stderr
    assert row_of(listed.stdout, stream_id)[:2] == [stream_id, "completed"]


async def test_a_wrong_token_is_unauthorized(gateway: tuple[str, Public]) -> None:
    base, _ = gateway
    done = await run_admin(base, "ls", token="not-the-admin-token")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("error: unauthorized: ")


async def test_tail_prints_exactly_the_streams_text(gateway: tuple[str, Public]) -> None:
    base, public = gateway
    stream_id = await public.create("mock?tokens=30&rate=20")  # 1.5 s: still running
    tailed = await run_admin(base, "tail", stream_id)  # follows it live, to its end
    assert tailed.returncode == 0, tailed.stderr
    text = await public.text(stream_id)
    assert len(text) > 30
    assert tailed.stdout == text + "\n[done: stop]\n"
    assert tailed.stderr == ""


async def test_stats_shows_the_worker_and_the_gateway(
    stack: Stack, gateway: tuple[str, Public]
) -> None:
    base, _ = gateway
    deadline = time.monotonic() + 15
    while True:  # the first heartbeats may take a moment
        stats = await run_admin(base, "stats")
        assert stats.returncode == 0, stats.stderr
        lines = stats.stdout.splitlines()
        workers = next(i for i, line in enumerate(lines) if line.startswith("workers"))
        gateways = next(i for i, line in enumerate(lines) if line.startswith("gateways"))
        worker_rows = [cells(line) for line in lines[workers:gateways] if line.startswith("│")]
        gateway_rows = [cells(line) for line in lines[gateways:] if line.startswith("│")]
        # the module's earlier streams and readers may still be ending: until both say so
        # (each reports itself every few seconds)
        idle = worker_rows and gateway_rows and worker_rows[0][1] == gateway_rows[0][1] == "0"
        if idle or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert len(worker_rows) == 1 and len(gateway_rows) == 1, stats.stdout
    assert worker_rows[0][1:3] == ["0", stack.mock_url]
    assert gateway_rows[0][1] == "0"
    summary = dict(line.split("  ", 1) for line in lines[:workers] if line.strip())
    assert summary["queue depth"].strip() == "0"
    assert summary["redis version"].strip().startswith("7.")


async def mock_choices(stack: Stack, stream_id: str) -> list[dict[str, Any]]:
    """What the mock model sent for each choice of this stream's one upstream request."""
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(
            stack.mock_url.removesuffix("/v1") + "/_mock/requests", params={"stream": stream_id}
        )
    (record,) = response.json()
    choices: list[dict[str, Any]] = record["choices"]
    return choices


async def test_tail_marks_the_reasoning_text_and_tool_calls_live(
    stack: Stack, gateway: tuple[str, Public]
) -> None:
    base, public = gateway
    stream_id = await public.create("mock?tokens=5&text=1&reasoning=8&tools=2&rate=40")
    tailed = await run_admin(base, "tail", stream_id)  # ~1 s: followed live
    assert tailed.returncode == 0, tailed.stderr
    (sent,) = await mock_choices(stack, stream_id)
    assert len(sent["tool_calls"]) == 2 and sent["reasoning"] and sent["content"]
    assert tailed.stdout == (
        f"[reasoning] {sent['reasoning']}\n"
        f"[text] {sent['content']}\n"
        + "".join(
            f"[tool call {index}: {call['name']} id {call['id']}] {call['arguments']}\n"
            for index, call in enumerate(sent["tool_calls"])
        )
        + "[done: tool_calls]\n"
    )
    assert tailed.stderr == ""


async def test_tail_marks_a_refusal(stack: Stack, gateway: tuple[str, Public]) -> None:
    base, public = gateway
    stream_id = await public.create("mock?refusal=1&rate=0")
    tailed = await run_admin(base, "tail", stream_id)
    assert tailed.returncode == 0, tailed.stderr
    (sent,) = await mock_choices(stack, stream_id)
    assert tailed.stdout == f"[refusal] {sent['refusal']}\n[done: stop]\n"


async def test_show_prints_the_completion_and_the_answers_parts(
    stack: Stack, gateway: tuple[str, Public]
) -> None:
    base, public = gateway
    model = "mock?tokens=5&text=1&reasoning=6&tools=2&rate=0"
    stream_id = await public.create(model)
    status = await public.wait_for(stream_id, "completed")
    shown = await run_admin(base, "show", stream_id)
    assert shown.returncode == 0, shown.stderr
    (sent,) = await mock_choices(stack, stream_id)

    fields = fields_of(shown.stdout)
    completion = status["completion"]
    assert fields["completion id"] == completion["id"]
    assert fields["completion model"] == completion["model"] == model
    assert fields["fingerprint"] == completion["system_fingerprint"]
    assert fields["service tier"] == (completion.get("service_tier") or "-")
    assert fields["finish reason"] == "tool_calls"
    assert shown.stdout.endswith(
        f"\nreasoning\n{sent['reasoning']}\n"
        f"\ntext\n{sent['content']}\n"
        "\ntool calls\n"
        + "".join(
            f"{index}  {call['name']}({call['arguments']})  id {call['id']}\n"
            for index, call in enumerate(sent["tool_calls"])
        )
    )


async def create_response(public: Public, model: str) -> str:
    """A background Response (``POST /v1/responses``); its stream's id."""
    body = {"model": model, "input": "Weather?", "background": True}
    response = await public.http.post("/v1/responses", json=body, headers=public.auth)
    assert response.status_code == 200, response.text
    response_id: str = response.json()["id"]
    return response_id.removeprefix("resp_")  # tokenrelay's id: resp_ and the stream's


async def test_tail_and_show_a_responses_stream(stack: Stack, gateway: tuple[str, Public]) -> None:
    base, public = gateway
    stream_id = await create_response(public, "mock?tokens=5&text=1&reasoning=8&tools=2&rate=40")
    tailed = await run_admin(base, "tail", stream_id)  # ~1 s: followed live
    assert tailed.returncode == 0, tailed.stderr
    (sent,) = await mock_choices(stack, stream_id)
    assert len(sent["tool_calls"]) == 2 and sent["reasoning"] and sent["content"]
    first, second = sent["tool_calls"]

    def call(made: dict[str, Any]) -> str:
        return f"[tool call {made['name']} {made['id']}] {made['arguments']}\n"

    assert tailed.stdout == (
        "[response.created] [response.in_progress] [response.output_item.added reasoning]"
        " [response.reasoning_summary_part.added]\n"
        f"[reasoning] {sent['reasoning']}\n"
        "[response.reasoning_summary_text.done] [response.reasoning_summary_part.done]"
        " [response.output_item.done reasoning] [response.output_item.added message]"
        " [response.content_part.added output_text]\n"
        f"[text] {sent['content']}\n"
        "[response.output_text.done] [response.content_part.done output_text]"
        " [response.output_item.done message]\n"
        + call(first)
        + "[response.function_call_arguments.done] [response.output_item.done function_call]\n"
        + call(second)
        + "[response.function_call_arguments.done] [response.output_item.done function_call]"
        " [response.completed]\n"
        "[done: stop]\n"
    )
    assert tailed.stderr == ""

    status = await public.wait_for(stream_id, "completed")
    shown = await run_admin(base, "show", stream_id)
    assert shown.returncode == 0, shown.stderr
    fields = fields_of(shown.stdout)
    assert fields["completion id"] == status["completion"]["id"]
    assert (
        fields["events"] == f"{status['event_count']} ({status['event_count'] - 1} response events)"
    )
    assert shown.stdout.endswith(
        f"\nreasoning\n{sent['reasoning']}\n"
        f"\ntext\n{sent['content']}\n"
        "\ntool calls\n"
        + "".join(
            f"{index}  {made['name']}({made['arguments']})  id {made['id']}\n"
            for index, made in enumerate(sent["tool_calls"])
        )
    )


# --- durable streams (/v1/ds) ----------------------------------------------------------------

DURABLE_SUMMARY: dict[str, Any] = {
    **SUMMARY,
    "id": "Dd0cDe1fGh2iJk3lMn4oPq",
    "status": "open",
    "model": "",
    "upstream": None,
    "started_at": None,
    "event_count": 3,
    "token_events": 3,
    "readers": 0,
    "durable": {
        "path": "chat/42",
        "url": "/v1/ds/chat/42",
        "content_type": "application/json",
        "closed": False,
        "deleted": False,
    },
}
DURABLE_DETAIL: dict[str, Any] = {
    **DURABLE_SUMMARY,
    "readers": [],
    "worker": None,
    "attempts": 0,
    "bytes": 4096,
    "first_token_at": None,
    "time_to_first_token_s": None,
    "tokens_per_s": None,
    "durable": {
        **DURABLE_SUMMARY["durable"],
        "ttl_s": 600,
        "expires_at": None,
        "expires_in_s": 599.5,
        "next_offset": "0001795690795012_0000000000000002",
        "stream_seq": None,
        "fork": {
            "source": "chat/41",
            "offset": "0001795690795012_0000000000000000",
            "sub_offset": 0,
        },
        "forks": ["chat/43"],
        "producer_count": 2,
        "producers": [{"id": "w1", "epoch": 0, "seq": 4}, {"id": "w2", "epoch": 1, "seq": 0}],
    },
}
MESSAGES: list[dict[str, Any]] = [
    {
        "offset": "1795690795012-0",
        "type": "message",
        "ds_offset": "0001795690795012_0000000000000000",
        "size": 9,
        "encoding": "json",
        "data": {"a": [1]},
    },
    {
        "offset": "1795690795012-1",
        "type": "message",
        "ds_offset": "0001795690795012_0000000000000001",
        "size": 6,
        "encoding": "text",
        "data": "two\nl",
    },
    {
        "offset": "1795690795012-2",
        "type": "message",
        "ds_offset": "0001795690795012_0000000000000002",
        "size": 3,
        "encoding": "base64",
        "data": "//4A",
    },
]


def test_ls_shows_a_durable_streams_url_and_closure() -> None:
    closed = {
        **DURABLE_SUMMARY,
        "id": "Cc0cDe1fGh2iJk3lMn4oPq",
        "status": "completed",
        "durable": {**DURABLE_SUMMARY["durable"], "closed": True},
    }
    page = {"streams": [closed, DURABLE_SUMMARY], "next_cursor": None}
    code, out, err = admin(answer({"GET /admin/api/streams": page}), "ls")
    assert (code, err) == (0, "")
    assert row_of(out, closed["id"]) == [
        closed["id"],
        "completed",
        "/v1/ds/chat/42",
        "3m",
        "3",
        "0",
        "closed",
    ]
    assert row_of(out, DURABLE_SUMMARY["id"])[1:3] == ["open", "/v1/ds/chat/42"]
    assert row_of(out, DURABLE_SUMMARY["id"])[-1] == ""


def test_show_a_durable_stream_prints_its_fields_and_messages_page_by_page() -> None:
    pages: list[str | None] = []

    def page(request: httpx2.Request) -> httpx2.Response:
        # pages cut short by the messages' byte cap: only an empty page ends the reading
        after = request.url.params.get("after")
        pages.append(after)
        rest = [m for m in MESSAGES if after is None or m["offset"] > after]
        return httpx2.Response(200, json={"events": rest[:1]})

    route = f"GET /admin/api/streams/{DURABLE_SUMMARY['id']}"
    handler = answer({route: DURABLE_DETAIL, f"{route}/events": page})
    code, out, err = admin(handler, "show", str(DURABLE_SUMMARY["id"]))
    assert (code, err) == (0, "")
    assert pages == [None, *(m["offset"] for m in MESSAGES)]
    fields = fields_of(out)
    assert fields["status"] == "open"
    assert fields["kind"] == "durable stream"
    assert fields["path"] == "chat/42"
    assert fields["url"] == "/v1/ds/chat/42"
    assert fields["content type"] == "application/json"
    assert fields["created"].endswith("(3m ago)")
    assert fields["closed"] == "-"
    assert fields["expires"] == "in 600 s, sliding TTL 600 s"
    assert fields["messages"] == "3 (1 base64, 1 json, 1 text)"
    assert fields["next offset"] == "0001795690795012_0000000000000002"
    assert fields["bytes"] == "4.0 KiB (4096 B)"
    assert fields["forked from"] == "chat/41 at 0001795690795012_0000000000000000"
    assert fields["forks"] == "chat/43"
    assert fields["producers"] == "w1 (epoch 0, seq 4), w2 (epoch 1, seq 0)"
    assert fields["stream seq"] == "-"
    assert "model" not in fields and "worker" not in fields
    assert out.endswith(
        "no readers\n"
        "\n"
        "messages\n"
        '1795690795012-0  {"a":[1]}\n'
        '1795690795012-1  "two\\nl"\n'
        "1795690795012-2  base64://4A (3 bytes)\n"
    )


def test_tail_of_a_durable_stream_prints_its_messages_until_closed() -> None:
    fields = [{k: v for k, v in m.items() if k not in ("offset", "type")} for m in MESSAGES]
    text_body = "".join(
        f"id: {m['offset']}\nevent: message\ndata: {json.dumps(data)}\n\n"
        for m, data in zip(MESSAGES, fields, strict=True)
    )
    closed = 'event: closed\ndata: {"offset":"1795690795012-2","ds_offset":"x"}\n\n'
    tail = httpx2.Response(
        200,
        text="retry: 1000\n\n" + text_body + closed,
        headers={"content-type": "text/event-stream"},
    )
    routes = {"GET /admin/api/streams/d/tail": lambda _: tail}
    code, out, err = admin(answer(routes), "tail", "d")
    assert (code, err) == (0, "")
    # a JSON value or bytes on a line of their own; text as it comes ("[text]" after another part)
    assert out == '{"a":[1]}\n[text] two\nl\nbase64://4A (3 bytes)\n[closed]\n'


async def test_ls_show_and_tail_a_real_durable_stream(gateway: tuple[str, Public]) -> None:
    base, public = gateway
    headers = {**public.auth, "Content-Type": "text/plain"}
    created = await public.http.put("/v1/ds/cli/text", content=b"Hello", headers=headers)
    assert created.status_code == 201, created.text
    stream_id = created.headers["X-TokenRelay-Stream-Id"]

    tailing = asyncio.create_task(run_admin(base, "tail", stream_id, "--after", "-1"))
    await asyncio.sleep(1.5)
    await public.http.post("/v1/ds/cli/text", content=", world", headers=headers)
    await public.http.post("/v1/ds/cli/text", headers={**public.auth, "Stream-Closed": "true"})
    tailed = await tailing
    assert (tailed.returncode, tailed.stdout, tailed.stderr) == (0, "Hello, world\n[closed]\n", "")

    listed = await run_admin(base, "ls")
    assert row_of(listed.stdout, stream_id)[:3] == [stream_id, "completed", "/v1/ds/cli/text"]
    assert row_of(listed.stdout, stream_id)[-1] == "closed"
    shown = await run_admin(base, "show", stream_id)
    assert shown.returncode == 0, shown.stderr
    fields = fields_of(shown.stdout)
    assert (fields["status"], fields["path"], fields["content type"]) == (
        "completed",
        "cli/text",
        "text/plain",
    )
    assert fields["messages"] == "2 (2 text)"
    lines = shown.stdout.splitlines()
    assert lines[-3] == "messages"
    assert lines[-2].endswith('  "Hello"') and lines[-1].endswith('  ", world"')
    cancelled = await run_admin(base, "cancel", stream_id)
    assert cancelled.returncode == 1
    assert cancelled.stderr.startswith("error: conflict: a durable stream is not cancelled")
    purged = await run_admin(base, "purge", "--yes", stream_id)
    assert purged.stdout == f"{stream_id}: purged 2 keys\n"
