"""The AI SDK's UI message stream: a generation's events as ``UIMessageChunk`` objects.

One assistant message per generation: ``start`` (its ``messageId``) and ``start-step``,
then choice 0's text as ``text-*`` parts, its reasoning as ``reasoning-*`` parts and its
tool calls as ``tool-input-*`` parts (``toolCallId`` is the upstream's call id; the parsed
arguments arrive in ``tool-input-available`` when the answer ends), then ``finish-step`` and
``finish`` with its ``finishReason`` — or, for a cancelled generation, ``abort``; for a failed
one, ``error``. The frames end with ``data: [DONE]``.

Only the fields the AI SDK's chunk schema declares are sent: its older clients validate each
chunk strictly and reject any other. A refusal is shown as the answer's text (the SDK has no
part for one); other choices (``n`` > 1), logprobs and audio are not part of a chat's message
(they stay in the stream for every other reader).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from shared.events import EventType, StreamEvent

Chunk = dict[str, Any]

FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content-filter",
    "tool_calls": "tool-calls",
}
"""OpenAI's finish reasons as the AI SDK names them (any other is ``other``)."""

REASONING_FIELDS = ("reasoning_content", "reasoning")
"""Where upstreams put reasoning in a delta (DeepSeek and vLLM; OpenRouter and Ollama)."""

DONE_FRAME = b"data: [DONE]\n\n"


@dataclass(slots=True)
class _ToolCall:
    id: str
    name: str
    arguments: list[str] = field(default_factory=list)


class UIMessageChunks:
    """One reader's translation of a generation's events into chunks, in order."""

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        self._open: tuple[str, str] | None = None  # ("text" | "reasoning", part id)
        self._parts = 0
        self._calls: dict[int, _ToolCall] = {}
        self._unnamed: dict[int, dict[str, Any]] = {}  # calls whose name has not come yet

    def opening(self) -> list[Chunk]:
        """What the message starts with, before any event."""
        return [{"type": "start", "messageId": self.message_id}, {"type": "start-step"}]

    def chunks(self, event: StreamEvent) -> list[Chunk]:
        """The chunks of one event (none for what a chat's message does not show)."""
        kind = event.type
        payload = event.event.payload()
        if kind is EventType.TOKEN:
            return self._text("text", payload["text"])
        if kind is EventType.DELTA:
            return self._delta(payload) if payload.get("choice", 0) == 0 else []
        if kind is EventType.DONE:
            return self._done(payload["finish_reason"])
        if kind is EventType.ERROR:
            error = {"type": "error", "errorText": payload.get("message") or payload["code"]}
            return [*self._close(), error]
        return []  # a Responses event: not a chat's

    def _delta(self, delta: dict[str, Any]) -> list[Chunk]:
        chunks: list[Chunk] = []
        for name in REASONING_FIELDS:
            if isinstance(delta.get(name), str):
                chunks += self._text("reasoning", delta[name])
        for name in ("content", "refusal"):
            if isinstance(delta.get(name), str):
                chunks += self._text("text", delta[name])
        for fragment in delta.get("tool_calls") or ():
            chunks += self._tool_call(fragment)
        return chunks

    def _close(self) -> list[Chunk]:
        if self._open is None:
            return []
        kind, part_id = self._open
        self._open = None
        return [{"type": f"{kind}-end", "id": part_id}]

    def _text(self, kind: str, text: str) -> list[Chunk]:
        if not text:
            return []
        chunks: list[Chunk] = []
        if self._open is None or self._open[0] != kind:
            chunks += self._close()
            self._parts += 1
            self._open = (kind, f"{kind}-{self._parts}")
            chunks.append({"type": f"{kind}-start", "id": self._open[1]})
        chunks.append({"type": f"{kind}-delta", "id": self._open[1], "delta": text})
        return chunks

    def _tool_call(self, fragment: dict[str, Any]) -> list[Chunk]:
        index = fragment.get("index", 0)
        function = fragment.get("function") or {}
        arguments = function.get("arguments") or ""
        call = self._calls.get(index)
        if call is None:
            pending = self._unnamed.setdefault(index, {"id": None, "arguments": []})
            pending["id"] = pending["id"] or fragment.get("id")
            pending["arguments"].append(arguments)
            if not function.get("name"):
                return []  # the AI SDK needs the name to start the part
            del self._unnamed[index]
            call_id = pending["id"] or f"{self.message_id}-call-{index}"
            call = self._calls[index] = _ToolCall(call_id, function["name"])
            arguments = "".join(pending["arguments"])
            chunks = self._close()
            chunks.append(
                {"type": "tool-input-start", "toolCallId": call.id, "toolName": call.name}
            )
        else:
            chunks = []
        if arguments:
            call.arguments.append(arguments)
            chunks.append(
                {"type": "tool-input-delta", "toolCallId": call.id, "inputTextDelta": arguments}
            )
        return chunks

    def _done(self, finish_reason: str) -> list[Chunk]:
        chunks = self._close()
        if finish_reason == "cancelled":  # tool calls cut short have no input to offer
            return [*chunks, {"type": "finish-step"}, {"type": "abort"}]
        for index in sorted(self._calls):
            chunks.append(_tool_input(self._calls[index]))
        return [
            *chunks,
            {"type": "finish-step"},
            {"type": "finish", "finishReason": FINISH_REASONS.get(finish_reason, "other")},
        ]


def _tool_input(call: _ToolCall) -> Chunk:
    """The call's whole input, parsed; its text and why when it is not JSON."""
    text = "".join(call.arguments)
    try:
        return {
            "type": "tool-input-available",
            "toolCallId": call.id,
            "toolName": call.name,
            "input": json.loads(text) if text.strip() else {},
        }
    except ValueError as exc:
        return {
            "type": "tool-input-error",
            "toolCallId": call.id,
            "toolName": call.name,
            "input": text,
            "errorText": f"the model's arguments are not JSON: {exc}",
        }


def sse(chunks: list[Chunk]) -> bytes:
    """SSE frames, one ``data:`` line a chunk."""
    return "".join(
        [
            f"data: {json.dumps(chunk, ensure_ascii=False, separators=(',', ':'))}\n\n"
            for chunk in chunks
        ]
    ).encode()
