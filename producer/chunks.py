"""From ``chat.completion.chunk`` objects to the stream's parts, losing nothing.

A chunk's choices become *parts*: a ``str`` for choice 0's plain text (a ``token`` event,
the cheap path nearly every chunk takes) or a dict for everything else (a ``delta`` event:
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

from typing import Any

Part = str | dict[str, Any]
"""Choice 0's plain text, or the fields of a ``delta`` event."""

NOT_KEPT = frozenset({"choices", "usage", "object", "obfuscation"})
"""The chunk-level fields that are not the completion's: its parts, its end, the constant
``object`` and OpenAI's random ``obfuscation`` padding."""

_CHOICE_KEYS = frozenset({"index", "delta", "logprobs", "finish_reason"})

_TEXTS = frozenset({"content", "refusal", "reasoning_content", "reasoning"})
"""Delta fields that clients accumulate by concatenation, so fragments of them merge."""


class Opening(dict[str, Any]):
    """The first ``delta`` of a choice, which is never merged with what follows: OpenAI's
    SDK counts the logprobs of a choice's first chunk twice (in its snapshot, and again
    as a delta), so folding later logprobs into it would change what a client computes."""


class ChunkTranslator:
    """Translates the chunks of one upstream response, in order."""

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

    def feed(self, chunk: dict[str, Any], parts: list[Part]) -> None:
        """Append the parts of ``chunk`` to ``parts``."""
        self.last_chunk = chunk
        completion = self.completion
        for name in chunk:
            if name not in completion and name not in NOT_KEPT:
                completion[name] = chunk[name]
                self.completion_changed = True
        usage = chunk.get("usage")
        if usage:
            self.usage = usage
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta")
            if (
                choice.get("index") == 0
                and delta is not None
                and len(delta) == 1
                and choice.get("logprobs") is None
                and choice.get("finish_reason") is None
                and _CHOICE_KEYS.issuperset(choice)
                and "content" in self._seen.get(0, ())
            ):
                text = delta.get("content")
                if type(text) is str:  # the hot path: one token of the answer
                    if text:
                        parts.append(text)
                    continue
            self._translate(choice, parts)

    def completion_changes(self) -> dict[str, Any]:
        """The chunk-level fields whose value in the last chunk differs from the one kept
        (Azure's first chunk has an empty ``id``; Ollama's ``created`` moves on): clients
        that take these from the last chunk rather than the first (the npm SDK) need them."""
        return {
            name: value
            for name, value in self.last_chunk.items()
            if name not in NOT_KEPT and self.completion.get(name) != value
        }

    def _translate(self, choice: dict[str, Any], parts: list[Part]) -> None:
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
        if index == 0 and not opening and len(fields) == 2 and type(fields.get("content")) is str:
            # only text after all, once its redundant nulls are left out
            if fields["content"] or not content_is_new:
                if fields["content"]:
                    parts.append(fields["content"])
                return
        if len(fields) > 1:
            parts.append(fields)


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
