"""A mock OpenAI-compatible chat-completions server.

A small HTTP/1.1 server on raw asyncio streams that speaks the OpenAI chat-completions wire
format (plain JSON and SSE streaming) and injects faults chosen through the model name, e.g.
``mock?tokens=40&rate=200&ttft=0.05&fault=stall&after=5``. Every chat request is recorded so
tests can learn exactly what text was sent and whether (and when) the client hung up; other
processes read the records from ``GET /_mock/requests``.

Run standalone with ``python -m producer.mockmodel --host 127.0.0.1 --port 9000``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import math
import secrets
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any, Literal, Self, cast, get_args
from urllib.parse import parse_qs, parse_qsl

logger = logging.getLogger(__name__)

Fault = Literal[
    "none", "429", "500", "400", "stall", "disconnect", "no_finish", "length", "malformed"
]
_FAULTS = frozenset(get_args(Fault))
# Faults that cut generation short after `after` tokens.
_TRUNCATING_FAULTS = frozenset({"stall", "disconnect", "no_finish", "length", "malformed"})


class MockOptionsError(ValueError):
    """The model name carries an unknown or invalid behaviour option."""


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError(raw)
    return value


def _non_negative_float(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value) or value < 0:
        raise ValueError(raw)
    return value


def _flag(raw: str) -> bool:
    if raw not in ("0", "1"):
        raise ValueError(raw)
    return raw == "1"


def _fault(raw: str) -> Fault:
    if raw not in _FAULTS:
        raise ValueError(raw)
    return cast(Fault, raw)


_OPTION_PARSERS: dict[str, Callable[[str], object]] = {
    "tokens": _non_negative_int,
    "rate": _non_negative_float,
    "ttft": _non_negative_float,
    "fault": _fault,
    "after": _non_negative_int,
    "retry_after": _non_negative_float,
    "times": _non_negative_int,
    "stamp": _flag,
}


@dataclass(frozen=True, slots=True)
class MockOptions:
    """Behaviour selected by the query string of the model name (``mock?tokens=10&rate=0``).

    ``tokens``: tokens to generate (a smaller ``max_tokens`` cuts it, finish_reason "length").
    ``rate``: tokens per second, 0 = as fast as possible. ``ttft``: seconds before the first
    token. ``fault``: see ``Fault``. ``after``: tokens sent before a truncating fault.
    ``retry_after``: the Retry-After header value (seconds) of the 429 fault.
    ``times``: the fault hits only the first ``times`` requests of a stream (by its
    ``X-TokenRelay-Stream`` header); later ones are answered normally. 0: every request.
    ``stamp``: 1 makes each token's text `` t<time.time_ns()>``, taken right before the token
    is written, so a client can measure end-to-end latency per token (benchmarks).
    """

    tokens: int = 40
    rate: float = 50.0
    ttft: float = 0.0
    fault: Fault = "none"
    after: int = 3
    retry_after: float = 1.0
    times: int = 0
    stamp: bool = False

    @classmethod
    def parse(cls, model: str) -> MockOptions:
        """Parse the options after the first ``?`` of a model name; the base name is ignored.

        Raises ``MockOptionsError`` for unknown keys or invalid values.
        """
        _, _, query = model.partition("?")
        values: dict[str, Any] = {}
        for key, raw in parse_qsl(query, keep_blank_values=True):
            parser = _OPTION_PARSERS.get(key)
            if parser is None:
                raise MockOptionsError(
                    f"unknown mock option {key!r} (expected one of {', '.join(_OPTION_PARSERS)})"
                )
            try:
                values[key] = parser(raw)
            except ValueError:
                hint = f" (one of {', '.join(get_args(Fault))})" if key == "fault" else ""
                raise MockOptionsError(
                    f"invalid value {raw!r} for mock option {key!r}{hint}"
                ) from None
        return cls(**values)


# --- deterministic text ---------------------------------------------------------------------

_WORDS = (
    "the", "relay", "token", "stream", "river", "signal", "buffer", "cursor", "quiet", "bright",
    "harbor", "lantern", "meadow", "orbit", "packet", "quartz", "saffron", "tundra", "velvet",
    "willow", "zephyr", "amber", "cobalt", "delta", "ember", "maple", "nimbus", "pixel", "a",
    "of", "and", "to", "in", "is", "it", "we", "café", "naïve", "façade", "jalapeño", "über",
    "smörgåsbord", "Zürich", "日本語", "🚀",
)  # fmt: skip
_MASK64 = (1 << 64) - 1
_GOLDEN64 = 0x9E3779B97F4A7C15


def _mix64(x: int) -> int:
    """The splitmix64 finaliser: a cheap, well-distributed 64-bit hash of ``x``."""
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def mock_text(prompt: str, n_tokens: int) -> list[str]:
    """The deterministic token texts the mock generates for ``prompt``.

    Token ``i`` is a word picked by a hash of (prompt, i); the first has no leading space, later
    ones start with a space (occasionally a newline). Some carry punctuation, some words are
    non-ASCII (accents, CJK, an emoji) so text encodings get exercised.
    """
    seed = int.from_bytes(hashlib.blake2b(prompt.encode(), digest_size=8).digest(), "big")
    tokens: list[str] = []
    for i in range(n_tokens):
        h = _mix64((seed + (i + 1) * _GOLDEN64) & _MASK64)
        word = _WORDS[h % len(_WORDS)]
        punct = (h >> 24) % 100
        if punct < 8:
            word += ","
        elif punct < 13:
            word += "."
        elif punct < 15:
            word += "?"
        if i == 0:
            tokens.append(word)
        elif (h >> 40) % 25 == 0:
            tokens.append("\n" + word)
        else:
            tokens.append(" " + word)
    return tokens


def _message_text(message: object) -> str:
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def prompt_of(messages: list[Any]) -> str:
    """The prompt ``mock_text`` is keyed on: the text of the last ``user`` message ("" if none).

    Content may be a string or a list of parts; the ``text`` of the parts is concatenated.
    """
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _message_text(message)
    return ""


# --- recording ------------------------------------------------------------------------------


@dataclass(eq=False)
class RecordedRequest:
    """One chat-completions request the mock received, and what it did with it.

    ``completed`` is true once the server wrote its whole response as the fault dictates (an
    error response, ``no_finish`` and ``malformed`` count; ``stall`` and ``disconnect`` never
    complete). ``closed_by_client_at`` is the ``time.monotonic()`` at which the client closed
    the connection before the response was complete.
    """

    index: int
    stream_id: str | None
    model: str
    options: MockOptions
    body: dict[str, Any]
    started_at: float
    planned_tokens: list[str] = field(default_factory=list, repr=False)
    tokens_sent: int = 0
    finish_reason: str | None = None
    closed_by_client_at: float | None = None
    completed: bool = False

    @property
    def sent_text(self) -> str:
        """Concatenation of the content deltas written to the client so far."""
        return "".join(self.planned_tokens[: self.tokens_sent])

    def to_json(self) -> dict[str, Any]:
        """The JSON form served by ``GET /_mock/requests`` (everything but the body)."""
        return {
            "index": self.index,
            "stream_id": self.stream_id,
            "model": self.model,
            "options": dataclasses.asdict(self.options),
            "started_at": self.started_at,
            "sent_text": self.sent_text,
            "tokens_sent": self.tokens_sent,
            "finish_reason": self.finish_reason,
            "closed_by_client_at": self.closed_by_client_at,
            "completed": self.completed,
        }


# --- HTTP plumbing --------------------------------------------------------------------------

_MAX_HEAD = 64 * 1024
_MAX_BODY = 32 * 1024 * 1024
_READ_SIZE = 64 * 1024
# Tokens per write at rate=0: big enough to amortise framing and syscalls.
_BATCH = 512
_CHUNK_END = b"0\r\n\r\n"
_DONE = b"data: [DONE]\n\n"


class _ApiError(Exception):
    """An OpenAI-shaped error response."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.payload = {"error": {"message": message, "type": type_, "param": param, "code": code}}


@dataclass(slots=True)
class _Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


def _head(status: int, headers: Iterable[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@functools.lru_cache(maxsize=4096)
def _json_str(text: str) -> bytes:
    return json.dumps(text, ensure_ascii=False).encode()


def _json_bytes(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


class _Connection:
    """One client connection: buffered request parsing, responses, and hang-up detection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buf = bytearray()
        self.peer_closed = False  # the client closed (or reset) its side
        self.server_closed = False  # we ended the connection on purpose (disconnect fault)

    async def _fill(self) -> bool:
        try:
            data = await self.reader.read(_READ_SIZE)
        except ConnectionError:
            data = b""
        if not data:
            self.peer_closed = True
            return False
        self.buf += data
        return True

    async def wait_peer_closed(self) -> None:
        """Return once the client closes its side; bytes it sends meanwhile stay buffered."""
        while await self._fill():
            pass

    async def read_request(self) -> _Request | None:
        """Read the next request, or None if the client went away."""
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            if len(self.buf) > _MAX_HEAD:
                raise _ApiError(431, "request headers too large")
            if not await self._fill():
                return None
        head = self.buf[:end].decode("latin-1").lstrip("\r\n")
        del self.buf[: end + 4]
        request_line, *header_lines = head.split("\r\n")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _ApiError(400, "malformed request line")
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if not sep:
                raise _ApiError(400, "malformed header line")
            headers[name.strip().lower()] = value.strip()
        if "transfer-encoding" in headers:
            raise _ApiError(501, "chunked request bodies are not supported")
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise _ApiError(400, "invalid Content-Length") from None
        if not 0 <= length <= _MAX_BODY:
            raise _ApiError(413, "request body too large")
        while len(self.buf) < length:
            if not await self._fill():
                return None
        body = bytes(self.buf[:length])
        del self.buf[:length]
        connection = headers.get("connection", "").lower()
        if version == "HTTP/1.0":
            keep_alive = "keep-alive" in connection
        else:
            keep_alive = "close" not in connection
        path, _, query = target.partition("?")
        return _Request(method, path, query, headers, body, keep_alive)

    async def send(
        self,
        status: int,
        body: bytes,
        *,
        keep_alive: bool,
        content_type: str = "application/json",
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Write a complete response with a Content-Length body."""
        all_headers = [("content-type", content_type), ("content-length", str(len(body)))]
        all_headers.extend(headers)
        if not keep_alive:
            all_headers.append(("connection", "close"))
        self.writer.write(_head(status, all_headers) + body)
        await self.writer.drain()

    async def send_json(self, status: int, obj: object, *, keep_alive: bool) -> None:
        """Write a complete JSON response."""
        await self.send(status, _json_bytes(obj), keep_alive=keep_alive)

    async def close(self, *, abort: bool) -> None:
        """Close the connection; ``abort`` drops unsent data instead of flushing it."""
        if abort or self.peer_closed:
            self.writer.transport.abort()
        else:
            self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


# --- the server -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Plan:
    """What to send for one chat request."""

    keep_alive: bool
    include_usage: bool
    n_tokens: int  # content tokens to send before finishing (or before the fault)
    finish_reason: str  # sent when the fault lets the response finish normally
    prompt_tokens: int


_MODELS = {
    "object": "list",
    "data": [{"id": "mock", "object": "model", "created": 0, "owned_by": "tokenrelay"}],
}


class MockModel:
    """The mock server; an async context manager that listens while entered.

    ``async with MockModel(port=0) as mock:`` binds a free port; ``mock.base_url`` is the
    OpenAI ``base_url`` ("http://127.0.0.1:43121/v1") and ``mock.requests`` lists the recorded
    chat requests (the oldest are dropped beyond ``max_records``).
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, max_records: int = 10_000
    ) -> None:
        self.host = host
        self.requests: list[RecordedRequest] = []
        self._requested_port = port
        self._max_records = max_records
        self._next_index = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()

    @property
    def port(self) -> int:
        """The port actually listened on."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("MockModel is not listening")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def base_url(self) -> str:
        """The OpenAI base URL of this server (wildcard hosts map to loopback)."""
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/v1"

    async def start(self) -> None:
        """Start listening."""
        self._server = await asyncio.start_server(
            self._handle, self.host, self._requested_port, reuse_address=True
        )

    async def close(self) -> None:
        """Stop listening and drop every open connection."""
        if self._server is None:
            return
        self._server.close()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        conn = _Connection(reader, writer)
        abort = True
        try:
            while (request := await self._read_request(conn)) is not None:
                if not await self._dispatch(conn, request):
                    break
            abort = False
        # Cancellation comes from close() (or loop shutdown). This is the connection's
        # top-level task and asyncio 3.11 logs a spurious error if it ends cancelled.
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:
            logger.exception("mock model: connection handler failed")
        finally:
            self._handlers.discard(task)
            with contextlib.suppress(asyncio.CancelledError):
                await conn.close(abort=abort)

    @staticmethod
    async def _read_request(conn: _Connection) -> _Request | None:
        try:
            return await conn.read_request()
        except _ApiError as exc:
            await conn.send_json(exc.status, exc.payload, keep_alive=False)
            return None

    async def _dispatch(self, conn: _Connection, request: _Request) -> bool:
        """Answer one request; returns whether the connection may serve another."""
        route = (request.method, request.path)
        if route == ("POST", "/v1/chat/completions"):
            return await self._chat(conn, request)
        if route == ("GET", "/v1/models"):
            await conn.send_json(200, _MODELS, keep_alive=request.keep_alive)
        elif route == ("GET", "/_mock/requests"):
            wanted = parse_qs(request.query).get("stream")
            records = [
                record.to_json()
                for record in self.requests
                if wanted is None or record.stream_id in wanted
            ]
            await conn.send_json(200, records, keep_alive=request.keep_alive)
        else:
            error = _ApiError(
                404, f"Unknown request URL: {request.method} {request.path}.", code="unknown_url"
            )
            await conn.send_json(404, error.payload, keep_alive=request.keep_alive)
        return request.keep_alive

    def _record(self, record: RecordedRequest) -> None:
        self.requests.append(record)
        if len(self.requests) > self._max_records:
            del self.requests[: len(self.requests) - self._max_records]

    def _requests_of(self, stream_id: str | None) -> int:
        """Requests recorded so far for this stream (only the ``times`` option asks)."""
        return sum(1 for record in self.requests if record.stream_id == stream_id)

    async def _chat(self, conn: _Connection, request: _Request) -> bool:
        started_at = time.monotonic()
        try:
            body, options = _parse_chat_body(request.body)
        except _ApiError as exc:
            await conn.send_json(exc.status, exc.payload, keep_alive=request.keep_alive)
            return request.keep_alive

        stream_id = request.headers.get("x-tokenrelay-stream")
        if options.times and self._requests_of(stream_id) >= options.times:
            options = dataclasses.replace(options, fault="none")
        messages: list[Any] = body["messages"]
        plan = _plan(body, options, request.keep_alive)
        record = RecordedRequest(
            index=self._next_index,
            stream_id=stream_id,
            model=body["model"],
            options=options,
            body=body,
            started_at=started_at,
            planned_tokens=mock_text(prompt_of(messages), plan.n_tokens),
        )
        self._next_index += 1
        self._record(record)

        if options.fault in ("429", "500", "400"):
            await _send_fault_error(conn, options, plan.keep_alive, record)
            return plan.keep_alive

        respond_fn = _stream if body.get("stream") else _complete
        respond = asyncio.create_task(respond_fn(conn, record, plan))
        watch = asyncio.create_task(conn.wait_peer_closed())
        try:
            await asyncio.wait((respond, watch), return_when=asyncio.FIRST_COMPLETED)
        finally:
            respond.cancel()
            watch.cancel()
            await asyncio.wait((respond, watch))
        if not respond.cancelled() and (error := respond.exception()) is not None:
            if not isinstance(error, ConnectionError):
                raise error
            conn.peer_closed = True
        if conn.peer_closed and not record.completed and not conn.server_closed:
            record.closed_by_client_at = time.monotonic()
        return (
            plan.keep_alive and record.completed and not conn.peer_closed and not conn.server_closed
        )


def _parse_chat_body(raw: bytes) -> tuple[dict[str, Any], MockOptions]:
    try:
        body = json.loads(raw)
    except ValueError:
        raise _ApiError(
            400,
            "We could not parse the JSON body of your request.",
            code="invalid_json",
        ) from None
    if not isinstance(body, dict):
        raise _ApiError(400, "The request body must be a JSON object.", code="invalid_json")
    if not isinstance(body.get("model"), str):
        raise _ApiError(
            400, "you must provide a model parameter", code="missing_required_parameter"
        )
    if not isinstance(body.get("messages"), list):
        raise _ApiError(400, "'messages' must be an array", code="invalid_type", param="messages")
    try:
        options = MockOptions.parse(body["model"])
    except MockOptionsError as exc:
        raise _ApiError(400, str(exc), code="invalid_value", param="model") from None
    return body, options


def _plan(body: dict[str, Any], options: MockOptions, keep_alive: bool) -> _Plan:
    n_tokens, finish_reason = options.tokens, "stop"
    limits = [
        value
        for key in ("max_tokens", "max_completion_tokens")
        if isinstance(value := body.get(key), int) and not isinstance(value, bool)
    ]
    if limits and min(limits) < n_tokens:
        n_tokens, finish_reason = max(0, min(limits)), "length"
    if options.fault in _TRUNCATING_FAULTS:
        n_tokens = min(n_tokens, options.after)
    if options.fault == "length":
        finish_reason = "length"
    stream_options = body.get("stream_options")
    include_usage = isinstance(stream_options, dict) and bool(stream_options.get("include_usage"))
    prompt_tokens = sum(len(_message_text(m).split()) for m in body["messages"])
    return _Plan(keep_alive, include_usage, n_tokens, finish_reason, prompt_tokens)


def _usage(plan: _Plan, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": plan.prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": plan.prompt_tokens + completion_tokens,
    }


async def _send_fault_error(
    conn: _Connection, options: MockOptions, keep_alive: bool, record: RecordedRequest
) -> None:
    headers: list[tuple[str, str]] = []
    if options.fault == "429":
        error = _ApiError(
            429,
            "Rate limit reached for mock (injected fault).",
            "requests",
            "rate_limit_exceeded",
        )
        headers.append(("retry-after", f"{options.retry_after:g}"))
    elif options.fault == "500":
        error = _ApiError(
            500,
            "The server had an error processing your request (injected fault).",
            "server_error",
            "server_error",
        )
    else:
        error = _ApiError(400, "Invalid request (injected fault).", code="invalid_request")
    await conn.send(
        error.status, _json_bytes(error.payload), keep_alive=keep_alive, headers=headers
    )
    record.completed = True


async def _sleep_until(deadline: float) -> None:
    # Always yields, so a long full-speed stream can't starve other connections.
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))


async def _hang() -> None:
    """Wait forever (until cancelled, i.e. until the client closes the connection)."""
    await asyncio.get_running_loop().create_future()


def _stamps(n: int) -> list[str]:
    """``n`` token texts carrying the send time (the ``stamp`` option), one clock read."""
    return [f" t{time.time_ns()}"] * n


def _new_id() -> str:
    return f"chatcmpl-{secrets.token_hex(12)}"


async def _stream(conn: _Connection, record: RecordedRequest, plan: _Plan) -> None:
    """Send a chat completion as a chunked ``text/event-stream``."""
    options, writer = record.options, conn.writer
    prefix = (
        f'data: {{"id":"{_new_id()}","object":"chat.completion.chunk","created":{int(time.time())}'
        f',"model":{_json_str(record.model).decode()},"system_fingerprint":"fp_mock","choices":['
    ).encode()
    # With include_usage OpenAI puts "usage":null on every chunk but the last.
    suffix = (b',"usage":null' if plan.include_usage else b"") + b"}\n\n"

    def choice_event(delta: bytes, finish_reason: str | None = None) -> bytes:
        finish = b"null" if finish_reason is None else _json_str(finish_reason)
        choice = b'{"index":0,"delta":%s,"logprobs":null,"finish_reason":%s}]' % (delta, finish)
        return prefix + choice + suffix

    headers = [
        ("content-type", "text/event-stream; charset=utf-8"),
        ("cache-control", "no-cache"),
        ("transfer-encoding", "chunked"),
    ]
    if not plan.keep_alive:
        headers.append(("connection", "close"))
    role = choice_event(b'{"role":"assistant","content":""}')
    writer.write(_head(200, headers) + _chunk(role))
    await writer.drain()

    token_prefix = prefix + b'{"index":0,"delta":{"content":'
    token_suffix = b'},"logprobs":null,"finish_reason":null}]' + suffix
    tokens, rate = record.planned_tokens, options.rate
    first_at = record.started_at + options.ttft
    sent = 0
    while sent < plan.n_tokens:
        await _sleep_until(first_at + sent / rate if rate else first_at)
        end = sent + _BATCH
        if rate:
            # Everything due by now goes out in one write, so high rates don't sleep per token.
            end = min(end, max(sent + 1, int((time.monotonic() - first_at) * rate) + 1))
        end = min(end, plan.n_tokens)
        if options.stamp:
            tokens[sent:end] = _stamps(end - sent)
        data = b"".join([token_prefix + _json_str(t) + token_suffix for t in tokens[sent:end]])
        writer.write(_chunk(data))
        record.tokens_sent = sent = end
        await writer.drain()

    fault = options.fault
    if fault == "stall":
        await _hang()
    elif fault == "disconnect":
        conn.server_closed = True
        writer.close()  # flushes what was written, then FIN mid-body (no last chunk)
    elif fault in ("no_finish", "malformed"):
        last = _DONE if fault == "no_finish" else b"data: {not json\n\n"
        writer.write(_chunk(last) + _CHUNK_END)
        record.completed = True
        await writer.drain()
    else:
        events = [choice_event(b"{}", plan.finish_reason)]
        if plan.include_usage:
            usage = _json_bytes(_usage(plan, sent))
            events.append(b'%s],"usage":%s}\n\n' % (prefix, usage))
        events.append(_DONE)
        writer.write(_chunk(b"".join(events)) + _CHUNK_END)
        record.finish_reason = plan.finish_reason
        record.completed = True
        await writer.drain()


async def _complete(conn: _Connection, record: RecordedRequest, plan: _Plan) -> None:
    """Send a chat completion as one JSON object, once its last token would be generated."""
    options = record.options
    done_at = record.started_at + options.ttft
    if options.rate and plan.n_tokens > 1:
        done_at += (plan.n_tokens - 1) / options.rate
    await _sleep_until(done_at)
    if options.stamp:
        record.planned_tokens[:] = _stamps(plan.n_tokens)
    if options.fault == "stall":
        await _hang()
    elif options.fault == "disconnect":
        conn.server_closed = True
        conn.writer.close()
    elif options.fault == "malformed":
        record.completed = True
        await conn.send(200, b"{not json", keep_alive=plan.keep_alive)
    else:
        finish_reason = None if options.fault == "no_finish" else plan.finish_reason
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(record.planned_tokens),
            "refusal": None,
            "annotations": [],
        }
        completion = {
            "id": _new_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": record.model,
            "system_fingerprint": "fp_mock",
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
            ],
            "usage": _usage(plan, plan.n_tokens),
        }
        record.tokens_sent = plan.n_tokens
        record.finish_reason = finish_reason
        record.completed = True
        await conn.send_json(200, completion, keep_alive=plan.keep_alive)


# --- entry points ---------------------------------------------------------------------------


async def serve(host: str, port: int) -> None:
    """Run a mock model server until cancelled, printing its URL once it listens."""
    async with MockModel(host, port) as mock:
        print(f"mock model listening on {mock.base_url}", flush=True)
        await _hang()


async def _run(host: str, port: int) -> None:
    server: asyncio.Task[None] = asyncio.create_task(serve(host, port))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, server.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await server


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: ``python -m producer.mockmodel --host H --port P``."""
    parser = argparse.ArgumentParser(description="Mock OpenAI-compatible chat model server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000, help="0 picks a free port")
    args = parser.parse_args(argv)
    asyncio.run(_run(args.host, args.port))


if __name__ == "__main__":
    main()
