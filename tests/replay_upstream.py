"""An OpenAI-compatible upstream that replays recorded streams byte for byte.

Two endpoints, each with its own recordings, raw SSE bodies (what each one is and where it
comes from: ``tests/recordings/README.md``):

``POST /v1/chat/completions``
    ``tests/recordings/chat/<name>.sse`` (``data: {...}`` … ``data: [DONE]``)
``POST /v1/responses``
    ``tests/recordings/responses/<name>.sse`` (``event: <type>`` + ``data: {...}`` per event,
    no ``[DONE]``: the stream ends with ``response.completed``, ``.failed`` or ``.incomplete``)

A request names its recording through the model, with options after ``?``; both endpoints
take the same options::

    replay:openai-tool-call-parallel
    replay:openai-text?split=1&delay_ms=20
    replay:openai-text?status=429&retry_after=2

Options:

``cut_after=K``
    send the first K events (``data: [DONE]`` counts as one), then close the connection in
    the middle of the chunked body: no terminating chunk.
``status=S`` (``retry_after=N``)
    answer S (400, 401, 403, 404, 408, 409, 422, 429, 500, 502, 503, 504) before any chunk,
    with OpenAI's error body ``{"error": {"message", "type", "param", "code"}}``; with
    ``retry_after`` a ``Retry-After: N`` header as well (any status).
``silent=1``
    send the headers of a 200 stream and then nothing, until the client hangs up.
``split=1``
    write every event in two halves, each its own HTTP chunk, flushed apart by a short sleep
    so that they arrive in separate reads; where an event holds multi-byte UTF-8 characters
    the cut falls inside one of them (the one nearest the middle).
``delay_ms=D``
    pause D milliseconds between events.

The body is the file's bytes, never re-encoded: whatever was recorded is what a client sees.
Every request is recorded (JSON body, headers, how far its answer went, whether and when the
client hung up; ``path`` tells the endpoint) and served at ``GET /_replay/requests`` for tests
in other processes (``DELETE /_replay/requests`` forgets them). ``GET /v1/models`` lists the
recordings of both endpoints (a health check). ``stream: false`` is answered 400 on both: the
relay always streams.

Runs in a test's own event loop (:func:`serve_replay_upstream`), in a thread
(:func:`replay_upstream_in_thread`), or as a process the way ``tests/processes.py`` starts the
mock model (:func:`replay_upstream_process`, i.e. ``python -m tests.replay_upstream --port P``).

Helpers for other tests: :func:`recordings`, :func:`expected_chunks`,
:func:`expected_snapshot`, :func:`fetch_requests`; for the Responses recordings
:func:`responses_recordings`, :func:`recorded_response_events`,
:func:`expected_response_events`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import secrets
import signal
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl

import httpx

if TYPE_CHECKING:
    from tests.processes import Stack

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionChunk
    from openai.types.responses import ResponseStreamEvent

    from tests.processes import Process

RECORDINGS_DIR = Path(__file__).resolve().parent / "recordings" / "chat"
RESPONSES_RECORDINGS_DIR = RECORDINGS_DIR.parent / "responses"
CHAT_PATH = "/v1/chat/completions"
RESPONSES_PATH = "/v1/responses"
MODEL_PREFIX = "replay:"
# between the two halves of a split event: long enough that a reader on loopback sees two reads
SPLIT_PAUSE_S = 0.002
_MAX_HEADER_BYTES = 64 * 1024
_MAX_BODY_BYTES = 16 * 1024 * 1024

# OpenAI's error bodies by status: (type, code, message)
_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Replayed error: the request was invalid."),
    401: (
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided: sk-repla***. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
    ),
    403: (
        "request_forbidden",
        "unsupported_country_region_territory",
        "Country, region, or territory not supported",
    ),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model `replay` does not exist or you do not have access to it.",
    ),
    408: ("server_error", None, "Replayed error: request timed out."),
    409: ("server_error", None, "Replayed error: conflict."),
    422: ("invalid_request_error", None, "Replayed error: unprocessable entity."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for gpt-4o in organization org-replay on requests per min (RPM): "
        "Limit 500, Used 500, Requested 1. Please try again in 120ms.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
    504: ("server_error", None, "Gateway timeout."),
}


# --- recordings ---------------------------------------------------------------------------


def _names(directory: Path) -> list[str]:
    return sorted(path.stem for path in directory.glob("*.sse"))


def recordings() -> list[str]:
    """The names of the chat recordings, ``replay:<name>`` being the model that replays one
    on ``POST /v1/chat/completions``."""
    return _names(RECORDINGS_DIR)


def responses_recordings() -> list[str]:
    """The names of the Responses recordings, replayed on ``POST /v1/responses`` for the
    model ``replay:<name>``."""
    return _names(RESPONSES_RECORDINGS_DIR)


def _path_in(directory: Path, name: str) -> Path:
    if name not in _names(directory):
        raise KeyError(f"no recording {name!r} in {directory}")
    return directory / f"{name}.sse"


def recording_path(name: str) -> Path:
    return _path_in(RECORDINGS_DIR, name)


def recording_bytes(name: str) -> bytes:
    return recording_path(name).read_bytes()


def responses_recording_path(name: str) -> Path:
    return _path_in(RESPONSES_RECORDINGS_DIR, name)


def responses_recording_bytes(name: str) -> bytes:
    return responses_recording_path(name).read_bytes()


def split_events(body: bytes) -> list[bytes]:
    """The body's SSE events, each with its blank-line terminator, in order."""
    events: list[bytes] = []
    start = 0
    while start < len(body):
        end = body.find(b"\n\n", start)
        if end < 0:
            events.append(body[start:])
            break
        events.append(body[start : end + 2])
        start = end + 2
    return events


def parse_event(event: bytes) -> tuple[str | None, str | None]:
    """An SSE event's ``event:`` name and ``data:`` payload (data lines joined by newlines);
    None for a field the event does not have."""
    name: str | None = None
    data: list[str] = []
    for line in event.decode("utf-8").split("\n"):
        if line.startswith("event:"):
            name = line[6:].removeprefix(" ")
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    return name, ("\n".join(data) if data else None)


def _payloads(body: bytes) -> list[str]:
    payloads = []
    for event in split_events(body):
        _, data = parse_event(event)
        if data is not None and data != "[DONE]":
            payloads.append(data)
    return payloads


def data_payloads(name: str) -> list[str]:
    """The ``data:`` payload of each event of a chat recording, ``[DONE]`` left out."""
    return _payloads(recording_bytes(name))


def recorded_chunks(name: str) -> list[ChatCompletionChunk]:
    """The recording's chunks, built the way the SDK builds what it reads (no validation)."""
    from openai.types.chat import ChatCompletionChunk  # the server itself does without openai

    return [ChatCompletionChunk.construct(**json.loads(payload)) for payload in data_payloads(name)]


def expected_chunks(name: str) -> list[dict[str, Any]]:
    """``model_dump()`` of each chunk of the recording, unknown fields included."""
    return [chunk.model_dump() for chunk in recorded_chunks(name)]


def accumulate(chunks: Iterable[ChatCompletionChunk]) -> dict[str, Any]:
    """The SDK's accumulation of the chunks (``ChatCompletionStreamState``), dumped."""
    from openai.lib.streaming.chat import ChatCompletionStreamState

    state: ChatCompletionStreamState[object] = ChatCompletionStreamState()
    for chunk in chunks:
        state.handle_chunk(chunk)
    return state.current_completion_snapshot.model_dump()


def expected_snapshot(name: str) -> dict[str, Any]:
    """The accumulated snapshot (``current_completion_snapshot.model_dump()``) of a recording.

    ``get_final_completion()`` is not used: it raises on ``length`` and ``content_filter``.
    """
    return accumulate(recorded_chunks(name))


def recorded_response_events(name: str) -> list[dict[str, Any]]:
    """The JSON of each event of a Responses recording, in order."""
    events: list[dict[str, Any]] = [
        json.loads(payload) for payload in _payloads(responses_recording_bytes(name))
    ]
    return events


def response_event_names(name: str) -> list[str | None]:
    """The ``event:`` line of each event of a Responses recording."""
    return [parse_event(event)[0] for event in split_events(responses_recording_bytes(name))]


def construct_response_event(value: dict[str, Any]) -> ResponseStreamEvent:
    """One event built the way the SDK builds what it reads from a stream (no validation)."""
    from openai._models import construct_type
    from openai.types.responses import ResponseStreamEvent

    return cast("ResponseStreamEvent", construct_type(type_=ResponseStreamEvent, value=value))


def expected_response_events(name: str) -> list[dict[str, Any]]:
    """``model_dump()`` of each event of a Responses recording, unknown fields included."""
    return [
        construct_response_event(event).model_dump() for event in recorded_response_events(name)
    ]


def utf8_split_point(data: bytes) -> int:
    """Where to cut ``data`` in two: inside the multi-byte UTF-8 character nearest the
    middle (after its first byte) if there is one, else in the middle."""
    middle = len(data) // 2
    best: int | None = None
    for index, byte in enumerate(data):
        if byte >= 0xC0 and (best is None or abs(index + 1 - middle) < abs(best - middle)):
            best = index + 1
    return best if best is not None else max(1, middle)


# --- options ------------------------------------------------------------------------------


class ReplayOptionsError(ValueError):
    """The model names no recording, or carries an unknown or invalid option."""


@dataclass(frozen=True)
class ReplayOptions:
    cut_after: int | None = None
    status: int | None = None
    retry_after: str | None = None
    silent: bool = False
    split: bool = False
    delay_ms: float = 0.0


def _non_negative_int(key: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ReplayOptionsError(f"{key}={raw!r}: a non-negative integer is needed")
    return value


def _non_negative_float(key: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ReplayOptionsError(f"{key}={raw!r}: a non-negative number is needed")
    return value


def _flag(key: str, raw: str) -> bool:
    if raw not in ("0", "1"):
        raise ReplayOptionsError(f"{key}={raw!r}: 0 or 1")
    return raw == "1"


def parse_model(model: str) -> tuple[str, ReplayOptions]:
    """``replay:<name>?opt=v&...`` -> (recording name, options)."""
    if not model.startswith(MODEL_PREFIX):
        raise ReplayOptionsError(f"the model must be {MODEL_PREFIX}<recording>, not {model!r}")
    name, _, query = model[len(MODEL_PREFIX) :].partition("?")
    values: dict[str, Any] = {}
    for key, raw in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        if key == "cut_after":
            values[key] = _non_negative_int(key, raw)
        elif key == "status":
            status = _non_negative_int(key, raw)
            if status not in _ERRORS:
                raise ReplayOptionsError(f"status={raw}: one of {sorted(_ERRORS)}")
            values[key] = status
        elif key == "retry_after":
            _non_negative_float(key, raw)
            values[key] = raw
        elif key in ("silent", "split"):
            values[key] = _flag(key, raw)
        elif key == "delay_ms":
            values[key] = _non_negative_float(key, raw)
        else:
            raise ReplayOptionsError(f"unknown option {key!r}")
    return name, ReplayOptions(**values)


# --- the server ---------------------------------------------------------------------------


@dataclass
class RequestRecord:
    """One request, as the replay upstream saw it and answered it."""

    index: int
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    started_at: float
    model: str | None = None
    recording: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    status: int | None = None
    # events written (``data: [DONE]`` counts as one)
    events_sent: int = 0
    # every event and the terminating chunk were written
    completed: bool = False
    # the server closed the connection mid-body on purpose (``cut_after``)
    cut: bool = False
    # the client closed the connection before the answer was complete, and when
    client_closed: bool = False
    client_closed_after_s: float | None = None
    ended_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _ClientGone(Exception):
    pass


@dataclass
class _Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    @property
    def keep_alive(self) -> bool:
        return "close" not in self.headers.get("connection", "").lower()


class _Connection:
    """One client connection: buffered reads, and a watch for the client hanging up."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buffer = bytearray()
        self.eof = False

    async def _fill(self) -> None:
        data = await self.reader.read(65536)
        if not data:
            self.eof = True
        self.buffer += data

    async def read_request(self) -> _Request | None:
        while b"\r\n\r\n" not in self.buffer:
            if self.eof:
                return None
            if len(self.buffer) > _MAX_HEADER_BYTES:
                raise ValueError("request head too large")
            await self._fill()
        head, _, rest = bytes(self.buffer).partition(b"\r\n\r\n")
        self.buffer = bytearray(rest)
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = await self._read_chunked()
        else:
            length = int(headers.get("content-length", "0") or "0")
            if length > _MAX_BODY_BYTES:
                raise ValueError("request body too large")
            while len(self.buffer) < length:
                if self.eof:
                    return None
                await self._fill()
            body = bytes(self.buffer[:length])
            del self.buffer[:length]
        return _Request(method, target, headers, body)

    async def _read_line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            if self.eof:
                raise ValueError("connection closed inside a chunked body")
            await self._fill()
        line, _, rest = bytes(self.buffer).partition(b"\r\n")
        self.buffer = bytearray(rest)
        return line

    async def _read_chunked(self) -> bytes:
        body = bytearray()
        while True:
            size = int((await self._read_line()).split(b";")[0], 16)
            if size == 0:
                while await self._read_line():  # trailers, up to the blank line
                    pass
                return bytes(body)
            while len(self.buffer) < size + 2:
                if self.eof:
                    raise ValueError("connection closed inside a chunked body")
                await self._fill()
            body += self.buffer[:size]
            del self.buffer[: size + 2]
            if len(body) > _MAX_BODY_BYTES:
                raise ValueError("request body too large")

    async def watch_hangup(self) -> None:
        """Returns once the client has closed the connection (bytes it sends meanwhile are
        kept for the next request)."""
        while not self.eof:
            await self._fill()

    async def write(self, data: bytes) -> None:
        if self.writer.is_closing():
            raise _ClientGone
        self.writer.write(data)
        try:
            await self.writer.drain()
        except (ConnectionError, OSError) as exc:
            raise _ClientGone from exc

    async def write_chunk(self, data: bytes, *, last: bool = False) -> None:
        """One HTTP chunk; with ``last``, the terminating chunk in the same write (so that a
        client hanging up as soon as it reads ``[DONE]`` still finds the body complete)."""
        await self.write(b"%x\r\n%s\r\n" % (len(data), data) + (b"0\r\n\r\n" if last else b""))


def _json_bytes(value: object) -> bytes:
    return json.dumps(value).encode()


def _head(status: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
    lines += [f"{key}: {value}" for key, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    """OpenAI's error body for a status."""
    kind, code, default = _ERRORS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None, "Error.")
    )
    return {"error": {"message": message or default, "type": kind, "param": None, "code": code}}


# the replayed endpoints and where their recordings are
_ENDPOINT_RECORDINGS: dict[str, Path] = {
    CHAT_PATH: RECORDINGS_DIR,
    RESPONSES_PATH: RESPONSES_RECORDINGS_DIR,
}


class ReplayUpstream:
    """The replay server on the running event loop: ``await start()``, ``await close()``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.requests: list[RequestRecord] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def base_url(self) -> str:
        """``http://host:port``, without ``/v1``."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_connect, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        connection = _Connection(reader, writer)
        try:
            while True:
                try:
                    request = await connection.read_request()
                except (ValueError, UnicodeDecodeError):
                    await connection.write(
                        _head(400, [("content-length", "0"), ("connection", "close")])
                    )
                    break
                if request is None:
                    break
                keep_open = await self._answer(connection, request)
                if not (keep_open and request.keep_alive):
                    break
        except (_ClientGone, ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            # the server is closing; the connection goes with it
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, connection: _Connection, request: _Request) -> bool:
        """Answers one request; False when the connection is to be closed."""
        path = request.target.split("?", 1)[0]
        if request.method == "GET" and path == "/v1/models":
            models = [
                {
                    "id": f"{MODEL_PREFIX}{name}",
                    "object": "model",
                    "created": 0,
                    "owned_by": "replay",
                }
                for name in sorted(set(recordings()) | set(responses_recordings()))
            ]
            await self._send_json(connection, 200, {"object": "list", "data": models})
            return True
        if path == "/_replay/requests" and request.method == "GET":
            await self._send_json(connection, 200, [r.to_json() for r in self.requests])
            return True
        if path == "/_replay/requests" and request.method == "DELETE":
            self.requests.clear()
            await connection.write(_head(204, [("content-length", "0")]))
            return True
        if request.method == "POST" and path in _ENDPOINT_RECORDINGS:
            return await self._replay(connection, request, _ENDPOINT_RECORDINGS[path])
        await self._send_json(
            connection, 404, error_body(404, f"Unknown request URL: {request.method} {path}.")
        )
        return True

    async def _send_json(
        self,
        connection: _Connection,
        status: int,
        value: object,
        extra_headers: list[tuple[str, str]] | None = None,
    ) -> None:
        body = _json_bytes(value)
        headers = [
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
            ("x-request-id", f"req_{secrets.token_hex(16)}"),
            *(extra_headers or []),
        ]
        await connection.write(_head(status, headers) + body)

    async def _replay(self, connection: _Connection, request: _Request, directory: Path) -> bool:
        """Answers a chat completion or a response from the recordings in ``directory``."""
        started = time.monotonic()
        try:
            body: Any = json.loads(request.body) if request.body else None
        except (ValueError, UnicodeDecodeError):
            body = None
        record = RequestRecord(
            index=len(self.requests),
            method=request.method,
            path=request.target,
            headers=dict(request.headers),
            body=body if body is not None else request.body.decode("utf-8", "replace"),
            started_at=time.time(),
        )
        self.requests.append(record)
        try:
            return await self._replay_answer(connection, record, body, started, directory)
        except _ClientGone:
            self._client_closed(record, started)
            return False
        finally:
            record.ended_at = time.time()

    @staticmethod
    def _client_closed(record: RequestRecord, started: float) -> None:
        if not record.client_closed and not record.completed:
            record.client_closed = True
            record.client_closed_after_s = round(time.monotonic() - started, 6)

    async def _replay_answer(
        self,
        connection: _Connection,
        record: RequestRecord,
        body: Any,
        started: float,
        directory: Path,
    ) -> bool:
        async def fail(status: int, message: str) -> bool:
            record.status = status
            await self._send_json(connection, status, error_body(status, message))
            return True

        if not isinstance(body, dict):
            return await fail(400, "We could not parse the JSON body of your request.")
        model = body.get("model")
        record.model = model if isinstance(model, str) else None
        if not isinstance(model, str):
            return await fail(400, "you must provide a model parameter")
        try:
            name, options = parse_model(model)
        except ReplayOptionsError as exc:
            return await fail(400, f"Invalid model {model!r}: {exc}")
        record.options = dataclasses.asdict(options)
        if name not in _names(directory):
            return await fail(
                404, f"The model `{model}` does not exist or you do not have access to it."
            )
        record.recording = name
        if body.get("stream") is not True:
            return await fail(400, "The replay upstream only streams: set stream to true.")
        if options.status is not None:
            record.status = options.status
            extra = [] if options.retry_after is None else [("retry-after", options.retry_after)]
            await self._send_json(
                connection, options.status, error_body(options.status), extra_headers=extra
            )
            return True

        record.status = 200
        headers = [
            ("content-type", "text/event-stream; charset=utf-8"),
            ("transfer-encoding", "chunked"),
            ("cache-control", "no-cache"),
            ("x-request-id", f"req_{secrets.token_hex(16)}"),
        ]
        if options.retry_after is not None:
            headers.append(("retry-after", options.retry_after))
        events = split_events(_path_in(directory, name).read_bytes())
        stream = asyncio.ensure_future(
            self._stream(connection, record, options, _head(200, headers), events)
        )
        hangup = asyncio.ensure_future(connection.watch_hangup())
        try:
            await asyncio.wait({stream, hangup}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (stream, hangup):
                if not task.done():
                    task.cancel()
            await asyncio.gather(stream, hangup, return_exceptions=True)
        if not stream.cancelled() and stream.exception() is None:
            return stream.result()
        if hangup.done() and not hangup.cancelled():
            self._client_closed(record, started)
            return False
        failure = stream.exception() if not stream.cancelled() else None
        if isinstance(failure, _ClientGone):
            self._client_closed(record, started)
            return False
        if failure is not None:
            raise failure
        return False

    async def _stream(
        self,
        connection: _Connection,
        record: RequestRecord,
        options: ReplayOptions,
        head: bytes,
        events: list[bytes],
    ) -> bool:
        await connection.write(head)
        if options.silent:
            await asyncio.Event().wait()  # until the client hangs up or the server closes
        if options.cut_after is not None:
            events = events[: options.cut_after]
        finishing = options.cut_after is None
        for number, event in enumerate(events):
            last = finishing and number == len(events) - 1
            if number and options.delay_ms:
                await asyncio.sleep(options.delay_ms / 1000)
            if options.split and len(event) > 1:
                cut = utf8_split_point(event)
                await connection.write_chunk(event[:cut])
                await asyncio.sleep(SPLIT_PAUSE_S)
                await connection.write_chunk(event[cut:], last=last)
            else:
                await connection.write_chunk(event, last=last)
            record.events_sent += 1
            record.completed = last
        if not finishing:
            record.cut = True
            return False  # closed with the body unfinished
        if not events:
            await connection.write(b"0\r\n\r\n")
            record.completed = True
        return True


# --- running it ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serve_replay_upstream(
    host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[ReplayUpstream]:
    """The replay upstream on the current event loop (``server.base_url``, no ``/v1``)."""
    server = ReplayUpstream(host, port)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@contextlib.contextmanager
def replay_upstream_thread(host: str = "127.0.0.1", port: int = 0) -> Iterator[ReplayUpstream]:
    """The replay upstream on an event loop of its own in a thread."""
    loop = asyncio.new_event_loop()
    server = ReplayUpstream(host, port)
    loop.run_until_complete(server.start())
    thread = threading.Thread(target=loop.run_forever, name="replay-upstream", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


@contextlib.contextmanager
def replay_upstream_in_thread(host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """The replay upstream in a thread; its base URL (``http://host:port``, no ``/v1``)."""
    with replay_upstream_thread(host, port) as server:
        yield server.base_url


def replay_upstream_process(tmp: Path) -> contextlib.AbstractContextManager[tuple[Process, str]]:
    """The replay upstream as a process: the process and its base URL (no ``/v1``)."""
    from tests.processes import upstream_process

    return upstream_process(tmp, "replay-upstream", "-m", "tests.replay_upstream")


@contextlib.contextmanager
def replaying_stack(tmp: Path, *, gateways: int = 1) -> Iterator[tuple[str, list[str], Stack]]:
    """The replay upstream, and ``gateways`` gateways and a worker whose upstream it is:
    its base URL, theirs (no ``/v1``) and their stack. Their logs are printed if the block
    fails; their keys are deleted after it."""
    from tests.processes import Stack, running

    with (
        replay_upstream_process(tmp) as (_, upstream),
        running(Stack(tmp=tmp, mock_url=f"{upstream}/v1")) as stack,
    ):
        bases = [stack.gateway()[1] for _ in range(gateways)]
        stack.worker()
        yield upstream, bases, stack


def fetch_requests(base_url: str) -> list[dict[str, Any]]:
    """What the replay upstream at ``base_url`` (no ``/v1``) has recorded."""
    response = httpx.get(f"{base_url}/_replay/requests", timeout=10)
    response.raise_for_status()
    records: list[dict[str, Any]] = response.json()
    return records


async def _serve_forever(host: str, port: int) -> None:
    async with serve_replay_upstream(host, port) as server:
        print(f"replay upstream listening on {server.base_url}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    print("replay upstream stopped", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.replay_upstream",
        description="OpenAI-compatible upstream replaying tests/recordings/{chat,responses}/*.sse",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    args = parser.parse_args(argv)
    asyncio.run(_serve_forever(args.host, args.port))


if __name__ == "__main__":
    main()
