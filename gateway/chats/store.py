"""Where a chat lives: its latest turn, one Redis hash (``shared.keys.Keys.chat``).

A turn is what ``POST /v1/chats`` received — the whole conversation as the AI SDK sends it,
earlier answers included — and the generation that answers it. That is all a page needs
to show the chat again: the stored messages, then the answer rebuilt from its stream. A
chat is kept for ``TOKENRELAY_RETENTION_S`` after its last turn, so its answer's stream
(kept as long after it ends) outlives it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from shared.keys import Keys


@dataclass(frozen=True, slots=True)
class Turn:
    messages: list[dict[str, Any]]
    """The conversation as the client sent it (UI messages)."""
    stream_id: str
    """The generation that answers it."""
    message_id: str
    """The answer's message id: the last message's when the answer continues it."""

    @property
    def continues_last(self) -> bool:
        """The answer goes on with the conversation's last (assistant) message, as after a
        client-side tool's result."""
        last = self.messages[-1]
        return bool(last["role"] == "assistant" and last["id"] == self.message_id)


class ChatStore:
    def __init__(self, redis: Redis, keys: Keys, ttl_s: int) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl_s = ttl_s

    async def save_turn(self, chat_id: str, turn: Turn) -> str | None:
        """Make ``turn`` the chat's latest; the stream id of the turn it replaces, if any."""
        key = self._keys.chat(chat_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hget(key, "stream")
            pipe.hset(
                key,
                mapping={
                    "messages": json.dumps(turn.messages, ensure_ascii=False),
                    "stream": turn.stream_id,
                    "message_id": turn.message_id,
                },
            )
            pipe.expire(key, self._ttl_s)
            previous, *_ = await pipe.execute()
        return str(previous) if previous else None

    async def turn(self, chat_id: str) -> Turn | None:
        """The chat's latest turn; None for a chat unknown or expired."""
        row = await self._redis.hmget(  # type: ignore[misc]
            self._keys.chat(chat_id), ["messages", "stream", "message_id"]
        )
        if row[0] is None:
            return None
        return Turn(json.loads(row[0]), row[1], row[2])
