"""``tokenrelay admin ls | show | tail | cancel | purge | stats``: the admin API from a terminal.

``AdminClient`` makes the HTTP calls (docs/ADMIN.md); the ``*_view`` functions turn their
answers into rich renderables and ``TailPrinter`` a stream's events into readable lines;
``main`` wires them to the command line. Exit statuses: 0 success, 1 a refused request, an
unreachable gateway or a stream that ended in error, 2 a usage error (no admin token,
``purge`` without ``--yes`` and no terminal to ask on).

A durable stream (``/v1/ds``) is listed with its URL in the model column, shown with its own
fields (path, content type, expiry, fork, producers) and its messages, and tailed message by
message until it is closed (the tail's ``closed`` event).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TextIO

import httpx2
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from shared.client import AnswerSoFar, ClientEvent, GatewayError, gateway_error
from shared.completion import CompletionSoFar

STATUS_STYLES = {
    "open": "blue",
    "running": "cyan",
    "queued": "yellow",
    "completed": "green",
    "failed": "red",
    "cancelled": "magenta",
}


class AdminClient:
    """A synchronous client for ``/admin/api/``, authorised by the admin token.

    Every call returns the decoded JSON answer or raises ``GatewayError`` (a non-2xx answer)
    or ``httpx2.TransportError`` (the gateway could not be reached).
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout_s: float = 30,
        tail_attempts: int = 5,
        http: httpx2.Client | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._tail_attempts = tail_attempts
        self._owns_http = http is None
        # reads of a live tail wait between keep-alive pings (15 s by default)
        self._http = http or httpx2.Client(timeout=httpx2.Timeout(timeout_s, read=4 * timeout_s))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP client, unless it was passed in."""
        if self._owns_http:
            self._http.close()

    def streams(
        self, *, status: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> dict[str, Any]:
        """One page: ``{"streams": [summaries, newest first], "next_cursor": str | None}``."""
        params: dict[str, str | int] = {}
        if status is not None:
            params["status"] = status
        if limit is not None:
            params["limit"] = limit
        if cursor is not None:
            params["cursor"] = cursor
        return self._call("GET", "/streams", params=params)

    def all_streams(
        self, *, status: str | None = None, limit: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every summary, newest first, following ``next_cursor`` page by page."""
        cursor: str | None = None
        while True:
            page = self.streams(status=status, limit=limit, cursor=cursor)
            yield from page["streams"]
            cursor = page.get("next_cursor")
            if cursor is None:
                return

    def stream(self, stream_id: str) -> dict[str, Any]:
        """The stream detail: the summary plus its readers, worker, attempts, bytes, timings."""
        return self._call("GET", f"/streams/{stream_id}")

    def cancel(self, stream_id: str) -> dict[str, Any]:
        """Stop the generation; the status object."""
        return self._call("POST", f"/streams/{stream_id}/cancel")

    def purge(self, stream_id: str) -> dict[str, Any]:
        """Delete every key of the stream: ``{"id", "purged_keys"}``."""
        return self._call("DELETE", f"/streams/{stream_id}")

    def system(self) -> dict[str, Any]:
        """Queue, workers, gateways and Redis."""
        return self._call("GET", "/system")

    def events(
        self, stream_id: str, *, after: str | None = None, count: int | None = None
    ) -> list[ClientEvent]:
        """Up to ``count`` stored events after ``after`` (from the start without it)."""
        params: dict[str, str | int] = {}
        if after is not None:
            params["after"] = after
        if count is not None:
            params["count"] = count
        answer = self._call("GET", f"/streams/{stream_id}/events", params=params)
        events: list[ClientEvent] = []
        for item in answer.get("events") or []:
            data = dict(item)  # a response event's own type has replaced "response"
            events.append(ClientEvent.of(str(data.pop("offset")), str(data.pop("type")), data))
        return events

    def all_events(self, stream_id: str, *, page: int = 1000) -> Iterator[ClientEvent]:
        """Every event stored now, page by page (a running stream: those appended so far)."""
        after: str | None = None
        while True:
            events = self.events(stream_id, after=after, count=page)
            yield from events
            if not events or events[-1].is_terminal:
                return
            # a durable stream's page may stop short of ``page`` (its messages' bytes are
            # capped): only an empty page is its end
            if len(events) < page and events[-1].type != MESSAGE:
                return
            after = events[-1].offset

    def tail(self, stream_id: str, *, after: str | None = None) -> Iterator[ClientEvent]:
        """The stream's events after ``after`` as they are appended, up to the terminal one
        (a durable stream's: up to its ``closed`` event).

        A broken connection is resumed from the last event received (``Last-Event-ID``),
        up to ``tail_attempts`` times in a row; an answer of 204 (the stream had already
        ended at ``after``) ends the iteration.
        """
        url = self._url(f"/streams/{stream_id}/tail")
        params = {} if after is None else {"after": after}
        last_id: str | None = None
        failures = 0
        while True:
            headers = dict(self._headers)
            if last_id is not None:
                headers["Last-Event-ID"] = last_id
            try:
                with self._http.stream("GET", url, params=params, headers=headers) as response:
                    if response.status_code == 204:
                        return
                    if not response.is_success:
                        response.read()
                        raise gateway_error(response)
                    for sse in httpx2.EventSource(response):
                        if not sse.data:
                            continue  # a lone ``retry:`` field
                        event = ClientEvent.of(sse.id, sse.event, _object(sse.data, response))
                        last_id, failures = sse.id, 0
                        yield event
                        if ends(event):
                            return
                raise httpx2.RemoteProtocolError("the tail ended before the terminal event")
            except (httpx2.TransportError, GatewayError) as error:
                if isinstance(error, GatewayError) and not error.retryable:
                    raise
                failures += 1
                if failures > self._tail_attempts:
                    raise
                retry_after = error.retry_after_s if isinstance(error, GatewayError) else None
                time.sleep(max(retry_after or 0.0, min(5.0, 0.25 * 2.0 ** (failures - 1))))

    def _url(self, path: str) -> str:
        return f"{self.base_url}/admin/api{path}"

    def _call(
        self, method: str, path: str, *, params: dict[str, str | int] | None = None
    ) -> dict[str, Any]:
        response = self._http.request(method, self._url(path), params=params, headers=self._headers)
        if not response.is_success:
            raise gateway_error(response)
        return _object(response.text, response)


MESSAGE = "message"
"""The type of a durable stream's events (its messages)."""
CLOSED = "closed"
"""The admin tail's last event for a durable stream that was closed."""


def ends(event: ClientEvent) -> bool:
    """Whether nothing follows ``event`` in a tail: a terminal event, or a durable stream's
    closure."""
    return event.is_terminal or event.type == CLOSED


def _object(text: str, response: httpx2.Response) -> dict[str, Any]:
    """``text`` as a JSON object; ``GatewayError`` if it is not one (not a gateway?)."""
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        message = f"{response.url} answered {text[:80]!r}, not a JSON object"
        raise GatewayError("invalid_response", message, response.status_code)
    return value


# --- formatting ------------------------------------------------------------------------------


def age(seconds: float) -> str:
    """A short age: ``12s``, ``3m``, ``5h``, ``2d`` (whole units, rounded down)."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _clock(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _moment(timestamp: float | None, *, now: float, since: float | None = None) -> str:
    """A wall-clock time, with its age (or, given ``since``, how long after ``since`` it was)."""
    if timestamp is None:
        return "-"
    if since is None:
        return f"{_clock(timestamp)} ({age(now - timestamp)} ago)"
    return f"{_clock(timestamp)} (+{timestamp - since:.2f} s)"


def _bytes(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit} ({size} B)"
        value /= 1024
    raise AssertionError("unreachable")


def _status(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def _durable(stream: dict[str, Any]) -> dict[str, Any]:
    """A durable stream's own fields (empty for a generation)."""
    durable = stream.get("durable")
    return durable if isinstance(durable, dict) else {}


def outcome(stream: dict[str, Any]) -> str:
    """How the stream ended: its error code if it failed, else its finish reason; a durable
    stream's ``closed``, or ``deleted`` for a tombstone (kept while forks of it live)."""
    durable = _durable(stream)
    if durable:
        return "deleted" if durable.get("deleted") else "closed" if durable.get("closed") else ""
    error = stream.get("error")
    if isinstance(error, dict) and error.get("code"):
        return str(error["code"])
    return str(stream.get("finish_reason") or "")


def _error(error: object) -> str:
    if isinstance(error, dict):
        return f"{error.get('code', '?')}: {error.get('message', '')}"
    return "-" if error is None else str(error)


def _usage(usage: object) -> str:
    """``prompt_tokens 5, completion_tokens 12, completion_tokens_details (reasoning_tokens 4)``"""
    if isinstance(usage, dict) and usage:
        return ", ".join(
            f"{name} ({_usage(value)})" if isinstance(value, dict) else f"{name} {value}"
            for name, value in usage.items()
        )
    return "-"


def _or_dash(value: object, fmt: str = "{}") -> str:
    return "-" if value is None else fmt.format(value)


def _id_column(table: Table, header: str, ids: list[str]) -> None:
    # ids are the only handle on a stream: print them whole, never "…"-truncated
    width = max((len(i) for i in ids), default=len(header))
    table.add_column(header, no_wrap=True, min_width=width, overflow="fold")


# --- views -----------------------------------------------------------------------------------


def streams_view(
    streams: list[dict[str, Any]], *, now: float, more: bool = False
) -> RenderableType:
    """``ls``: one row per stream summary, in the order given (newest first)."""
    if not streams:
        return Text("no streams" + (" on this page (more: --all)" if more else ""))
    table = Table(caption="more streams: --all" if more else None, caption_justify="left")
    _id_column(table, "id", [str(s["id"]) for s in streams])
    table.add_column("status", no_wrap=True)
    table.add_column("model", overflow="fold")
    table.add_column("age", justify="right", no_wrap=True)
    table.add_column("tokens", justify="right", no_wrap=True)
    table.add_column("readers", justify="right", no_wrap=True)
    table.add_column("outcome", overflow="fold")
    for stream in streams:
        table.add_row(
            str(stream["id"]),
            _status(str(stream["status"])),
            str(_durable(stream).get("url") or stream.get("model", "")),
            age(now - float(stream["created_at"])),
            str(stream.get("token_events", "")),
            str(stream.get("readers", "")),
            outcome(stream),
        )
    return table


def _completion_rows(completion: object) -> list[tuple[str, str | Text]]:
    """The upstream's chunk-level fields (the status's ``completion``)."""
    if not isinstance(completion, dict):
        return [("completion", "-")]
    created = completion.get("created", completion.get("created_at"))  # chat, Responses
    return [
        ("completion id", _or_dash(completion.get("id"))),
        ("completion model", _or_dash(completion.get("model"))),
        (
            "completion created",
            _clock(created) if isinstance(created, int | float) else _or_dash(created),
        ),
        ("fingerprint", _or_dash(completion.get("system_fingerprint"))),
        ("service tier", _or_dash(completion.get("service_tier"))),
    ]


def _events_row(detail: dict[str, Any], counts: dict[str, int] | None) -> str:
    total = detail.get("event_count", 0)
    if counts is None:
        return f"{total} ({detail.get('token_events', 0)} tokens)"
    tokens, deltas, responses = (counts.get(kind, 0) for kind in ("token", "delta", "response"))
    parts = [_count(tokens, "token")] if tokens or not responses else []
    if deltas:
        parts.append(_count(deltas, "delta"))
    if responses:
        parts.append(_count(responses, "response event"))
    return f"{total} ({', '.join(parts)})"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def stream_view(
    detail: dict[str, Any], *, now: float, counts: dict[str, int] | None = None
) -> RenderableType:
    """``show``: the stream detail as a panel of fields, then its readers. ``counts``: the
    stream's events by type, when they were read (a durable stream's messages: by
    encoding)."""
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold", no_wrap=True)
    fields.add_column(overflow="fold")
    if _durable(detail):
        for name, value in durable_rows(detail, now=now, counts=counts):
            fields.add_row(name, value)
        return _with_readers(fields, detail, now=now)
    created = float(detail["created_at"])
    started = detail.get("started_at")
    finished = detail.get("finished_at")
    rows: list[tuple[str, str | Text]] = [
        ("id", str(detail["id"])),
        ("status", _status(str(detail["status"]))),
        ("model", str(detail.get("model") or "-")),
        ("upstream", _or_dash(detail.get("upstream"))),
        ("worker", _or_dash(detail.get("worker"))),
        ("attempts", _or_dash(detail.get("attempts"))),
        ("created", _moment(created, now=now)),
        ("started", _moment(started, now=now, since=created)),
        ("finished", _moment(finished, now=now, since=created)),
        ("first token", _or_dash(detail.get("time_to_first_token_s"), "after {:.3f} s")),
        ("tokens/s", _or_dash(detail.get("tokens_per_s"), "{:.1f}")),
        ("events", _events_row(detail, counts)),
        ("last offset", _or_dash(detail.get("last_offset"))),
        ("bytes", _bytes(detail.get("bytes"))),
        ("finish reason", _or_dash(detail.get("finish_reason"))),
        ("usage", _usage(detail.get("usage"))),
        ("error", _error(detail.get("error"))),
        *_completion_rows(detail.get("completion")),
    ]
    metadata = detail.get("metadata")
    if metadata:
        rows.append(("metadata", ", ".join(f"{k}={v}" for k, v in metadata.items())))
    for name, value in rows:
        fields.add_row(name, value)
    return _with_readers(fields, detail, now=now)


def durable_rows(
    detail: dict[str, Any], *, now: float, counts: dict[str, int] | None
) -> list[tuple[str, str | Text]]:
    """``show`` of a durable stream: its own fields (``durable`` in its detail) besides the
    status's."""
    durable = _durable(detail)
    created = float(detail["created_at"])
    total = detail.get("event_count", 0)
    messages = str(total)
    if counts:
        messages += " (" + ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) + ")"
    expiry = _or_dash(durable.get("expires_in_s"), "in {:.0f} s")
    if durable.get("expires_at"):
        expiry = f"at {durable['expires_at']} ({expiry})"
    elif durable.get("ttl_s") is not None:
        expiry = f"{expiry}, sliding TTL {durable['ttl_s']} s"
    fork = durable.get("fork")
    forked = "-"
    if isinstance(fork, dict):
        forked = f"{fork.get('source')} at {fork.get('offset')}"
        if fork.get("sub_offset"):
            forked += f" + {fork['sub_offset']}"
    producers = durable.get("producers") or []
    producer_text = ", ".join(f"{p['id']} (epoch {p['epoch']}, seq {p['seq']})" for p in producers)
    more = int(durable.get("producer_count") or 0) - len(producers)
    if more > 0:
        producer_text += f" and {more} more"
    return [
        ("id", str(detail["id"])),
        ("status", _status(str(detail["status"]))),
        (
            "kind",
            "durable stream" + (" (deleted: forks of it live)" if durable.get("deleted") else ""),
        ),
        ("path", str(durable.get("path"))),
        ("url", str(durable.get("url"))),
        ("content type", _or_dash(durable.get("content_type"))),
        ("created", _moment(created, now=now)),
        ("closed", _moment(detail.get("finished_at"), now=now, since=created)),
        ("expires", expiry),
        ("messages", messages),
        ("next offset", _or_dash(durable.get("next_offset"))),
        ("last offset", _or_dash(detail.get("last_offset"))),
        ("bytes", _bytes(detail.get("bytes"))),
        ("forked from", forked),
        ("forks", ", ".join(durable.get("forks") or []) or "-"),
        ("producers", producer_text or "-"),
        ("stream seq", _or_dash(durable.get("stream_seq"))),
    ]


def message_text(data: dict[str, Any]) -> str:
    """A durable stream's message on one line: its JSON value compactly, its text as a JSON
    string (line breaks shown, not made), other bytes as ``base64:<...>``."""
    encoding, value = data.get("encoding"), data.get("data")
    if encoding == "base64":
        return f"base64:{value} ({data.get('size')} bytes)"
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _with_readers(fields: Table, detail: dict[str, Any], *, now: float) -> RenderableType:
    readers: list[dict[str, Any]] = detail.get("readers") or []
    if not readers:
        return Group(Panel(fields, title="stream", expand=False), Text("no readers"))
    table = Table(title="readers", title_justify="left")
    table.add_column("gateway", overflow="fold")
    _id_column(table, "offset", [str(r.get("offset") or "") for r in readers])
    table.add_column("lag", justify="right", no_wrap=True)
    table.add_column("since", no_wrap=True)
    for reader in readers:
        since = reader.get("since")
        table.add_row(
            str(reader.get("gateway", "")),
            str(reader.get("offset") or "-"),
            _or_dash(reader.get("lag")),
            "-" if since is None else f"{age(now - float(since))} ago",
        )
    return Group(Panel(fields, title="stream", expand=False), table)


def tool_call_text(call: dict[str, Any]) -> str:
    """``name(arguments)``, the arguments exactly as the model streamed them."""
    function = call.get("function") or {}
    return f"{function.get('name') or '?'}({function.get('arguments') or ''})"


def answer_view(answer: CompletionSoFar) -> list[Text]:
    """``show``: the answer's parts, each under its heading: every choice's reasoning, text,
    refusal and tool calls (their texts whole, to be printed without wrapping)."""
    parts: list[Text] = []

    def part(heading: str, *lines: str | Text) -> None:
        parts.extend((Text(), Text(heading, style="bold")))
        parts.extend(Text(line) if isinstance(line, str) else line for line in lines)

    several = any(index != 0 for index in answer.choices)
    for index, choice in sorted(answer.choices.items()):
        prefix = f"choice {index} " if several else ""
        if choice.reasoning:
            part(f"{prefix}reasoning", Text(choice.reasoning, style="dim"))
        if choice.text:
            part(f"{prefix}text", choice.text)
        if choice.refusal is not None:
            part(f"{prefix}refusal", Text(choice.refusal, style="red"))
        if choice.tool_calls:
            part(f"{prefix}tool calls", *(_tool_call_row(call) for call in choice.tool_calls))
        if index != 0 and choice.finish_reason:
            part(f"{prefix}finish reason", choice.finish_reason)
    return parts


def _tool_call_row(call: dict[str, Any]) -> str:
    row = f"{call.get('index', '?')}  {tool_call_text(call)}"
    return row + (f"  id {call['id']}" if call.get("id") else "")


def system_view(system: dict[str, Any]) -> RenderableType:
    """``stats``: the queue, the workers and gateways alive, Redis."""
    redis: dict[str, Any] = system.get("redis") or {}
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold", no_wrap=True)
    summary.add_column()
    summary.add_row("queue depth", str(system.get("queue_depth", "-")))
    summary.add_row("jobs in progress", str(system.get("jobs_in_progress", "-")))
    summary.add_row("redis version", str(redis.get("version", "-")))
    memory = redis.get("used_memory_human") or _bytes(redis.get("used_memory"))
    summary.add_row("redis memory", str(memory))

    workers = Table(title="workers", title_justify="left")
    workers.add_column("id", no_wrap=True, overflow="fold")
    workers.add_column("jobs", justify="right", no_wrap=True)
    workers.add_column("upstream", overflow="fold")
    workers.add_column("heartbeat", justify="right", no_wrap=True)
    for worker in system.get("workers") or []:
        workers.add_row(
            str(worker.get("id", "")),
            str(worker.get("jobs", "")),
            str(worker.get("upstream") or "-"),
            _heartbeat(worker.get("age_s")),
        )

    gateways = Table(title="gateways", title_justify="left")
    gateways.add_column("id", no_wrap=True, overflow="fold")
    gateways.add_column("readers", justify="right", no_wrap=True)
    gateways.add_column("heartbeat", justify="right", no_wrap=True)
    for gateway in system.get("gateways") or []:
        gateways.add_row(
            str(gateway.get("id", "")),
            str(gateway.get("readers", "")),
            _heartbeat(gateway.get("age_s")),
        )
    return Group(summary, Text(), workers, gateways)


def _heartbeat(age_s: object) -> str:
    return "-" if not isinstance(age_s, int | float) else f"{age_s:.1f}s ago"


# --- commands --------------------------------------------------------------------------------


class _Io:
    def __init__(self, out: TextIO, err: TextIO, stdin: TextIO) -> None:
        self.out, self.err, self.stdin = out, err, stdin
        self.console = Console(file=out, highlight=False)


def _ls(client: AdminClient, io: _Io, args: argparse.Namespace) -> int:
    if args.all:
        streams = list(client.all_streams(status=args.status, limit=args.limit or 500))
        more = False
    else:
        page = client.streams(status=args.status, limit=args.limit)
        streams, more = page["streams"], page.get("next_cursor") is not None
    io.console.print(streams_view(streams, now=time.time(), more=more))
    return 0


def _show(client: AdminClient, io: _Io, args: argparse.Namespace) -> int:
    detail = client.stream(args.id)
    if _durable(detail):
        return _show_durable(client, io, args.id, detail)
    answer = AnswerSoFar(detail.get("completion"))
    counts: dict[str, int] = {}
    for event in client.all_events(args.id):
        answer.add(event.type, event.data)
        counts[event.type] = counts.get(event.type, 0) + 1
    io.console.print(stream_view(detail, now=time.time(), counts=counts))
    for line in answer_view(answer):
        io.console.print(line, soft_wrap=True)
    return 0


def _show_durable(client: AdminClient, io: _Io, stream_id: str, detail: dict[str, Any]) -> int:
    """A durable stream's detail, then each of its messages on a line of its own."""
    lines: list[str] = []
    counts: dict[str, int] = {}
    for event in client.all_events(stream_id):
        encoding = str(event.data.get("encoding"))
        counts[encoding] = counts.get(encoding, 0) + 1
        lines.append(f"{event.offset}  {message_text(event.data)}")
    io.console.print(stream_view(detail, now=time.time(), counts=counts))
    if lines:
        io.console.print()
        io.console.print(Text("messages", style="bold"))
    for line in lines:
        io.console.print(Text(line), soft_wrap=True)
    return 0


_REASONING_KEYS = ("reasoning_content", "reasoning")
_RESPONSE_TEXTS = {
    "response.output_text.delta": "text",
    "response.reasoning_text.delta": "reasoning",
    "response.reasoning_summary_text.delta": "reasoning",
    "response.refusal.delta": "refusal",
}
"""The Responses API events whose ``delta`` is a text, and the part it belongs to."""
_RESPONSE_ENDS = frozenset({"response.completed", "response.incomplete", "response.failed"})
_SHOWN_FIELDS = frozenset(
    {"choice", "role", "content", "reasoning_content", "reasoning", "refusal"}
    | {"tool_calls", "logprobs", "finish_reason"}
)
"""The fields of a ``delta`` that ``tail`` shows in their own way (or leaves out)."""


class TailPrinter:
    """``tail``: a stream's events as readable text, as they come.

    Choice 0's text is printed as it is; every other part is marked where it starts:
    ``[reasoning]``, ``[refusal]``, ``[tool call 0: get_weather id call_1]`` (then its
    argument fragments), ``[text]`` when choice 0's text resumes after another part, a
    ``choice n`` in the mark for choices other than 0, ``[choice n finish: stop]``, and any
    other field as ``[name: json]``. Left out: the role ``assistant`` and logprobs. The
    terminal event ends it: ``[done: stop]`` or ``[error: code: message]``.

    A Responses stream reads the same way: its output text unmarked (``[text]`` after another
    part), ``[reasoning]`` (summary or text), ``[refusal]``, ``[tool call name call_id]`` then
    the call's argument fragments, the fragments of other ``*.delta`` events after their
    ``[type]``; every other event compactly by its ``[type]`` (with the item's or part's type,
    or why the response ended), one after another on a line of their own.

    Marks are coloured, and reasoning dimmed, when ``color``.
    """

    def __init__(self, out: TextIO, *, color: bool = False) -> None:
        self.out = out
        self.color = color
        self._at_line_start = True
        self._part: tuple[int, str] | None = (0, "text")  # where the output starts
        self._in_notes = False  # the line holds a Responses stream's [type] notes
        self._calls: dict[tuple[str, object], str] = {}  # a Responses stream's calls' labels

    def add(self, event: ClientEvent) -> None:
        data = event.data
        if event.type == "token":
            self._text(0, "text", event.text)
        elif event.type == "delta":
            self._delta(event.choice or 0, data)
        elif event.type == "done":
            self._mark(f"done: {data.get('finish_reason')}")
        elif event.type == "error":
            self._mark(f"error: {data.get('code')}: {data.get('message')}")
        elif event.type == "response":
            self._response(data)
        elif event.type == MESSAGE:
            self._message(data)
        elif event.type == CLOSED:
            self._mark("closed")
        else:
            self._mark(f"{event.type}: {json.dumps(data, ensure_ascii=False)}")

    def _message(self, data: dict[str, Any]) -> None:
        """A durable stream's message: a text stream's text as it is (its messages make its
        text), any other message on a line of its own."""
        if data.get("encoding") == "text" and isinstance(data.get("data"), str):
            self._text(0, "text", data["data"])
            return
        self._end_line()
        self._write(message_text(data) + "\n")
        self._part = None
        self._in_notes = False

    def _response(self, data: dict[str, Any]) -> None:
        """A Responses API event: its text deltas as text, its function calls as tool calls,
        the others as notes of their type."""
        kind = str(data.get("type") or "response")
        delta = data.get("delta")
        item = data.get("item")
        part = _RESPONSE_TEXTS.get(kind)
        if part is not None and isinstance(delta, str):
            self._text(0, part, delta)
        elif kind == "response.output_item.added" and _function_call(item):
            assert isinstance(item, dict)
            label = self._call_label(data, item)
            self._part = None  # the call's mark, even before its first fragment
            self._text(0, label, str(item.get("arguments") or ""), label=label, force=True)
        elif kind == "response.function_call_arguments.delta" and isinstance(delta, str):
            label = self._call_label(data, None)
            self._text(0, label, delta, label=label)
        elif isinstance(delta, str):  # another kind's fragments: code, audio transcript...
            self._text(0, kind, delta)
        else:
            self._note(_response_note(kind, data))

    def _call_label(self, data: dict[str, Any], item: dict[str, Any] | None) -> str:
        """``tool call <name> <call_id>`` of the event's call (by ``item_id``, else by
        ``output_index``: some upstreams give every event a new id)."""
        item_id = item.get("id") if item is not None else data.get("item_id")
        keys = [("item", item_id), ("output", data.get("output_index"))]
        for key in keys:
            if key[1] is not None and key in self._calls:
                return self._calls[key]
        if item is None:  # its item was added before the tail began
            label = f"tool call ? {item_id or ''}".rstrip()
        else:
            label = f"tool call {item.get('name') or '?'} {item.get('call_id') or ''}".rstrip()
        for key in keys:
            if key[1] is not None:
                self._calls[key] = label
        return label

    def _delta(self, choice: int, data: dict[str, Any]) -> None:
        prefix = "" if choice == 0 else f"choice {choice} "
        for key in _REASONING_KEYS:
            if isinstance(data.get(key), str):
                self._text(choice, "reasoning", data[key])
        if isinstance(data.get("content"), str):
            self._text(choice, "text", data["content"])
        if isinstance(data.get("refusal"), str):
            self._text(choice, "refusal", data["refusal"])
        for fragment in data.get("tool_calls") or ():
            self._tool_call(choice, fragment)
        role = data.get("role")
        if role is not None and role != "assistant":
            self._mark(f"{prefix}role: {role}")
        for key, value in data.items():
            if key not in _SHOWN_FIELDS and value is not None:
                self._mark(f"{prefix}{key}: {json.dumps(value, ensure_ascii=False)}")
        if data.get("finish_reason") is not None:
            self._mark(f"{prefix}finish: {data['finish_reason']}")

    def _tool_call(self, choice: int, fragment: object) -> None:
        if not isinstance(fragment, dict):
            self._mark(f"tool call: {json.dumps(fragment, ensure_ascii=False)}")
            return
        index = fragment.get("index")
        function = fragment.get("function")
        function = function if isinstance(function, dict) else {}
        label = f"{'' if choice == 0 else f'choice {choice} '}tool call {index}"
        name, call_id = function.get("name"), fragment.get("id")
        if name or call_id:  # a call's first fragment
            label += f": {name or '?'}" + (f" id {call_id}" if call_id else "")
            self._part = None
        arguments = function.get("arguments")
        self._text(choice, f"tool call {index}", arguments or "", label=label, force=True)

    def _text(
        self, choice: int, kind: str, text: str, *, label: str | None = None, force: bool = False
    ) -> None:
        if not text and not force:
            return
        if self._part != (choice, kind) or (self._in_notes and kind != "text"):
            if label is None:
                label = kind if choice == 0 else f"choice {choice} {kind}"
            self._end_line()
            self._write(self._style(f"[{label}]", "\x1b[36m") + " ")
            self._part = (choice, kind)
        elif self._in_notes:  # the text goes on below the notes, unmarked
            self._end_line()
        self._in_notes = False
        style = {"reasoning": "\x1b[2m", "refusal": "\x1b[31m"}.get(kind)
        self._write(self._style(text, style) if style and text else text)

    def _mark(self, mark: str) -> None:
        self._end_line()
        self._write(self._style(f"[{mark}]", "\x1b[36m") + "\n")
        self._part = None
        self._in_notes = False

    def _note(self, note: str) -> None:
        """A mark that shares its line with the notes before it."""
        if self._in_notes:
            self._write(" ")
        else:
            self._end_line()
        self._write(self._style(f"[{note}]", "\x1b[36m"))
        self._in_notes = True

    def _style(self, text: str, style: str | None) -> str:
        return f"{style}{text}\x1b[0m" if self.color and style else text

    def _end_line(self) -> None:
        if not self._at_line_start:
            self._write("\n")

    def _write(self, text: str) -> None:
        if text:
            self.out.write(text)
            self.out.flush()
            self._at_line_start = text.endswith("\n")


def _function_call(item: object) -> bool:
    return isinstance(item, dict) and item.get("type") == "function_call"


def _response_note(kind: str, data: dict[str, Any]) -> str:
    """A Responses event in a few words: its type, with the type of the item or content part
    it carries, or how the response ended."""
    item, part, response = data.get("item"), data.get("part"), data.get("response")
    if isinstance(item, dict) and item.get("type"):
        return f"{kind} {item['type']}"
    if kind.startswith("response.content_part.") and isinstance(part, dict) and part.get("type"):
        return f"{kind} {part['type']}"  # output_text, refusal, reasoning_text
    if kind == "error":  # the upstream's own error event (its error object maybe nested)
        error = data.get("error") if isinstance(data.get("error"), dict) else data
        assert isinstance(error, dict)
        return f"error event: {error.get('code') or error.get('type')}: {error.get('message')}"
    if kind in _RESPONSE_ENDS and isinstance(response, dict):
        details, error = response.get("incomplete_details"), response.get("error")
        if isinstance(details, dict) and details.get("reason"):
            return f"{kind}: {details['reason']}"
        if isinstance(error, dict):
            return f"{kind}: {error.get('code')}: {error.get('message')}"
    return kind


def _tail(client: AdminClient, io: _Io, args: argparse.Namespace) -> int:
    printer = TailPrinter(io.out, color=io.out.isatty() and not os.environ.get("NO_COLOR"))
    for event in client.tail(args.id, after=args.after):
        printer.add(event)
        if ends(event):
            return 1 if event.type == "error" else 0
    print(f"the stream had already ended at {args.after}", file=io.err)
    return 0


def _cancel(client: AdminClient, io: _Io, args: argparse.Namespace) -> int:
    status = client.cancel(args.id)
    io.console.print(Text.assemble(f"{status['id']}: ", _status(str(status["status"]))))
    return 0


def _purge(client: AdminClient, io: _Io, args: argparse.Namespace) -> int:
    if not args.yes:
        if not io.stdin.isatty():
            print("error: purge deletes the stream for good: pass --yes", file=io.err)
            return 2
        io.err.write(f"purge stream {args.id} and every key of it? [y/N] ")
        io.err.flush()
        if io.stdin.readline().strip().lower() not in ("y", "yes"):
            print("not purged", file=io.err)
            return 1
    purged = client.purge(args.id)
    io.console.print(f"{purged['id']}: purged {purged['purged_keys']} keys")
    return 0


def _stats(client: AdminClient, io: _Io, args: argparse.Namespace) -> int:
    io.console.print(system_view(client.system()))
    return 0


COMMANDS: dict[str, Callable[[AdminClient, _Io, argparse.Namespace], int]] = {
    "ls": _ls,
    "show": _show,
    "tail": _tail,
    "cancel": _cancel,
    "purge": _purge,
    "stats": _stats,
}


def main(
    args: argparse.Namespace,
    *,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    stdin: TextIO = sys.stdin,
    http: httpx2.Client | None = None,
) -> int:
    """Run ``args.admin_command`` (parsed by ``tokenrelay.cli``); the exit status."""
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # a line per request otherwise
    token: str | None = args.token
    if not token:
        print("error: no admin token: set TOKENRELAY_ADMIN_TOKEN (or pass --token)", file=err)
        return 2
    url: str = args.url
    with AdminClient(url, token, http=http) as client:
        try:
            return COMMANDS[args.admin_command](client, _Io(out, err, stdin), args)
        except GatewayError as error:
            print(f"error: {error.code}: {error.message}", file=err)
        except httpx2.TransportError as error:
            detail = str(error)
            print(f"error: cannot reach {url}" + (f" ({detail})" if detail else ""), file=err)
        return 1
