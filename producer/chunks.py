"""From ``chat.completion.chunk`` objects to the stream's parts, losing nothing.

A chunk's choices become *parts*: runs of choice 0's plain text (``token`` events, the
cheap path nearly every chunk takes) or a dict for everything else (a ``delta`` event:
``{"choice": n, ...}``, see ``shared.events``). The chunk's own fields — ``id``,
``created``, ``model``, ``system_fingerprint``, ``service_tier`` and any other the upstream
adds, such as Azure's ``prompt_filter_results`` — are kept once per stream, as first seen
(``completion``); choice 0's finish reason and the usage end the stream.

Values stay as the upstream sent them, with one economy: a ``null`` for a key the choice
has already carried (OpenAI repeats ``"logprobs": null``, DeepSeek
``"reasoning_content": null`` on every chunk) changes nothing a client accumulates, so it
is sent once, not on every chunk.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson

from shared.errors import StreamErrorCode, UpstreamError
from shared.events import Event, FinishReason

Part = list[str] | dict[str, Any] | Event
"""A run of choice 0's plain text (its pieces, one per token), the fields of a ``delta``
event, or a whole event (a Responses API stream's, ``producer.responses``)."""

NOT_KEPT = frozenset({"choices", "usage", "object", "obfuscation"})
"""The chunk-level fields that are not the completion's: its parts, its end, the constant
``object`` and OpenAI's random ``obfuscation`` padding."""

_CHOICE_KEYS = frozenset({"index", "delta", "logprobs", "finish_reason"})

_TEXTS = frozenset({"content", "refusal", "reasoning_content", "reasoning"})
"""Delta fields that clients accumulate by concatenation, so fragments of them merge."""


_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content_filter",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
}


@dataclass(frozen=True, slots=True)
class Finished:
    """The upstream ended the answer properly: its finish reason, its usage if it reported
    one, and the chunk-level fields its last chunk changed (``completion_changes``)."""

    finish_reason: FinishReason
    usage: dict[str, Any] | None
    completion_changes: dict[str, Any]


class Opening(dict[str, Any]):
    """The first ``delta`` of a choice, which is never merged with what follows: OpenAI's
    SDK counts the logprobs of a choice's first chunk twice (in its snapshot, and again
    as a delta), so folding later logprobs into it would change what a client computes."""


class ChunkTranslator:
    """Translates the chunks of one upstream response, in order."""

    ended = False
    """A chat-completion stream says it ended with ``[DONE]``, which the SSE reader sees."""

    def __init__(self) -> None:
        self.completion: dict[str, Any] = {}
        self.completion_changed = False
        """``completion`` gained a field since the owner last looked (and reset this)."""
        self.finish_reason: str | None = None
        """Choice 0's, once it arrives."""
        self.usage: dict[str, Any] | None = None
        self.last_chunk: dict[str, Any] = {}
        self._seen: dict[int, set[str]] = {}
        """Per choice, the keys it has carried: a later ``null`` for them is redundant."""
        self._text_started = False
        """Choice 0 has carried ``content``: its plain text may take the token path."""
        self._known_keys: set[str] = set()
        """The chunk-level keys seen so far (a chunk with no new one changes nothing)."""

    def feed(self, payloads: list[bytes], parts: list[Part]) -> None:
        """Append the parts of the chunks whose JSON texts are ``payloads`` to ``parts``.

        Raises ``UpstreamError`` at a payload that is not a chunk (``parts`` then holds
        those of the chunks before it). This runs for every token of every answer: the
        plain-text path is kept to a few dictionary lookups per chunk.
        """
        known, loads, append = self._known_keys, orjson.loads, parts.append
        chunk: Any = None
        run: list[str] | None = None  # the text run being added to
        for payload in payloads:
            try:
                chunk = loads(payload)
            except ValueError:
                chunk = strictly_decoded(payload)
            if type(chunk) is not dict or "error" in chunk:
                raise not_a_chunk(payload, chunk)
            if not known.issuperset(chunk):
                self._keep_fields(chunk)
            usage = chunk.get("usage")
            if usage:
                self.usage = usage
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta")
                if (
                    self._text_started
                    and delta is not None
                    and len(delta) == 1
                    and choice.get("index") == 0
                    and choice.get("logprobs") is None
                    and choice.get("finish_reason") is None
                    # nothing else beside them
                    and len(choice) == 2 + ("logprobs" in choice) + ("finish_reason" in choice)
                ):
                    text = delta.get("content")
                    if type(text) is str:  # the hot path: one token of the answer
                        if text:
                            if run is None:
                                run = []
                                append(run)
                            run.append(text)
                        continue
                part = self._translate(choice)
                if isinstance(part, str):
                    if run is None:
                        run = []
                        append(run)
                    run.append(part)
                elif part is not None:
                    append(part)
                    run = None
        if chunk is not None:
            self.last_chunk = chunk

    def _keep_fields(self, chunk: dict[str, Any]) -> None:
        """Keep the chunk-level fields not seen before (as first sent)."""
        for name in chunk:
            if name not in self.completion and name not in NOT_KEPT:
                self.completion[name] = chunk[name]
                self.completion_changed = True
        self._known_keys.update(chunk)

    def finished(self) -> Finished | None:
        """How the upstream ended the answer, once choice 0's finish reason has come."""
        if self.finish_reason is None:
            return None
        reason = _FINISH_REASONS.get(self.finish_reason, "stop")
        return Finished(reason, self.usage, self.completion_changes())

    def completion_changes(self) -> dict[str, Any]:
        """The chunk-level fields whose value in the last chunk differs from the one kept
        (Azure's first chunk has an empty ``id``; Ollama's ``created`` moves on): clients
        that take these from the last chunk rather than the first (the npm SDK) need them."""
        return {
            name: value
            for name, value in self.last_chunk.items()
            if name not in NOT_KEPT and self.completion.get(name) != value
        }

    def _translate(self, choice: dict[str, Any]) -> str | dict[str, Any] | None:
        """A choice of a chunk off the hot path: choice 0's text after all (once redundant
        nulls are left out), a ``delta`` event's fields, or nothing to send."""
        index = choice.get("index", 0)
        if not isinstance(index, int):
            index = 0
        opening = index not in self._seen
        seen = self._seen.setdefault(index, set())
        content_is_new = "content" not in seen
        fields: dict[str, Any] = Opening(choice=index) if opening else {"choice": index}
        delta = choice.get("delta")
        for key, value in (delta if isinstance(delta, dict) else {}).items():
            if value is None and key in seen:
                continue
            fields[key] = value
            seen.add(key)
        if "logprobs" in choice and not (choice["logprobs"] is None and "logprobs" in seen):
            fields["logprobs"] = choice["logprobs"]
            seen.add("logprobs")
        finish_reason = choice.get("finish_reason")
        if finish_reason is not None:
            if index == 0:
                self.finish_reason = finish_reason
            else:
                fields["finish_reason"] = finish_reason
        extra = {
            key: value
            for key, value in choice.items()
            if key not in _CHOICE_KEYS and not (value is None and f".{key}" in seen)
        }
        if extra:
            fields["choice_fields"] = extra
            seen.update(f".{key}" for key in extra)
        if index == 0 and "content" in seen:
            self._text_started = True
        content = fields.get("content")
        if index == 0 and not opening and len(fields) == 2 and type(content) is str:
            if content or not content_is_new:  # an empty first content is kept, as a delta
                return content or None
        return fields if len(fields) > 1 else None


def merge_into(first: dict[str, Any], second: dict[str, Any]) -> bool:
    """Merge the ``delta`` fields ``second`` into ``first`` (the next fragment of the same
    choice) if a client accumulates the merged event exactly as it would the two;
    returns whether it did. Texts concatenate, tool-call argument fragments join their
    call, logprobs lists extend; anything else is left as two events."""
    if isinstance(first, Opening) or "finish_reason" in first:
        return False
    if second.get("choice") != first.get("choice"):
        return False
    if "choice_fields" in first or "choice_fields" in second:
        return False
    for key, value in second.items():
        if key in ("choice", "finish_reason"):
            continue
        if key == "tool_calls":
            if not _argument_fragments(value) or not _joinable_calls(first.get(key)):
                return False
        elif key == "logprobs":
            if not _logprobs(value) or not _logprobs(first.get(key)):
                return False
        elif key not in _TEXTS or not isinstance(value, str):
            return False
        elif not isinstance(first.get(key, ""), str):
            return False
    for key, value in second.items():
        if key == "choice":
            continue
        if key == "tool_calls":
            _join_calls(first.setdefault(key, []), value)
        elif key == "logprobs":
            _extend_logprobs(first, value)
        elif key == "finish_reason":
            first[key] = value
        else:
            first[key] = first.get(key, "") + value
    return True


def _argument_fragments(value: object) -> bool:
    """Tool-call fragments that only continue a call's arguments."""
    return isinstance(value, list) and all(
        isinstance(call, dict)
        and type(call.get("index")) is int
        and set(call) <= {"index", "function"}
        and isinstance(call.get("function"), dict)
        and set(call["function"]) == {"arguments"}
        and isinstance(call["function"]["arguments"], str)
        for call in value
    )


def _joinable_calls(value: object) -> bool:
    return value is None or (
        isinstance(value, list)
        and all(
            isinstance(call, dict)
            and type(call.get("index")) is int
            and isinstance(call.get("function"), dict)
            and isinstance(call["function"].get("arguments", ""), str)
            for call in value
        )
    )


def _join_calls(calls: list[dict[str, Any]], fragments: list[dict[str, Any]]) -> None:
    for fragment in fragments:
        last = next((c for c in reversed(calls) if c["index"] == fragment["index"]), None)
        if last is None:
            calls.append({"index": fragment["index"], "function": dict(fragment["function"])})
        else:
            function = last["function"]
            function["arguments"] = (
                function.get("arguments", "") + fragment["function"]["arguments"]
            )


def _logprobs(value: object) -> bool:
    return isinstance(value, dict) and all(
        key in ("content", "refusal") and (item is None or isinstance(item, list))
        for key, item in value.items()
    )


def _extend_logprobs(first: dict[str, Any], second: dict[str, Any]) -> None:
    merged = first["logprobs"]
    for key, items in second.items():
        if items:
            merged[key] = (merged.get(key) or []) + items
        else:
            merged.setdefault(key, items)


def strictly_decoded(payload: bytes) -> Any:
    """A payload orjson refused: what it refuses but JSON allows (a lone surrogate escape,
    an integer over 64 bits) the standard library decodes; anything else is no chunk."""
    try:
        return json.loads(payload)
    except ValueError:
        raise not_a_chunk(payload) from None


def not_a_chunk(payload: bytes, decoded: object = None) -> UpstreamError:
    """The error for a ``data:`` payload that is not a chunk: malformed JSON, or the
    upstream's own ``{"error": ...}`` sent mid-stream (kept for the compatible APIs)."""
    if isinstance(decoded, dict) and "error" in decoded:
        error = decoded["error"] if isinstance(decoded["error"], dict) else {}
        return UpstreamError(
            StreamErrorCode.UPSTREAM_ERROR,
            str(error.get("message") or "the upstream reported an error mid-stream"),
            retryable=True,
            upstream={"error": decoded["error"]},
        )
    if decoded is None:
        message = f"malformed chunk from upstream: {payload[:80].decode(errors='replace')!r}"
    else:
        message = "malformed chunk from upstream"
    return UpstreamError(StreamErrorCode.UPSTREAM_ERROR, message, retryable=True)
