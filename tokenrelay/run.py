"""``tokenrelay run "prompt"``: create a stream and print its answer as it arrives.

stdout gets what the model answers: its text, ``refused: …`` for a refusal, and a line
``→ tool call name({"arg": …})`` for each tool call once its arguments are whole. The
model's reasoning goes to stderr, under a ``thinking:`` header and indented, so that
``tokenrelay run … > answer.txt`` keeps the answer alone. On a terminal the marks are
coloured and the reasoning is grey; piped, the output is plain text (no ANSI codes, nor
with ``NO_COLOR`` set).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from typing import Any, TextIO

import httpx2

from shared.client import ClientEvent, GatewayError, TokenRelayClient
from shared.completion import CompletionSoFar

THINKING_INDENT = "  "

_RESET = "\x1b[0m"
_DIM = "\x1b[2m"
_GREY = "\x1b[90m"
_CYAN = "\x1b[36m"
_RED = "\x1b[1;31m"


async def run(
    prompt: str,
    *,
    url: str,
    model: str,
    api_key: str | None,
    max_tokens: int | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    color: bool | None = None,
) -> int:
    """Print the answer to ``out`` as it comes, its reasoning to ``err``; the exit status: 0,
    or 1 on an ``error`` event or a refused request. ``color``: ANSI marks (default: on each
    of ``out`` and ``err`` that is a terminal, unless ``NO_COLOR`` is set). Cancelled
    (Ctrl-C), it cancels the generation before re-raising."""
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # a line per request otherwise
    params: dict[str, Any] = {} if max_tokens is None else {"max_tokens": max_tokens}
    messages = [{"role": "user", "content": prompt}]
    printer = AnswerPrinter(out, err, color=color)
    async with TokenRelayClient(url, api_key=api_key) as client:
        try:
            created = await client.create(messages, model=model, **params)
        except GatewayError as error:
            print(f"error: {error.code}: {error.message}", file=err)
            return 1
        except httpx2.TransportError as error:
            print(f"error: cannot reach {url}: {error}", file=err)
            return 1
        try:
            async for event, so_far in client.stream_answer(created.id, token=created.read_token):
                printer.add(event, so_far)
                if event.type == "error":
                    printer.end()
                    print(f"error: {event.data['code']}: {event.data['message']}", file=err)
                    return 1
        except GatewayError as error:
            printer.end()
            print(f"error: {error.code}: {error.message}", file=err)
            return 1
        except asyncio.CancelledError:
            printer.end()
            await client.cancel(created.id, token=created.read_token)
            raise
    printer.end()
    return 0


def _colored(stream: TextIO, color: bool | None) -> bool:
    if color is not None:
        return color
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def tool_call_line(call: dict[str, Any]) -> str:
    """``→ tool call name({...})``: the arguments on one line (re-encoded if they are JSON,
    as sent otherwise)."""
    function = call.get("function") or {}
    name = str(function.get("name") or "?")
    arguments = str(function.get("arguments") or "")
    try:
        arguments = json.dumps(json.loads(arguments), ensure_ascii=False)
    except ValueError:
        pass
    return f"→ tool call {name}({arguments})"


def _whole(call: dict[str, Any]) -> bool:
    """Whether a tool call's arguments are complete: a JSON object can end only once."""
    arguments = (call.get("function") or {}).get("arguments")
    if not isinstance(arguments, str):
        return False
    try:
        return isinstance(json.loads(arguments), dict)
    except ValueError:
        return False


class AnswerPrinter:
    """Prints choice 0 of an answer as its events come (``add``), then ``end``."""

    def __init__(self, out: TextIO, err: TextIO, *, color: bool | None = None) -> None:
        self.out, self.err = out, err
        self._out_color = _colored(out, color)
        self._err_color = _colored(err, color)
        self._out_at_line_start = True
        self._err_at_line_start = True
        self._thinking = False
        self._refusing = False
        self._printed_calls: set[int] = set()

    def add(self, event: ClientEvent, so_far: CompletionSoFar) -> None:
        """One event, with the answer so far including it."""
        if event.type == "delta" and event.choice == 0:
            for key in ("reasoning_content", "reasoning"):
                if isinstance(event.data.get(key), str):
                    self.reasoning(event.data[key])
        if event.text:
            self.text(event.text)
        if event.type == "delta" and event.choice == 0:
            if isinstance(event.data.get("refusal"), str):
                self.refusal(event.data["refusal"])
            if event.data.get("tool_calls"):
                self._tool_calls(so_far, finished=False)
        if event.type == "done":
            self._tool_calls(so_far, finished=True)

    def reasoning(self, fragment: str) -> None:
        if not fragment:
            return
        if not self._thinking:
            if self.out.isatty() and not self._out_at_line_start:
                self._write_out("\n")  # the same terminal, most likely
            self._end_err_line()
            self._write_err(self._style("thinking:", _DIM, self._err_color) + "\n")
            self._thinking = True
        lines = fragment.split("\n")
        for number, line in enumerate(lines):
            if number:
                self._write_err("\n")
            if line:
                indent = THINKING_INDENT if self._err_at_line_start else ""
                self._write_err(indent + self._style(line, _GREY, self._err_color))

    def text(self, fragment: str) -> None:
        if not fragment:
            return
        self._stop_thinking()
        self._write_out(fragment)

    def refusal(self, fragment: str) -> None:
        if not fragment:
            return
        self._stop_thinking()
        if not self._refusing:
            self._end_out_line()
            self._write_out(self._style("refused:", _RED, self._out_color) + " ")
            self._refusing = True
        self._write_out(fragment)

    def tool_call(self, call: dict[str, Any]) -> None:
        self._stop_thinking()
        self._end_out_line()
        line = tool_call_line(call)
        self._write_out(self._style(line, _CYAN, self._out_color) + "\n")

    def end(self) -> None:
        """The stream is over (or abandoned): close the open lines."""
        self._stop_thinking()
        self._end_out_line()

    def _tool_calls(self, so_far: CompletionSoFar, *, finished: bool) -> None:
        """Print each tool call once it is whole; at the end, every one not printed yet."""
        for call in so_far.choice(0).tool_calls:
            index = call.get("index")
            if not isinstance(index, int) or index in self._printed_calls:
                continue
            if finished or _whole(call):
                self._printed_calls.add(index)
                self.tool_call(call)

    def _stop_thinking(self) -> None:
        if self._thinking:
            self._end_err_line()
            self._thinking = False

    def _style(self, text: str, style: str, color: bool) -> str:
        return f"{style}{text}{_RESET}" if color else text

    def _end_out_line(self) -> None:
        if not self._out_at_line_start:
            self._write_out("\n")

    def _end_err_line(self) -> None:
        if not self._err_at_line_start:
            self._write_err("\n")

    def _write_out(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()
        self._out_at_line_start = text.endswith("\n")

    def _write_err(self, text: str) -> None:
        self.err.write(text)
        self.err.flush()
        self._err_at_line_start = text.endswith("\n")
