"""The assistant ``UIMessage`` a UI message stream builds: what the AI SDK's
``readUIMessageStream`` makes of the chunks, for ``GET /v1/chats/{id}``.

Parts keep the SDK's shapes: ``{"type": "step-start"}``; ``{"type": "text" | "reasoning",
"text", "state": "streaming" | "done"}``; a tool call as ``{"type": "tool-<name>",
"toolCallId", "state", "input"?}`` (``input-streaming`` while its arguments arrive,
``input-available`` once parsed, ``output-error`` with ``errorText`` if they are not JSON).
"""

from __future__ import annotations

import copy
from typing import Any

from gateway.chats.ui_stream import Chunk


class UIMessageBuilder:
    """Applies chunks to a message; continues ``message``'s parts if given (an answer that
    goes on with the conversation's last assistant message, after its tools' results)."""

    def __init__(self, message_id: str, message: dict[str, Any] | None = None) -> None:
        self.message: dict[str, Any] = (
            copy.deepcopy(message) if message else {"id": message_id, "role": "assistant"}
        )
        self.message["id"] = message_id
        self.message.setdefault("parts", [])
        self._open: dict[str, dict[str, Any]] = {}  # part id -> text or reasoning part
        self._calls: dict[str, dict[str, Any]] = {}  # toolCallId -> tool part

    @property
    def parts(self) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = self.message["parts"]
        return parts

    def add(self, chunk: Chunk) -> None:
        kind = chunk["type"]
        if kind == "start-step":
            self.parts.append({"type": "step-start"})
        elif kind in ("text-start", "reasoning-start"):
            part = {"type": kind.removesuffix("-start"), "text": "", "state": "streaming"}
            self._open[chunk["id"]] = part
            self.parts.append(part)
        elif kind in ("text-delta", "reasoning-delta"):
            self._open[chunk["id"]]["text"] += chunk["delta"]
        elif kind in ("text-end", "reasoning-end"):
            self._open.pop(chunk["id"])["state"] = "done"
        elif kind == "tool-input-start":
            part = {
                "type": f"tool-{chunk['toolName']}",
                "toolCallId": chunk["toolCallId"],
                "state": "input-streaming",
            }
            self._calls[chunk["toolCallId"]] = part
            self.parts.append(part)
        elif kind == "tool-input-available":
            self._calls[chunk["toolCallId"]].update(state="input-available", input=chunk["input"])
        elif kind == "tool-input-error":
            self._calls[chunk["toolCallId"]].update(
                state="output-error", input=chunk["input"], errorText=chunk["errorText"]
            )
        # tool-input-delta: the SDK shows partially parsed input; the whole one follows
