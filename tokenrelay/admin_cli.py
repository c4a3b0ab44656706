"""``tokenrelay admin ls | show | tail | cancel | purge | stats``: the admin API from a terminal.

``AdminClient`` makes the HTTP calls (docs/ADMIN.md); the ``*_view`` functions turn their
answers into rich renderables; ``main`` wires the two to the command line. Exit statuses:
0 success, 1 a refused request, an unreachable gateway or a stream that ended in error,
2 a usage error (no admin token, ``purge`` without ``--yes`` and no terminal to ask on).
"""

from __future__ import annotations

import argparse
import json
import logging
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

from shared.client import ClientEvent, GatewayError, gateway_error

STATUS_STYLES = {
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

    def tail(self, stream_id: str, *, after: str | None = None) -> Iterator[ClientEvent]:
        """The stream's events after ``after`` as they are appended, up to the terminal one.

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
                        event = ClientEvent(sse.id, sse.event, _object(sse.data, response))
                        last_id, failures = sse.id, 0
                        yield event
                        if event.is_terminal:
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


def outcome(stream: dict[str, Any]) -> str:
    """How the stream ended: its error code if it failed, else its finish reason."""
    error = stream.get("error")
    if isinstance(error, dict) and error.get("code"):
        return str(error["code"])
    return str(stream.get("finish_reason") or "")


def _error(error: object) -> str:
    if isinstance(error, dict):
        return f"{error.get('code', '?')}: {error.get('message', '')}"
    return "-" if error is None else str(error)


def _usage(usage: object) -> str:
    if isinstance(usage, dict) and usage:
        return ", ".join(f"{name} {value}" for name, value in usage.items())
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
            str(stream.get("model", "")),
            age(now - float(stream["created_at"])),
            str(stream.get("token_events", "")),
            str(stream.get("readers", "")),
            outcome(stream),
        )
    return table


def stream_view(detail: dict[str, Any], *, now: float) -> RenderableType:
    """``show``: the stream detail as a panel of fields, then its readers."""
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold", no_wrap=True)
    fields.add_column(overflow="fold")
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
        ("events", f"{detail.get('event_count', 0)} ({detail.get('token_events', 0)} tokens)"),
        ("last offset", _or_dash(detail.get("last_offset"))),
        ("bytes", _bytes(detail.get("bytes"))),
        ("finish reason", _or_dash(detail.get("finish_reason"))),
        ("usage", _usage(detail.get("usage"))),
        ("error", _error(detail.get("error"))),
    ]
    metadata = detail.get("metadata")
    if metadata:
        rows.append(("metadata", ", ".join(f"{k}={v}" for k, v in metadata.items())))
    for name, value in rows:
        fields.add_row(name, value)

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
    io.console.print(stream_view(client.stream(args.id), now=time.time()))
    return 0


def _tail(client: AdminClient, io: _Io, args: argparse.Namespace) -> int:
    out = io.out
    for event in client.tail(args.id, after=args.after):
        if event.type == "token":
            out.write(event.text)
            out.flush()
        elif event.type == "done":
            out.write(f"\n[done: {event.data.get('finish_reason')}]\n")
            out.flush()
            return 0
        elif event.type == "error":
            out.write(f"\n[error: {event.data.get('code')}: {event.data.get('message')}]\n")
            out.flush()
            return 1
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
