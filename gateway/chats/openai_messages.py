"""A chat's UI messages as the OpenAI messages of a chat-completion request.

What a reader of OpenAI's docs writes by hand, and what the AI SDK's own OpenAI-compatible
provider sends:

* a system message's text parts: ``{"role": "system", "content": "..."}``;
* a user message: ``"content"`` a string when it is one text part, else a list of
  ``text`` and ``image_url`` parts (image files, by URL or data URL);
* an assistant message: one ``{"role": "assistant", ...}`` per step (its parts between
  ``step-start`` parts): the step's text as ``content``, its reasoning as
  ``reasoning_content`` (as DeepSeek and vLLM take it back), its tool calls as ``tool_calls``
  (``arguments`` the input's JSON), each followed by ``{"role": "tool", "tool_call_id",
  "content"}`` with its output (a string as it is, anything else as JSON; the error text of a
  failed call; the reason of a denied one).

Parts a model does not read (sources, data parts, files in answers) are left out, and so
are tool calls whose input was still streaming when the answer stopped (they have none).
"""

from __future__ import annotations

import json
from typing import Any

from shared.errors import InvalidFields

TOOL_RESULT_STATES = ("output-available", "output-error", "output-denied")
CALL_STATES = ("input-available", "approval-requested", "approval-responded", *TOOL_RESULT_STATES)
"""A tool part's states that carry a whole input (``input-streaming`` does not)."""


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _is_tool(part: dict[str, Any]) -> bool:
    kind: str = part["type"]
    return kind == "dynamic-tool" or kind.startswith("tool-")


def _tool_name(part: dict[str, Any]) -> str:
    if part["type"] == "dynamic-tool":
        name = part.get("toolName")
        if not isinstance(name, str) or not name:
            raise InvalidFields("a dynamic-tool part needs its 'toolName'")
        return name
    return str(part["type"]).removeprefix("tool-")


def _call_id(part: dict[str, Any]) -> str:
    call_id = part.get("toolCallId")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidFields(f"a {part['type']} part needs its 'toolCallId'")
    return call_id


def _text(part: dict[str, Any], where: str) -> str:
    text = part.get("text")
    if not isinstance(text, str):
        raise InvalidFields(f"a {part['type']} part of {where} needs 'text' (a string)")
    return text


def _user_content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    content: list[dict[str, Any]] = []
    for part in parts:
        if part["type"] == "text":
            content.append({"type": "text", "text": _text(part, "a user message")})
        elif part["type"] == "file":
            media_type, url = part.get("mediaType"), part.get("url")
            if not (isinstance(media_type, str) and media_type.startswith("image/")):
                raise InvalidFields(
                    f"a file part of media type {str(media_type)[:64]!r}: only images "
                    "can be sent to a chat-completions model"
                )
            if not isinstance(url, str):
                raise InvalidFields("a file part needs its 'url' (a URL or a data URL)")
            content.append({"type": "image_url", "image_url": {"url": url}})
    if len(content) == 1 and content[0]["type"] == "text":
        text: str = content[0]["text"]
        return text
    return content


def _tool_output(part: dict[str, Any]) -> str:
    state = part["state"]
    if state == "output-error":
        return str(part.get("errorText") or "")
    if state == "output-denied":
        reason = (part.get("approval") or {}).get("reason")
        return reason if isinstance(reason, str) else "Tool call execution denied."
    output = part.get("output")
    return output if isinstance(output, str) else _json(output)


def _step_messages(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    text = "".join(_text(part, "an assistant message") for part in parts if part["type"] == "text")
    reasoning = "".join(
        _text(part, "an assistant message") for part in parts if part["type"] == "reasoning"
    )
    calls = [part for part in parts if _is_tool(part) and part.get("state") in CALL_STATES]
    if not (text or reasoning or calls):
        return []
    message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else "")}
    if reasoning:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = [
            {
                "id": _call_id(part),
                "type": "function",
                "function": {"name": _tool_name(part), "arguments": _json(part.get("input"))},
            }
            for part in calls
        ]
    results = [
        {"role": "tool", "tool_call_id": _call_id(part), "content": _tool_output(part)}
        for part in calls
        if part["state"] in TOOL_RESULT_STATES
    ]
    return [message, *results]


def _assistant_messages(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    steps: list[list[dict[str, Any]]] = [[]]
    for part in parts:
        if part["type"] == "step-start":
            steps.append([])
        else:
            steps[-1].append(part)
    return [message for step in steps for message in _step_messages(step)]


def openai_messages(ui_messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chat-completion ``messages`` of a conversation (see the module)."""
    messages: list[dict[str, Any]] = []
    for ui_message in ui_messages:
        role, parts = ui_message["role"], ui_message["parts"]
        if role == "system":
            text = "".join(
                _text(part, "a system message") for part in parts if part["type"] == "text"
            )
            messages.append({"role": "system", "content": text})
        elif role == "user":
            messages.append({"role": "user", "content": _user_content(parts)})
        else:
            messages.extend(_assistant_messages(parts))
    return messages
