"""What an OpenAI SDK user sees of a chat completion: accumulated snapshots to compare."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, cast

import httpx
from openai._models import construct_type
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk

from shared.completion import CompletionSoFar


def snapshot(chunks: Iterable[ChatCompletionChunk | dict[str, Any]]) -> dict[str, Any]:
    """The SDK's accumulated completion (``current_completion_snapshot``, which unlike
    ``get_final_completion`` does not raise on ``length``), as a plain dict."""
    state = ChatCompletionStreamState()
    for chunk in chunks:
        if isinstance(chunk, dict):  # built as the SDK builds what it reads
            chunk = cast(
                ChatCompletionChunk, construct_type(type_=ChatCompletionChunk, value=chunk)
            )
        state.handle_chunk(chunk)
    dumped: dict[str, Any] = state.current_completion_snapshot.model_dump()
    return dumped


def sse_chunks(body: str) -> list[tuple[str | None, dict[str, Any]]]:
    """``(id, chunk)`` of each ``data:`` event of a Chat Completions SSE body, ``[DONE]``
    excluded (an ``{"error": ...}`` event is a chunk here too)."""
    chunks = []
    for block in body.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if line and not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
        if "data" in fields and fields["data"] != "[DONE]":
            chunks.append((fields.get("id"), json.loads(fields["data"])))
    return chunks


def rebuilt_from_native(base: str, stream_id: str, api_key: str) -> dict[str, Any]:
    """The chat completion rebuilt from ``/v1/streams/{id}/events`` (NDJSON) and the
    stream's status (its ``completion``), as a ``chat.completion`` object."""
    headers = {"Authorization": f"Bearer {api_key}"}
    answer = CompletionSoFar()
    with httpx.stream(
        "GET", f"{base}/v1/streams/{stream_id}/events?format=ndjson", headers=headers, timeout=30
    ) as response:
        for line in response.iter_lines():
            if line:
                event = json.loads(line)
                del event["offset"]
                answer.add(event.pop("type"), event)
    status = httpx.get(f"{base}/v1/streams/{stream_id}", headers=headers).json()
    answer.completion = status["completion"] or {}
    return answer.chat_completion()
