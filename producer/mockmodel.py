"""A mock OpenAI-compatible server: chat completions and the Responses API.

A small HTTP/1.1 server on raw asyncio streams that speaks the OpenAI chat-completions wire
format (plain JSON and SSE streaming) and injects faults chosen through the model name, e.g.
``mock?tokens=40&rate=200&ttft=0.05&fault=stall&after=5``. Besides text it can stream every
kind of part an OpenAI answer carries: parallel tool calls (``tools=2``), reasoning
(``reasoning=30``), a refusal (``refusal=1``) and ``n`` choices. ``POST /v1/responses`` gives
the same answers as OpenAI's Responses API (a Response object, or its ``event:``/``data:``
event stream; see ``_ResponseBuilder``). Every request is recorded so tests can learn exactly
what was sent and whether (and when) the client hung up; other processes read the records
from ``GET /_mock/requests``.

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
import re
import secrets
import signal
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
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
ReasoningField = Literal["reasoning_content", "reasoning"]
_HINTS = {"fault": get_args(Fault), "reasoning_field": get_args(ReasoningField)}


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


def _reasoning_field(raw: str) -> ReasoningField:
    if raw not in get_args(ReasoningField):
        raise ValueError(raw)
    return cast(ReasoningField, raw)


_OPTION_PARSERS: dict[str, Callable[[str], object]] = {
    "tokens": _non_negative_int,
    "rate": _non_negative_float,
    "ttft": _non_negative_float,
    "fault": _fault,
    "after": _non_negative_int,
    "retry_after": _non_negative_float,
    "times": _non_negative_int,
    "stamp": _flag,
    "tools": _non_negative_int,
    "text": _flag,
    "reasoning": _non_negative_int,
    "reasoning_field": _reasoning_field,
    "refusal": _flag,
    "echo": _flag,
}


@dataclass(frozen=True, slots=True)
class MockOptions:
    """Behaviour selected by the query string of the model name (``mock?tokens=10&rate=0``).

    ``tokens``: text tokens to generate (a smaller ``max_tokens`` cuts the answer,
    finish_reason "length"). ``rate``: tokens per second, 0 = as fast as possible; every
    streamed part (a reasoning, text or refusal token, a tool call's first chunk, an arguments
    fragment) counts as one token. ``ttft``: seconds before the first token.
    ``fault``: see ``Fault``. ``after``: tokens sent before a truncating fault.
    ``retry_after``: the Retry-After header value (seconds) of the 429 fault.
    ``times``: the fault hits only the first ``times`` requests of a stream (by its
    ``X-TokenRelay-Stream`` header); later ones are answered normally. 0: every request.
    ``stamp``: 1 makes each text token `` t<time.time_ns()>``, taken right before the token
    is written, so a client can measure end-to-end latency per token (benchmarks).
    ``tools``: N >= 1 makes the answer N parallel tool calls, finish_reason "tool_calls": the
    request's function tools (the first N, cycling; a named ``tool_choice`` picks one) or else
    a fixed set (``get_weather``, ``search_web``, ``get_time``, ``convert_currency``), with
    arguments built from each function's JSON schema (see ``mock_tool_calls``).
    ``text``: 1 streams ``tokens`` tokens of text (before any tool calls), 0 none; the default
    is 1 unless ``tools`` or ``refusal`` is given.
    ``reasoning``: N reasoning tokens (``mock_reasoning``) streamed before the answer, in the
    delta field ``reasoning_field``: ``reasoning_content`` (DeepSeek, vLLM; the default) or
    ``reasoning`` (OpenRouter, Ollama).
    ``refusal``: 1 makes the answer a refusal (``mock_refusal``) streamed in ``delta.refusal``,
    content null, finish_reason "stop"; it excludes ``tools`` and ``text=1``.
    ``echo``: 1 makes the text the prompt itself (``echo_text``, a token per word) instead of
    ``tokens`` words of ``mock_text``, in every choice: a client can be made to show exactly
    what its test wants (Markdown, HTML).
    The request's ``n`` (1 to 8) asks for that many choices, each with its own text
    (``mock_text(prompt, tokens, choice)``) and tool calls; their chunks are interleaved.

    ``POST /v1/responses`` reads the same options, for the prompt ``responses_prompt(input)``:
    reasoning becomes a reasoning item whose summary is ``mock_reasoning``, text and refusal a
    message item, tool calls function_call items (from the request's Responses-style function
    tools); ``max_output_tokens`` cuts like ``max_tokens``. Finishing with "length" (the cut,
    or ``fault=length``) ends the stream with ``response.incomplete``
    (``incomplete_details.reason`` "max_output_tokens"); ``no_finish`` ends it with no terminal
    event. ``reasoning_field`` and ``n`` don't apply.
    """

    tokens: int = 40
    rate: float = 50.0
    ttft: float = 0.0
    fault: Fault = "none"
    after: int = 3
    retry_after: float = 1.0
    times: int = 0
    stamp: bool = False
    tools: int = 0
    text: bool | None = None
    reasoning: int = 0
    reasoning_field: ReasoningField = "reasoning_content"
    refusal: bool = False
    echo: bool = False

    def __post_init__(self) -> None:
        if self.refusal and (self.tools or self.text):
            raise MockOptionsError("mock option 'refusal' excludes 'tools' and 'text=1'")

    @property
    def says_text(self) -> bool:
        """Whether the answer has text: ``text`` if given, else neither tools nor a refusal."""
        if self.text is not None:
            return self.text
        return not (self.tools or self.refusal)

    @classmethod
    def parse(cls, model: str, defaults: str = "") -> MockOptions:
        """Parse the options after the first ``?`` of a model name; the base name is ignored.
        ``defaults``: options in the same form (``rate=0``) for those the name leaves out.

        Raises ``MockOptionsError`` for unknown keys or invalid values.
        """
        _, _, query = model.partition("?")
        values: dict[str, Any] = {}
        pairs = parse_qsl(defaults, keep_blank_values=True) + parse_qsl(
            query, keep_blank_values=True
        )
        for key, raw in pairs:
            parser = _OPTION_PARSERS.get(key)
            if parser is None:
                raise MockOptionsError(
                    f"unknown mock option {key!r} (expected one of {', '.join(_OPTION_PARSERS)})"
                )
            try:
                values[key] = parser(raw)
            except ValueError:
                hint = f" (one of {', '.join(_HINTS[key])})" if key in _HINTS else ""
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


def _seed(prompt: str, salt: str = "") -> int:
    data = f"{prompt}\x00{salt}" if salt else prompt
    return int.from_bytes(hashlib.blake2b(data.encode(), digest_size=8).digest(), "big")


def _nth(seed: int, i: int) -> int:
    """The ``i``-th hash of a ``seed``."""
    return _mix64((seed + (i + 1) * _GOLDEN64) & _MASK64)


def _word_tokens(seed: int, n_tokens: int, words: Sequence[str]) -> list[str]:
    tokens: list[str] = []
    for i in range(n_tokens):
        h = _mix64((seed + (i + 1) * _GOLDEN64) & _MASK64)
        word = words[h % len(words)]
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


def _choice_salt(kind: str, choice: int) -> str:
    return f"{kind} {choice}" if kind or choice else ""


def mock_text(prompt: str, n_tokens: int, choice: int = 0) -> list[str]:
    """The deterministic token texts the mock generates for ``prompt`` (in choice ``choice``).

    Token ``i`` is a word picked by a hash of (prompt, choice, i); the first has no leading
    space, later ones start with a space (occasionally a newline). Some carry punctuation, some
    words are non-ASCII (accents, CJK, an emoji) so text encodings get exercised.
    """
    return _word_tokens(_seed(prompt, _choice_salt("", choice)), n_tokens, _WORDS)


def echo_text(prompt: str) -> list[str]:
    """The tokens of the ``echo`` option's answer: the prompt itself, a token per word, each
    with the whitespace before it (the last also with any after it); they join to ``prompt``."""
    return re.findall(r"\s*\S+\s*\Z|\s*\S+|\s+", prompt)


_THOUGHTS = (
    "okay", "so", "the", "user", "asks", "about", "let", "me", "think", "first", "maybe",
    "check", "wait", "hmm", "that", "means", "consider", "relay", "stream", "token", "answer",
    "carefully", "step", "then", "because", "it", "is", "not", "quite", "right", "yes", "naïve",
    "über", "考える", "🤔",
)  # fmt: skip


def mock_reasoning(prompt: str, n_tokens: int, choice: int = 0) -> list[str]:
    """The deterministic reasoning tokens (the ``reasoning`` option), shaped like ``mock_text``."""
    return _word_tokens(_seed(prompt, _choice_salt("reasoning", choice)), n_tokens, _THOUGHTS)


_REFUSALS = (
    "I'm sorry, but I can't help with that request.",
    "I'm sorry, I can't assist with that.",
    "I can't help with that, but I'm happy to help with something else.",
    "Sorry, I won't be able to provide that.",
)


def mock_refusal(prompt: str, choice: int = 0) -> list[str]:
    """The deterministic refusal (the ``refusal`` option): one sentence, a token per word."""
    sentence = _REFUSALS[_seed(prompt, _choice_salt("refusal", choice)) % len(_REFUSALS)]
    first, *rest = sentence.split(" ")
    return [first, *(" " + word for word in rest)]


@dataclass(frozen=True, slots=True)
class MockToolCall:
    """A tool call of the mock's answer; ``arguments`` is a JSON object's text."""

    id: str
    name: str
    arguments: str


_CITIES = ["Zürich", "Paris", "Tokyo", "Lisbon", "Nairobi", "Reykjavík", "São Paulo", "Seoul"]
_CURRENCIES = ["EUR", "USD", "CHF", "JPY", "GBP"]
# (name, JSON schema of the parameters): used when the request has no function tools.
_BUILTIN_FUNCTIONS: tuple[tuple[str, dict[str, Any]], ...] = (
    (
        "get_weather",
        {
            "type": "object",
            "properties": {
                "city": {"type": "string", "enum": _CITIES},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
        },
    ),
    (
        "search_web",
        {
            "type": "object",
            "properties": {
                "query": {"type": "string"},
                "max_results": {"type": "integer", "minimum": 1, "maximum": 10},
            },
        },
    ),
    (
        "get_time",
        {
            "type": "object",
            "properties": {
                "timezone": {
                    "type": "string",
                    "enum": ["Europe/Zurich", "Asia/Tokyo", "America/New_York", "UTC"],
                }
            },
        },
    ),
    (
        "convert_currency",
        {
            "type": "object",
            "properties": {
                "amount": {"type": "number", "minimum": 1, "maximum": 500},
                "from": {"type": "string", "enum": _CURRENCIES},
                "to": {"type": "string", "enum": _CURRENCIES},
            },
        },
    ),
)
_MAX_SCHEMA_DEPTH = 8


def _functions(tools: object, tool_choice: object) -> list[tuple[str, object]]:
    """(name, parameters schema) of the request's function tools, as a named choice narrows."""
    functions: list[tuple[str, object]] = []
    for tool in tools if isinstance(tools, list) else ():
        function = tool.get("function") if isinstance(tool, dict) else None
        if (
            isinstance(tool, dict)
            and tool.get("type", "function") == "function"
            and isinstance(function, dict)
            and isinstance(function.get("name"), str)
            and function["name"]
        ):
            functions.append((function["name"], function.get("parameters")))
    chosen = tool_choice.get("function") if isinstance(tool_choice, dict) else None
    if isinstance(chosen, dict) and isinstance(chosen.get("name"), str) and chosen["name"]:
        name = chosen["name"]
        schemas = [schema for fn_name, schema in functions if fn_name == name]
        return [(name, schemas[0] if schemas else None)]
    return functions


def _number(schema: dict[str, Any], key: str) -> float | None:
    value = schema.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _example(schema: object, h: int, text: str, depth: int = 0) -> Any:
    """A value that satisfies a simple JSON schema, picked by the hash ``h``.

    Handles ``const``, ``enum``, ``anyOf``/``oneOf`` (the first), object (every property),
    array (one item), string (``text``), integer/number (within minimum/maximum), boolean and
    null; anything else gets ``text``.
    """
    if depth > _MAX_SCHEMA_DEPTH or not isinstance(schema, dict):
        return text
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[h % len(enum)]
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return _example(options[0], h, text, depth + 1)
    type_ = schema.get("type")
    if isinstance(type_, list):
        type_ = next((t for t in type_ if t != "null"), "null")
    if type_ is None:
        type_ = "object" if "properties" in schema else "string"
    if type_ == "object":
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            return {}
        return {
            name: _example(sub, _nth(h, k), text, depth + 1)
            for k, (name, sub) in enumerate(properties.items())
        }
    if type_ == "array":
        return [_example(schema.get("items"), _nth(h, 0), text, depth + 1)]
    if type_ in ("integer", "number"):
        low, high = _number(schema, "minimum"), _number(schema, "maximum")
        if low is None:
            low = 1.0 if high is None else min(1.0, high)
        if high is None or high < low:
            high = low + 99
        if type_ == "integer":
            lo, hi = math.ceil(low), max(math.ceil(low), math.floor(high))
            return lo + h % (hi - lo + 1)
        value = round(low + (h % 10_001) / 10_000 * (high - low), 2)
        return min(max(value, low), high) if math.isfinite(value) else low
    if type_ == "boolean":
        return bool(h & 1)
    if type_ == "null":
        return None
    return text


def _snippet(prompt: str, limit: int = 40) -> str:
    """The string argument value: the prompt's first words (up to ``limit`` characters)."""
    text = " ".join(prompt.split())
    if len(text) > limit:
        cut = text[: limit + 1]
        text = cut.rsplit(" ", 1)[0] if " " in cut else cut[:limit]
    return text or "mock"


def mock_tool_calls(
    prompt: str,
    count: int,
    *,
    tools: object = None,
    tool_choice: object = None,
    choice: int = 0,
) -> list[MockToolCall]:
    """The deterministic tool calls (the ``tools`` option) of choice ``choice``.

    ``tools`` and ``tool_choice`` are the request's fields. With function tools, call ``i``
    uses function ``i % len(functions)`` (a named ``tool_choice`` leaves only that one);
    without, the built-in set from an offset picked by the prompt. Arguments are compact JSON
    built from the function's parameters schema (``_example``): strings get the prompt's
    first words (40 characters at most), enums and numbers are picked by a hash of
    (prompt, choice, i).
    Ids are ``call_`` and 24 hex digits of such a hash.
    """
    functions = _functions(tools, tool_choice)
    seed = _seed(prompt, _choice_salt("tools", choice))
    text = _snippet(prompt)
    calls = []
    for i in range(count):
        if functions:
            name, schema = functions[i % len(functions)]
        else:
            name, schema = _BUILTIN_FUNCTIONS[(seed + i) % len(_BUILTIN_FUNCTIONS)]
        h = _nth(seed, i)
        arguments = _example(schema, h, text)
        if not isinstance(arguments, dict):
            arguments = {}
        call_id = "call_" + hashlib.blake2b(h.to_bytes(8, "big"), digest_size=12).hexdigest()
        calls.append(MockToolCall(call_id, name, _json_bytes(arguments).decode()))
    return calls


# Token-like pieces of a JSON text: structure runs, short word runs, single characters.
_FRAGMENT = re.compile(r'\{"|"\}|":"|","|":|,"|\s?\w{1,6}|\s+|.', re.DOTALL)


def argument_fragments(arguments: str) -> list[str]:
    """How a tool call's arguments are streamed: fragments of a few characters each."""
    return _FRAGMENT.findall(arguments)


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


PieceKind = Literal["reasoning", "content", "refusal", "tool_call", "arguments"]


@dataclass(frozen=True, slots=True)
class _Piece:
    """One streamed part of a choice (one token): a chunk's delta."""

    kind: PieceKind
    text: str  # the token; a tool_call's function name; an arguments fragment
    call: int = 0  # the tool call's index (tool_call, arguments)
    call_id: str = ""  # (tool_call)

    def delta(self, reasoning_field: str) -> bytes:
        if self.kind == "tool_call":
            function = {"name": self.text, "arguments": ""}
            call = {"index": self.call, "id": self.call_id, "type": "function"}
            return _json_bytes({"tool_calls": [{**call, "function": function}]})
        if self.kind == "arguments":
            fragment = {"index": self.call, "function": {"arguments": self.text}}
            return _json_bytes({"tool_calls": [fragment]})
        key = reasoning_field if self.kind == "reasoning" else self.kind
        return b'{"%s":%s}' % (key.encode(), _json_str(self.text))


@dataclass(frozen=True, slots=True)
class SentChoice:
    """What one choice of a recorded answer carried so far, shaped like an OpenAI message.

    ``content``, ``reasoning`` and ``refusal`` are None when the answer has no such part
    (``reasoning`` is under the ``reasoning_field`` name on the wire); ``tool_calls`` holds the
    calls whose first chunk went out, with the arguments sent so far.
    """

    index: int
    content: str | None
    reasoning: str | None = None
    refusal: str | None = None
    tool_calls: tuple[MockToolCall, ...] = ()
    finish_reason: str | None = None


@dataclass(eq=False)
class RecordedRequest:
    """One chat-completions or Responses request the mock received, and what it did with it.

    ``completed`` is true once the server wrote its whole response as the fault dictates (an
    error response, ``no_finish`` and ``malformed`` count; ``stall`` and ``disconnect`` never
    complete). ``closed_by_client_at`` is the ``time.monotonic()`` at which the client closed
    the connection before the response was complete.

    A plain-text answer with one choice (the fast path) is ``planned_tokens``; any other
    (tool calls, reasoning, refusal, ``text=0``, ``n`` > 1) is ``planned_choices``, the pieces
    of each choice, one per token. ``tokens_sent`` counts tokens per choice (each choice sends
    one per step until it is done), ``finish_reason`` is that of choice 0 (``finish_reasons``
    has every choice's on the parts path); ``choices`` tells what each choice carried so far.

    A Responses request (``path`` "/v1/responses") is always ``planned_choices`` with one
    choice: its reasoning pieces are the reasoning summary, its content the message's text,
    its tool calls the function calls (``id`` is the ``call_id``). ``response_id`` is the
    ``resp_…`` id it was given, ``status`` the Response status last sent (None before
    ``response.created``; "in_progress", then "completed" or "incomplete"), and
    ``finish_reason`` its chat equivalent ("stop", "tool_calls", "length").
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
    planned_choices: list[list[_Piece]] = field(default_factory=list, repr=False)
    finish_reasons: list[str | None] = field(default_factory=list)
    path: str = "/v1/chat/completions"
    response_id: str | None = None
    status: str | None = None

    @property
    def sent_text(self) -> str:
        """Concatenation of the content deltas written to the client so far (choice 0)."""
        if self.planned_choices:
            return self._sent_choice(0).content or ""
        return "".join(self.planned_tokens[: self.tokens_sent])

    @property
    def choices(self) -> list[SentChoice]:
        """What each choice carried so far."""
        if not self.planned_choices:
            return [SentChoice(0, self.sent_text, finish_reason=self.finish_reason)]
        return [self._sent_choice(index) for index in range(len(self.planned_choices))]

    def _sent_choice(self, index: int) -> SentChoice:
        texts: dict[str, list[str]] = {"reasoning": [], "content": [], "refusal": []}
        calls: list[tuple[str, str, list[str]]] = []
        for piece in self.planned_choices[index][: self.tokens_sent]:
            if piece.kind == "tool_call":
                calls.append((piece.call_id, piece.text, []))
            elif piece.kind == "arguments":
                calls[piece.call][2].append(piece.text)
            else:
                texts[piece.kind].append(piece.text)
        options = self.options
        return SentChoice(
            index=index,
            content="".join(texts["content"]) if options.says_text else None,
            reasoning="".join(texts["reasoning"]) if options.reasoning else None,
            refusal="".join(texts["refusal"]) if options.refusal else None,
            tool_calls=tuple(MockToolCall(id_, name, "".join(args)) for id_, name, args in calls),
            finish_reason=self.finish_reasons[index],
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON form served by ``GET /_mock/requests``: the request's ``messages``
        (chat completions) and what was done with it."""
        choices = self.choices
        return {
            "index": self.index,
            "path": self.path,
            "stream_id": self.stream_id,
            "model": self.model,
            "options": dataclasses.asdict(self.options),
            "started_at": self.started_at,
            "sent_text": choices[0].content or "",
            "tokens_sent": self.tokens_sent,
            "finish_reason": self.finish_reason,
            "closed_by_client_at": self.closed_by_client_at,
            "completed": self.completed,
            "choices": [dataclasses.asdict(choice) for choice in choices],
            "response_id": self.response_id,
            "status": self.status,
            "messages": self.body.get("messages"),
        }


# --- HTTP plumbing --------------------------------------------------------------------------

_MAX_HEAD = 64 * 1024
_MAX_BODY = 32 * 1024 * 1024
_READ_SIZE = 64 * 1024
# Tokens per write at rate=0: big enough to amortise framing and syscalls.
_BATCH = 512
_CHUNK_END = b"0\r\n\r\n"
_MAX_N = 8  # choices a request may ask for
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
    n_choices: int = 1
    parts: bool = False  # not the plain-text fast path: see RecordedRequest.planned_choices
    limit: int | None = None  # the request's max_tokens (or max_completion_tokens)
    choice_finish: list[str] = field(default_factory=list)  # per choice, on the parts path


_MODELS = {
    "object": "list",
    "data": [{"id": "mock", "object": "model", "created": 0, "owned_by": "tokenrelay"}],
}


class MockModel:
    """The mock server; an async context manager that listens while entered.

    ``async with MockModel(port=0) as mock:`` binds a free port; ``mock.base_url`` is the
    OpenAI ``base_url`` ("http://127.0.0.1:43121/v1") and ``mock.requests`` lists the recorded
    chat-completions and Responses requests (the oldest are dropped beyond ``max_records``).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_records: int = 10_000,
        defaults: str = "",
    ) -> None:
        MockOptions.parse("", defaults)  # fails now rather than at each request
        self.defaults = defaults
        """Options for every request, under those its model name gives (``rate=0``)."""
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
        if route == ("POST", "/v1/responses"):
            return await self._responses(conn, request)
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
            body, options = _parse_chat_body(request.body, self.defaults)
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
        )
        if plan.parts:
            record.planned_choices, plan.choice_finish = _compose(body, options, plan)
            record.finish_reasons = [None] * plan.n_choices
        else:
            prompt = prompt_of(messages)
            record.planned_tokens = (
                echo_text(prompt)[: plan.n_tokens]
                if options.echo
                else mock_text(prompt, plan.n_tokens)
            )
        self._next_index += 1
        self._record(record)

        if options.fault in ("429", "500", "400"):
            await _send_fault_error(conn, options, plan.keep_alive, record)
            return plan.keep_alive

        if not body.get("stream"):
            respond_fn = _complete
        else:
            respond_fn = _stream_parts if plan.parts else _stream
        return await _serve(conn, record, plan.keep_alive, respond_fn(conn, record, plan))

    async def _responses(self, conn: _Connection, request: _Request) -> bool:
        started_at = time.monotonic()
        try:
            body, options = _parse_responses_body(request.body, self.defaults)
        except _ApiError as exc:
            await conn.send_json(exc.status, exc.payload, keep_alive=request.keep_alive)
            return request.keep_alive

        stream_id = request.headers.get("x-tokenrelay-stream")
        if options.times and self._requests_of(stream_id) >= options.times:
            options = dataclasses.replace(options, fault="none")
        plan = _responses_plan(body, options, request.keep_alive)
        pieces, plan.finish_reason = _choice_pieces(
            responses_prompt(body.get("input")),
            options,
            _chat_tools(body.get("tools")),
            _chat_tool_choice(body.get("tool_choice")),
            0,
            plan.limit,
        )
        plan.n_tokens, plan.choice_finish = len(pieces), [plan.finish_reason]
        record = RecordedRequest(
            index=self._next_index,
            stream_id=stream_id,
            model=body["model"],
            options=options,
            body=body,
            started_at=started_at,
            planned_choices=[pieces],
            finish_reasons=[None],
            path=request.path,
        )
        self._next_index += 1
        self._record(record)

        if options.fault in ("429", "500", "400"):
            await _send_fault_error(conn, options, plan.keep_alive, record)
            return plan.keep_alive
        respond_fn = _stream_response if body.get("stream") else _complete_response
        return await _serve(conn, record, plan.keep_alive, respond_fn(conn, record, plan))


async def _serve(
    conn: _Connection,
    record: RecordedRequest,
    keep_alive: bool,
    respond_coro: Coroutine[Any, Any, None],
) -> bool:
    """Run ``respond_coro`` while watching for the client hanging up (recorded in ``record``);
    returns whether the connection may serve another request."""
    respond = asyncio.create_task(respond_coro)
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
    return keep_alive and record.completed and not conn.peer_closed and not conn.server_closed


def _parse_body(raw: bytes) -> dict[str, Any]:
    """The request's JSON object, which must name a model."""
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
    return body


def _parse_options(body: dict[str, Any], defaults: str) -> MockOptions:
    try:
        return MockOptions.parse(body["model"], defaults)
    except MockOptionsError as exc:
        raise _ApiError(400, str(exc), code="invalid_value", param="model") from None


def _parse_chat_body(raw: bytes, defaults: str) -> tuple[dict[str, Any], MockOptions]:
    body = _parse_body(raw)
    if not isinstance(body.get("messages"), list):
        raise _ApiError(400, "'messages' must be an array", code="invalid_type", param="messages")
    n = body.get("n")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or not 0 < n <= _MAX_N):
        raise _ApiError(
            400,
            f"Invalid 'n': the mock answers 1 to {_MAX_N} choices, not {n!r}.",
            code="invalid_value",
            param="n",
        )
    return body, _parse_options(body, defaults)


def _plan(body: dict[str, Any], options: MockOptions, keep_alive: bool) -> _Plan:
    n_tokens = len(echo_text(prompt_of(body["messages"]))) if options.echo else options.tokens
    finish_reason = "stop"
    limits = [
        value
        for key in ("max_tokens", "max_completion_tokens")
        if isinstance(value := body.get(key), int) and not isinstance(value, bool)
    ]
    limit = min(limits) if limits else None
    if limit is not None and limit < n_tokens:
        n_tokens, finish_reason = max(0, limit), "length"
    if options.fault in _TRUNCATING_FAULTS:
        n_tokens = min(n_tokens, options.after)
    if options.fault == "length":
        finish_reason = "length"
    stream_options = body.get("stream_options")
    include_usage = isinstance(stream_options, dict) and bool(stream_options.get("include_usage"))
    prompt_tokens = sum(len(_message_text(m).split()) for m in body["messages"])
    n_choices = body.get("n") or 1
    parts = bool(
        n_choices > 1
        or options.tools
        or options.reasoning
        or options.refusal
        or not options.says_text
    )
    return _Plan(
        keep_alive,
        include_usage,
        n_tokens,
        finish_reason,
        prompt_tokens,
        n_choices,
        parts,
        limit,
    )


def _compose(
    body: dict[str, Any], options: MockOptions, plan: _Plan
) -> tuple[list[list[_Piece]], list[str]]:
    """The pieces of each choice (cut by max_tokens and faults), and its finish_reason.

    A choice is its reasoning, then its refusal or text, then its tool calls (the first chunk
    of each, then its arguments fragments).
    """
    prompt = prompt_of(body["messages"])
    choices: list[list[_Piece]] = []
    finish_reasons: list[str] = []
    for choice in range(plan.n_choices):
        pieces, finish_reason = _choice_pieces(
            prompt, options, body.get("tools"), body.get("tool_choice"), choice, plan.limit
        )
        choices.append(pieces)
        finish_reasons.append(finish_reason)
    return choices, finish_reasons


def _choice_pieces(
    prompt: str,
    options: MockOptions,
    tools: object,
    tool_choice: object,
    choice: int,
    limit: int | None,
) -> tuple[list[_Piece], str]:
    """The pieces of one choice (cut by ``limit`` and faults) and its finish_reason.

    ``tools`` and ``tool_choice`` are in the chat-completions form (see ``mock_tool_calls``).
    """
    pieces = [_Piece("reasoning", t) for t in mock_reasoning(prompt, options.reasoning, choice)]
    if options.refusal:
        pieces += [_Piece("refusal", t) for t in mock_refusal(prompt, choice)]
    if options.says_text:
        text = echo_text(prompt) if options.echo else mock_text(prompt, options.tokens, choice)
        pieces += [_Piece("content", t) for t in text]
    calls = mock_tool_calls(
        prompt, options.tools, tools=tools, tool_choice=tool_choice, choice=choice
    )
    for i, call in enumerate(calls):
        pieces.append(_Piece("tool_call", call.name, i, call.id))
        pieces += [_Piece("arguments", f, i) for f in argument_fragments(call.arguments)]
    finish_reason = "tool_calls" if options.tools else "stop"
    if limit is not None and limit < len(pieces):
        pieces, finish_reason = pieces[: max(0, limit)], "length"
    if options.fault in _TRUNCATING_FAULTS:
        pieces = pieces[: options.after]
    if options.fault == "length":
        finish_reason = "length"
    return pieces, finish_reason


def _usage(
    plan: _Plan, completion_tokens: int, reasoning_tokens: int | None = None
) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": plan.prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": plan.prompt_tokens + completion_tokens,
    }
    if reasoning_tokens is not None:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
    return usage


def _parts_usage(record: RecordedRequest, plan: _Plan) -> dict[str, Any]:
    """Usage of the pieces sent so far, over every choice."""
    sent = [choice[: record.tokens_sent] for choice in record.planned_choices]
    reasoning = sum(p.kind == "reasoning" for choice in sent for p in choice)
    return _usage(plan, sum(map(len, sent)), reasoning if record.options.reasoning else None)


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


class _Frame:
    """The bytes around each chunk of one streamed answer."""

    def __init__(self, record: RecordedRequest, plan: _Plan) -> None:
        self.prefix = (
            f'data: {{"id":"{_new_id()}","object":"chat.completion.chunk",'
            f'"created":{int(time.time())},"model":{_json_str(record.model).decode()},'
            '"system_fingerprint":"fp_mock","choices":['
        ).encode()
        # With include_usage OpenAI puts "usage":null on every chunk but the last.
        self.suffix = (b',"usage":null' if plan.include_usage else b"") + b"}\n\n"

    def event(self, index: int, delta: bytes, finish_reason: str | None = None) -> bytes:
        finish = b"null" if finish_reason is None else _json_str(finish_reason)
        choice = b'{"index":%d,"delta":%s,"logprobs":null,"finish_reason":%s}]' % (
            index,
            delta,
            finish,
        )
        return self.prefix + choice + self.suffix

    def usage(self, usage: dict[str, Any]) -> bytes:
        return b'%s],"usage":%s}\n\n' % (self.prefix, _json_bytes(usage))


def _stream_head(plan: _Plan) -> bytes:
    headers = [
        ("content-type", "text/event-stream; charset=utf-8"),
        ("cache-control", "no-cache"),
        ("transfer-encoding", "chunked"),
    ]
    if not plan.keep_alive:
        headers.append(("connection", "close"))
    return _head(200, headers)


async def _end_stream(
    conn: _Connection,
    record: RecordedRequest,
    frame: _Frame,
    finishing: list[tuple[int, str]],
    usage: Callable[[], dict[str, Any]] | None,
) -> None:
    """After the last token: the fault, or the ``finishing`` choices' finish chunks, the usage
    chunk (if ``usage``) and ``[DONE]``."""
    fault, writer = record.options.fault, conn.writer
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
        events = [frame.event(index, b"{}", reason) for index, reason in finishing]
        if usage is not None:
            events.append(frame.usage(usage()))
        events.append(_DONE)
        writer.write(_chunk(b"".join(events)) + _CHUNK_END)
        _finished(record, finishing)
        record.completed = True
        await writer.drain()


def _finished(record: RecordedRequest, finishing: list[tuple[int, str]]) -> None:
    for index, reason in finishing:
        if record.finish_reasons:
            record.finish_reasons[index] = reason
        if index == 0:
            record.finish_reason = reason


async def _stream(conn: _Connection, record: RecordedRequest, plan: _Plan) -> None:
    """Send a plain-text chat completion as a chunked ``text/event-stream`` (the fast path)."""
    options, writer = record.options, conn.writer
    frame = _Frame(record, plan)
    prefix, suffix = frame.prefix, frame.suffix
    role = frame.event(0, b'{"role":"assistant","content":""}')
    writer.write(_stream_head(plan) + _chunk(role))
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

    usage = functools.partial(_usage, plan, sent) if plan.include_usage else None
    await _end_stream(conn, record, frame, [(0, plan.finish_reason)], usage)


def _role_delta(options: MockOptions) -> bytes:
    if options.refusal:
        return b'{"role":"assistant","content":null,"refusal":""}'
    if options.says_text:
        return b'{"role":"assistant","content":""}'
    return b'{"role":"assistant","content":null}'


async def _stream_parts(conn: _Connection, record: RecordedRequest, plan: _Plan) -> None:
    """Send any other answer as a chunked ``text/event-stream``, one piece per chunk.

    Step ``k`` sends piece ``k`` of every choice (interleaved, in index order); a choice's
    finish chunk goes out with the step after its last piece.
    """
    options, writer = record.options, conn.writer
    frame = _Frame(record, plan)
    choices = record.planned_choices
    role = _role_delta(options)
    writer.write(
        _stream_head(plan) + _chunk(b"".join(frame.event(i, role) for i in range(len(choices))))
    )
    await writer.drain()

    field_name = options.reasoning_field
    finishes = options.fault in ("none", "length")
    steps = max(map(len, choices), default=0)
    rate, first_at = options.rate, record.started_at + options.ttft
    sent = 0
    while sent < steps:
        await _sleep_until(first_at + sent / rate if rate else first_at)
        end = sent + _BATCH
        if rate:
            end = min(end, max(sent + 1, int((time.monotonic() - first_at) * rate) + 1))
        end = min(end, steps)
        events: list[bytes] = []
        finishing: list[tuple[int, str]] = []
        for k in range(sent, end):
            for index, pieces in enumerate(choices):
                if k < len(pieces):
                    piece = pieces[k]
                    if options.stamp and piece.kind == "content":
                        piece = pieces[k] = _Piece("content", f" t{time.time_ns()}")
                    events.append(frame.event(index, piece.delta(field_name)))
                elif k == len(pieces) and finishes:
                    reason = plan.choice_finish[index]
                    events.append(frame.event(index, b"{}", reason))
                    finishing.append((index, reason))
        writer.write(_chunk(b"".join(events)))
        record.tokens_sent = sent = end
        _finished(record, finishing)
        await writer.drain()

    last = [(i, plan.choice_finish[i]) for i, pieces in enumerate(choices) if len(pieces) == steps]
    usage = functools.partial(_parts_usage, record, plan) if plan.include_usage else None
    await _end_stream(conn, record, frame, last, usage)


def _message(choice: SentChoice, options: MockOptions) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": choice.content,
        "refusal": choice.refusal,
        "annotations": [],
    }
    if choice.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in choice.tool_calls
        ]
    if choice.reasoning is not None:
        message[options.reasoning_field] = choice.reasoning
    return message


async def _whole_answer_due(
    conn: _Connection, record: RecordedRequest, plan: _Plan, steps: int
) -> bool:
    """Wait until a whole (non-streamed) answer of ``steps`` tokens would be generated; then
    answer the faults that take its place (``stall``, ``disconnect``, ``malformed``).
    Whether the answer itself is still to be sent."""
    options = record.options
    done_at = record.started_at + options.ttft
    if options.rate and steps > 1:
        done_at += (steps - 1) / options.rate
    await _sleep_until(done_at)
    if options.fault == "stall":
        await _hang()
    elif options.fault == "disconnect":
        conn.server_closed = True
        conn.writer.close()
    elif options.fault == "malformed":
        record.completed = True
        await conn.send(200, b"{not json", keep_alive=plan.keep_alive)
    else:
        return True
    return False


async def _complete(conn: _Connection, record: RecordedRequest, plan: _Plan) -> None:
    """Send a chat completion as one JSON object, once its last token would be generated."""
    options = record.options
    steps = max(map(len, record.planned_choices), default=0) if plan.parts else plan.n_tokens
    if await _whole_answer_due(conn, record, plan, steps):
        if options.stamp and not plan.parts:
            record.planned_tokens[:] = _stamps(plan.n_tokens)
        elif options.stamp:
            stamp = _Piece("content", f" t{time.time_ns()}")
            for pieces in record.planned_choices:
                pieces[:] = [stamp if p.kind == "content" else p for p in pieces]
        record.tokens_sent = steps
        if options.fault != "no_finish":
            reasons = plan.choice_finish if plan.parts else [plan.finish_reason]
            _finished(record, list(enumerate(reasons)))
        completion = {
            "id": _new_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": record.model,
            "system_fingerprint": "fp_mock",
            "choices": [
                {
                    "index": choice.index,
                    "message": _message(choice, options),
                    "logprobs": None,
                    "finish_reason": choice.finish_reason,
                }
                for choice in record.choices
            ],
            "usage": _parts_usage(record, plan) if plan.parts else _usage(plan, steps),
        }
        record.completed = True
        await conn.send_json(200, completion, keep_alive=plan.keep_alive)


# --- the Responses API ----------------------------------------------------------------------


def responses_prompt(input_: object) -> str:
    """The prompt a Responses request's ``input`` keys the mock's answer on.

    A string input is the prompt; a list of input items gives the text of its last ``user``
    message (content a string or ``input_text`` parts, concatenated), as ``prompt_of`` does
    for chat messages. So the same prompt gets the same answer from both APIs.
    """
    if isinstance(input_, str):
        return input_
    if isinstance(input_, list):
        return prompt_of(input_)
    return ""


def _chat_tools(tools: object) -> list[dict[str, Any]] | None:
    """A Responses request's function tools (``{"type": "function", "name": ...}``) in the
    chat-completions form ``mock_tool_calls`` reads; other tools are dropped."""
    if not isinstance(tools, list):
        return None
    return [
        {"type": "function", "function": {"name": t.get("name"), "parameters": t.get("parameters")}}
        for t in tools
        if isinstance(t, dict) and t.get("type") == "function"
    ]


def _chat_tool_choice(tool_choice: object) -> object:
    """A Responses named tool choice (``{"type": "function", "name": ...}``) in chat form."""
    if isinstance(tool_choice, dict) and tool_choice.get("type") == "function":
        return {"type": "function", "function": {"name": tool_choice.get("name")}}
    return tool_choice


def _parse_responses_body(raw: bytes, defaults: str) -> tuple[dict[str, Any], MockOptions]:
    body = _parse_body(raw)
    if "input" in body and not isinstance(body["input"], str | list):
        raise _ApiError(
            400, "'input' must be a string or an array", code="invalid_type", param="input"
        )
    limit = body.get("max_output_tokens")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise _ApiError(
            400,
            f"Invalid 'max_output_tokens': expected a non-negative integer, got {limit!r}.",
            code="invalid_value",
            param="max_output_tokens",
        )
    return body, _parse_options(body, defaults)


def _responses_plan(body: dict[str, Any], options: MockOptions, keep_alive: bool) -> _Plan:
    """The plan of a Responses request; ``_choice_pieces`` fills in the pieces' count and the
    finish_reason. Input tokens: the words of ``instructions`` and of every input message."""
    input_ = body.get("input")
    texts = [input_] if isinstance(input_, str) else []
    if isinstance(input_, list):
        texts += [_message_text(item) for item in input_]
    if isinstance(instructions := body.get("instructions"), str):
        texts.append(instructions)
    return _Plan(
        keep_alive,
        include_usage=False,
        n_tokens=0,
        finish_reason="stop",
        prompt_tokens=sum(len(text.split()) for text in texts),
        parts=True,
        limit=body.get("max_output_tokens"),
    )


ItemStatus = Literal["in_progress", "completed", "incomplete"]
_ItemKind = Literal["reasoning", "message", "function_call"]
_ITEM_PREFIXES: dict[_ItemKind, str] = {"reasoning": "rs", "message": "msg", "function_call": "fc"}


@dataclass(slots=True)
class _OutputItem:
    """One output item of a Response being streamed, with its deltas so far."""

    kind: _ItemKind
    output_index: int
    refusal: bool = False  # (message) a refusal part instead of output_text
    call_id: str = ""  # (function_call)
    name: str = ""  # (function_call)
    deltas: list[str] = field(default_factory=list)
    status: ItemStatus = "in_progress"
    id: str = ""

    def __post_init__(self) -> None:
        self.id = f"{_ITEM_PREFIXES[self.kind]}_{secrets.token_hex(24)}"

    @property
    def text(self) -> str:
        return "".join(self.deltas)

    def part(self) -> dict[str, Any]:
        """The message's content part."""
        if self.refusal:
            return {"type": "refusal", "refusal": self.text}
        return {"type": "output_text", "annotations": [], "logprobs": [], "text": self.text}

    def to_json(self, *, added: bool = False) -> dict[str, Any]:
        """The item as ``response.output_item.added`` (``added``: empty) or as the Response's
        ``output`` and ``response.output_item.done`` carry it."""
        if self.kind == "reasoning":
            summary = [] if added else [{"type": "summary_text", "text": self.text}]
            item: dict[str, Any] = {"id": self.id, "type": "reasoning", "summary": summary}
            if self.status == "incomplete":
                item["status"] = self.status
            return item
        if self.kind == "message":
            return {
                "id": self.id,
                "type": "message",
                "status": self.status,
                "content": [] if added else [self.part()],
                "role": "assistant",
            }
        return {
            "id": self.id,
            "type": "function_call",
            "status": self.status,
            "arguments": "" if added else self.text,
            "call_id": self.call_id,
            "name": self.name,
        }


def _item_key(piece: _Piece) -> tuple[_ItemKind, int]:
    if piece.kind == "reasoning":
        return "reasoning", 0
    if piece.kind in ("content", "refusal"):
        return "message", 0
    return "function_call", piece.call


class _ResponseBuilder:
    """Builds one Response piece by piece, and the SSE events that stream it.

    Events are numbered by ``sequence_number`` from 0 without a gap; each piece is one delta
    event (a function call's first piece is its ``response.output_item.added``), preceded by
    the close of the previous output item and the opening of its own when it starts one.
    After ``response.created`` and ``response.in_progress``, the items in output order:

    - reasoning: ``output_item.added`` (``summary: []``), ``reasoning_summary_part.added``,
      ``reasoning_summary_text.delta`` x N, ``reasoning_summary_text.done``,
      ``reasoning_summary_part.done``, ``output_item.done``;
    - text: ``output_item.added`` (a message, ``content: []``), ``content_part.added``,
      ``output_text.delta`` x N (``logprobs: []``), ``output_text.done``,
      ``content_part.done``, ``output_item.done`` (a refusal: ``refusal.delta``/``.done``);
    - each function call: ``output_item.added`` (``arguments: ""``),
      ``function_call_arguments.delta`` x fragments, ``function_call_arguments.done``,
      ``output_item.done``;

    then ``response.completed`` (or ``response.incomplete``, the cut item "incomplete") with
    the whole Response. Every name above is prefixed with ``response.``.
    """

    def __init__(self, record: RecordedRequest, plan: _Plan) -> None:
        self.record = record
        self.plan = plan
        self.id = f"resp_{secrets.token_hex(24)}"
        # The wall-clock time the request came in.
        self.created_at = int(time.time() - (time.monotonic() - record.started_at))
        self.items: list[_OutputItem] = []
        self.open: _OutputItem | None = None
        self.open_key: tuple[_ItemKind, int] | None = None
        self.sequence = 0
        self.tokens = 0  # pieces added
        record.response_id = self.id

    def _event(self, type_: str, **fields: Any) -> bytes:
        data = _json_bytes({"type": type_, **fields, "sequence_number": self.sequence})
        self.sequence += 1
        return b"event: %s\ndata: %s\n\n" % (type_.encode(), data)

    def start(self) -> bytes:
        """``response.created`` and ``response.in_progress``."""
        snapshot = self.response("in_progress")
        return self._event("response.created", response=snapshot) + self._event(
            "response.in_progress", response=snapshot
        )

    def add(self, piece: _Piece) -> bytes:
        """The events of one more piece."""
        events = b""
        key = _item_key(piece)
        if self.open is None or key != self.open_key:
            events = self._close("completed") + self._open(piece, key)
        item = self.open
        assert item is not None
        self.tokens += 1
        if piece.kind == "tool_call":
            return events  # the item's added event was the piece
        item.deltas.append(piece.text)
        ids = {"item_id": item.id, "output_index": item.output_index}
        if piece.kind == "reasoning":
            return events + self._event(
                "response.reasoning_summary_text.delta", delta=piece.text, **ids, summary_index=0
            )
        if piece.kind == "content":
            return events + self._event(
                "response.output_text.delta",
                content_index=0,
                delta=piece.text,
                item_id=item.id,
                logprobs=[],
                output_index=item.output_index,
            )
        if piece.kind == "refusal":
            return events + self._event(
                "response.refusal.delta", content_index=0, delta=piece.text, **ids
            )
        return events + self._event(
            "response.function_call_arguments.delta", delta=piece.text, **ids
        )

    def _open(self, piece: _Piece, key: tuple[_ItemKind, int]) -> bytes:
        index = len(self.items)
        if piece.kind == "tool_call":
            item = _OutputItem("function_call", index, call_id=piece.call_id, name=piece.text)
        elif piece.kind == "reasoning":
            item = _OutputItem("reasoning", index)
        else:
            item = _OutputItem("message", index, refusal=piece.kind == "refusal")
        self.items.append(item)
        self.open, self.open_key = item, key
        events = self._event(
            "response.output_item.added", item=item.to_json(added=True), output_index=index
        )
        ids = {"item_id": item.id, "output_index": index}
        if item.kind == "reasoning":
            events += self._event(
                "response.reasoning_summary_part.added",
                **ids,
                part={"type": "summary_text", "text": ""},
                summary_index=0,
            )
        elif item.kind == "message":
            events += self._event(
                "response.content_part.added", content_index=0, **ids, part=item.part()
            )
        return events

    def _close(self, status: ItemStatus) -> bytes:
        """The done events of the open item, if any."""
        item, self.open, self.open_key = self.open, None, None
        if item is None:
            return b""
        item.status = status
        ids = {"item_id": item.id, "output_index": item.output_index}
        if item.kind == "reasoning":
            part: dict[str, Any] = {"part": {"type": "summary_text", "text": item.text}}
            if status == "incomplete":
                part["status"] = status
            events = self._event(
                "response.reasoning_summary_text.done", **ids, summary_index=0, text=item.text
            ) + self._event("response.reasoning_summary_part.done", **ids, **part, summary_index=0)
        elif item.kind == "message" and item.refusal:
            events = self._event(
                "response.refusal.done", content_index=0, **ids, refusal=item.text
            ) + self._event("response.content_part.done", content_index=0, **ids, part=item.part())
        elif item.kind == "message":
            events = self._event(
                "response.output_text.done",
                content_index=0,
                item_id=item.id,
                logprobs=[],
                output_index=item.output_index,
                text=item.text,
            ) + self._event("response.content_part.done", content_index=0, **ids, part=item.part())
        else:
            events = self._event(
                "response.function_call_arguments.done", arguments=item.text, **ids
            )
        return events + self._event(
            "response.output_item.done", item=item.to_json(), output_index=item.output_index
        )

    def finish(self) -> tuple[ItemStatus, bytes]:
        """Close the open item and end the Response: its status, and the events."""
        status: ItemStatus = "incomplete" if self.plan.finish_reason == "length" else "completed"
        events = self._close(status)
        return status, events + self._event(f"response.{status}", response=self.response(status))

    def response(self, status: ItemStatus) -> dict[str, Any]:
        """The Response object, with the output so far (usage once it is done)."""
        body = self.record.body
        usage = None
        if status != "in_progress":
            reasoning = sum(len(i.deltas) for i in self.items if i.kind == "reasoning")
            usage = {
                "input_tokens": self.plan.prompt_tokens,
                "input_tokens_details": {"cache_write_tokens": 0, "cached_tokens": 0},
                "output_tokens": self.tokens,
                "output_tokens_details": {"reasoning_tokens": reasoning},
                "total_tokens": self.plan.prompt_tokens + self.tokens,
            }
        reasoning_config = body.get("reasoning")
        tools = body.get("tools")
        text = body.get("text")
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": body.get("background") is True,
            "completed_at": int(time.time()) if status == "completed" else None,
            "error": None,
            "incomplete_details": (
                {"reason": "max_output_tokens"} if status == "incomplete" else None
            ),
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": None,
            "model": self.record.model,
            "output": [item.to_json() for item in self.items],
            "parallel_tool_calls": body.get("parallel_tool_calls") is not False,
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {
                "effort": None,
                "summary": None,
                **(reasoning_config if isinstance(reasoning_config, dict) else {}),
            },
            "service_tier": "default",
            "store": body.get("store") is not False,
            "temperature": 1.0,
            "text": text if isinstance(text, dict) else {"format": {"type": "text"}},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": tools if isinstance(tools, list) else [],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": usage,
            "user": None,
            "metadata": body.get("metadata") or {},
        }


async def _stream_response(conn: _Connection, record: RecordedRequest, plan: _Plan) -> None:
    """Stream a Response as OpenAI does: ``event:``/``data:`` SSE, no ``[DONE]``."""
    options, writer = record.options, conn.writer
    builder = _ResponseBuilder(record, plan)
    pieces = record.planned_choices[0]
    writer.write(_stream_head(plan) + _chunk(builder.start()))
    record.status = "in_progress"
    await writer.drain()

    rate, first_at = options.rate, record.started_at + options.ttft
    sent = 0
    while sent < len(pieces):
        await _sleep_until(first_at + sent / rate if rate else first_at)
        end = sent + _BATCH
        if rate:
            end = min(end, max(sent + 1, int((time.monotonic() - first_at) * rate) + 1))
        end = min(end, len(pieces))
        events: list[bytes] = []
        for k in range(sent, end):
            if options.stamp and pieces[k].kind == "content":
                pieces[k] = _Piece("content", f" t{time.time_ns()}")
            events.append(builder.add(pieces[k]))
        writer.write(_chunk(b"".join(events)))
        record.tokens_sent = sent = end
        await writer.drain()
    if not pieces:
        await _sleep_until(first_at)

    fault = options.fault
    if fault == "stall":
        await _hang()
    elif fault == "disconnect":
        conn.server_closed = True
        writer.close()  # flushes what was written, then FIN mid-body (no last chunk)
    elif fault in ("no_finish", "malformed"):
        last = b"" if fault == "no_finish" else _chunk(b"data: {not json\n\n")
        writer.write(last + _CHUNK_END)
        record.completed = True
        await writer.drain()
    else:
        record.status, events_end = builder.finish()
        writer.write(_chunk(events_end) + _CHUNK_END)
        _finished(record, [(0, plan.finish_reason)])
        record.completed = True
        await writer.drain()


async def _complete_response(conn: _Connection, record: RecordedRequest, plan: _Plan) -> None:
    """Send a Response as one JSON object, once its last token would be generated.

    ``no_finish`` leaves it "in_progress" with its items open.
    """
    options = record.options
    pieces = record.planned_choices[0]
    if await _whole_answer_due(conn, record, plan, len(pieces)):
        if options.stamp:
            stamp = _Piece("content", f" t{time.time_ns()}")
            pieces[:] = [stamp if p.kind == "content" else p for p in pieces]
        builder = _ResponseBuilder(record, plan)
        for piece in pieces:
            builder.add(piece)
        record.tokens_sent = len(pieces)
        status: ItemStatus = "in_progress"
        if options.fault != "no_finish":
            status, _ = builder.finish()
            _finished(record, [(0, plan.finish_reason)])
        record.status = status
        record.completed = True
        await conn.send_json(200, builder.response(status), keep_alive=plan.keep_alive)


# --- entry points ---------------------------------------------------------------------------


async def serve(host: str, port: int, defaults: str = "") -> None:
    """Run a mock model server until cancelled, printing its URL once it listens."""
    async with MockModel(host, port, defaults=defaults) as mock:
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
    parser = argparse.ArgumentParser(description="Mock OpenAI-compatible model server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000, help="0 picks a free port")
    args = parser.parse_args(argv)
    asyncio.run(_run(args.host, args.port))


if __name__ == "__main__":
    main()
