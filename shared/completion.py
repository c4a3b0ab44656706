"""A chat completion rebuilt from a stream's events, as an OpenAI SDK accumulates it.

``token`` events are choice 0's text; ``delta`` events are merged into their choice the way
the OpenAI SDKs merge chunk deltas (texts concatenate, tool calls join by ``index``, logprobs
lists extend); ``done`` gives choice 0's finish reason and the usage. Used wherever a whole
answer is wanted: the Chat Completions API's ``stream: false``, the Python client, the
tests that compare a relayed stream with its upstream.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from shared.events import EventType


def accumulate(acc: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
    """Merge ``delta`` into ``acc`` as ``openai.lib.streaming._deltas.accumulate_delta``
    does: strings and numbers add up, dicts merge, lists of ``index``ed dicts merge by
    index, other lists extend; ``index`` and ``type`` are replaced, ``None`` never wins."""
    for key, value in delta.items():
        if key not in acc or acc[key] is None:
            if _indexed(value):
                acc[key] = []
            else:
                acc[key] = copy.deepcopy(value)
                continue
        current = acc[key]
        if key in ("index", "type"):
            acc[key] = value
        elif isinstance(current, str) and isinstance(value, str):
            acc[key] = current + value
        elif _number(current) and _number(value):
            acc[key] = current + value
        elif isinstance(current, dict) and isinstance(value, dict):
            accumulate(current, value)
        elif isinstance(current, list) and isinstance(value, list):
            if not _indexed(value) or (current and not _indexed(current)):
                current.extend(copy.deepcopy(value))
                continue
            for entry in value:
                position = next(
                    (i for i, item in enumerate(current) if item.get("index") == entry["index"]),
                    None,
                )
                if position is None:
                    current.append(accumulate({}, entry))
                else:
                    accumulate(current[position], entry)
    return acc


def _indexed(value: object) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(item, dict) and "index" in item for item in value)
    )


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass
class ChoiceSoFar:
    """One choice as accumulated so far."""

    index: int
    message: dict[str, Any] = field(default_factory=dict)
    logprobs: dict[str, Any] | None = None
    finish_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """The choice's own fields beyond the standard ones (``choice_fields``)."""

    def add(self, fields: dict[str, Any]) -> None:
        delta = {
            k: v
            for k, v in fields.items()
            if k not in ("choice", "logprobs", "finish_reason", "choice_fields")
        }
        accumulate(self.message, delta)
        logprobs = fields.get("logprobs")
        if isinstance(logprobs, dict):
            if self.logprobs is None:
                self.logprobs = {"content": None, "refusal": None}
            for key in ("content", "refusal"):
                if logprobs.get(key):
                    self.logprobs[key] = (self.logprobs.get(key) or []) + logprobs[key]
        if fields.get("finish_reason"):
            self.finish_reason = fields["finish_reason"]
        if isinstance(fields.get("choice_fields"), dict):
            accumulate(self.extra, fields["choice_fields"])

    @property
    def text(self) -> str:
        content = self.message.get("content")
        return content if isinstance(content, str) else ""

    @property
    def reasoning(self) -> str:
        """``reasoning_content`` (DeepSeek, vLLM) or ``reasoning`` (Ollama, OpenRouter)."""
        for key in ("reasoning_content", "reasoning"):
            if isinstance(self.message.get(key), str):
                return str(self.message[key])
        return ""

    @property
    def refusal(self) -> str | None:
        refusal = self.message.get("refusal")
        return refusal if isinstance(refusal, str) else None

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        calls = self.message.get("tool_calls")
        return calls if isinstance(calls, list) else []

    def as_message(self) -> dict[str, Any]:
        """The choice's ``message`` as a ``chat.completion`` shows it (tool calls without
        the streaming ``index``)."""
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
        message.update(self.message)
        if "tool_calls" in message and isinstance(message["tool_calls"], list):
            message["tool_calls"] = [
                {k: v for k, v in call.items() if k != "index"} for call in message["tool_calls"]
            ]
        return message


class CompletionSoFar:
    """A stream's chat completion, fed its events in order (``add``)."""

    def __init__(self, completion: dict[str, Any] | None = None) -> None:
        self.completion = completion or {}
        """The stream's chunk-level fields (its status's ``completion``)."""
        self.choices: dict[int, ChoiceSoFar] = {}
        self.usage: dict[str, Any] | None = None
        self.ended: str | None = None
        """``done`` or ``error`` once the terminal event came."""
        self.error: dict[str, Any] | None = None

    def choice(self, index: int) -> ChoiceSoFar:
        if index not in self.choices:
            self.choices[index] = ChoiceSoFar(index)
        return self.choices[index]

    def add(self, kind: str, data: dict[str, Any]) -> None:
        """One event: its ``type`` and its data."""
        if kind == EventType.TOKEN:
            accumulate(self.choice(0).message, {"content": data["text"]})
        elif kind == EventType.DELTA:
            self.choice(int(data.get("choice", 0))).add(data)
        elif kind == EventType.DONE:
            self.ended = kind
            self.choice(0).finish_reason = data.get("finish_reason")
            self.usage = data.get("usage")
        elif kind == EventType.ERROR:
            self.ended = kind
            self.error = data

    @property
    def text(self) -> str:
        """The answer: choice 0's content."""
        return self.choices[0].text if 0 in self.choices else ""

    def chat_completion(self) -> dict[str, Any]:
        """The ``chat.completion`` object, as OpenAI answers a request without ``stream``."""
        completion = self.completion
        body: dict[str, Any] = {
            "id": completion.get("id"),
            "object": "chat.completion",
            "created": completion.get("created"),
            "model": completion.get("model"),
            "choices": [
                {
                    "index": index,
                    "message": choice.as_message(),
                    "logprobs": choice.logprobs,
                    "finish_reason": choice.finish_reason,
                    **choice.extra,
                }
                for index, choice in sorted(self.choices.items())
            ],
            "usage": self.usage,
        }
        for name, value in completion.items():  # system_fingerprint, service_tier...
            body.setdefault(name, value)
        return body
