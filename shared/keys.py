"""The Redis key schema: the one place that names a key.

Every key of one stream carries the hash tag ``{<stream id>}`` so the whole stream lives on
one Redis Cluster slot and one Lua script can touch all of it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    """Builds every Redis key and channel under ``prefix`` (a per-test prefix isolates tests)."""

    prefix: str = "tokenrelay"

    def meta(self, stream_id: str) -> str:
        """Hash: the stream's status, request and counters."""
        return f"{self.prefix}:{{{stream_id}}}:meta"

    def events(self, stream_id: str) -> str:
        """Redis Stream: the stream's events, one entry each."""
        return f"{self.prefix}:{{{stream_id}}}:events"

    def lease(self, stream_id: str) -> str:
        """String with a TTL: the id of the worker that may append to the stream."""
        return f"{self.prefix}:{{{stream_id}}}:lease"

    def notify(self, stream_id: str) -> str:
        """Pub/sub channel: each appended event, as ``<previous offset> <offset> <type> <data>``."""
        return f"{self.prefix}:{{{stream_id}}}:notify"

    def readers(self, stream_id: str) -> str:
        """Hash: reader id -> JSON {gateway, offset, since}, kept by the gateways serving it."""
        return f"{self.prefix}:{{{stream_id}}}:readers"

    def all_of(self, stream_id: str) -> tuple[str, ...]:
        """Every key a stream owns (what a purge deletes)."""
        return (
            self.meta(stream_id),
            self.events(stream_id),
            self.lease(stream_id),
            self.readers(stream_id),
        )

    def stream_keys(self, stream_id: str) -> tuple[str, str, str]:
        """The keys a stream's Lua scripts take, in their KEYS order: meta, events, lease."""
        return self.meta(stream_id), self.events(stream_id), self.lease(stream_id)

    def idempotency(self, principal: str, idempotency_key: str) -> str:
        """String: the stream created for ``Idempotency-Key`` by one API key."""
        digest = hashlib.sha256(f"{principal}\0{idempotency_key}".encode()).hexdigest()[:32]
        return f"{self.prefix}:idem:{digest}"

    def chat(self, chat_id: str) -> str:
        """Hash: an AI SDK chat's latest turn (its messages, its answer's stream)."""
        return f"{self.prefix}:chat:{{{chat_id}}}"

    @property
    def index(self) -> str:
        """Sorted set: every stream id, scored by its creation sequence number."""
        return f"{self.prefix}:streams"

    @property
    def index_sequence(self) -> str:
        """Counter: the creation sequence number of the newest stream."""
        return f"{self.prefix}:streams:seq"

    @property
    def gateways(self) -> str:
        """Hash: gateway id -> JSON heartbeat (readers, seen)."""
        return f"{self.prefix}:gateways"

    @property
    def workers(self) -> str:
        """Hash: worker id -> JSON heartbeat (jobs, upstream, seen)."""
        return f"{self.prefix}:workers"

    @property
    def queue(self) -> str:
        """The arq queue of generation jobs."""
        return f"{self.prefix}:queue"

    def active(self, principal: str) -> str:
        """Set: ``principal``'s streams that may still be queued or running (for its quota)."""
        digest = hashlib.sha256(principal.encode()).hexdigest()[:32]
        return f"{self.prefix}:active:{digest}"

    def rate_window(self, principal: str, window: int) -> str:
        """Counter: requests of ``principal`` in one fixed time window."""
        digest = hashlib.sha256(principal.encode()).hexdigest()[:32]
        return f"{self.prefix}:rate:{digest}:{window}"
