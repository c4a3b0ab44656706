"""The Redis key schema: the one place that names a key.

Every key of one stream carries the hash tag ``{<stream id>}`` so the whole stream lives on
one Redis Cluster slot and one Lua script can touch all of it. A generation that writes
into a durable stream (an agent run) has an id ``<durable stream id>~<its own>``; its keys
carry the durable stream's tag (``{<durable stream id>}~<its own>``), so that one script
appends to both.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

WITHIN = "~"
"""Joins a durable stream's id and a generation's own: the id of a generation writing into
that durable stream. (No other id has it.)"""


def durable_stream_of(stream_id: str) -> str | None:
    """The id of the durable stream a generation writes into, if it does."""
    within, _, own = stream_id.partition(WITHIN)
    return within if own else None


@dataclass(frozen=True, slots=True)
class Keys:
    """Builds every Redis key and channel under ``prefix`` (a per-test prefix isolates tests)."""

    prefix: str = "tokenrelay"

    def _stream(self, stream_id: str) -> str:
        """``<prefix>:{<id>}``, or ``<prefix>:{<durable stream id>}~<own>`` for a generation
        writing into a durable stream."""
        within, _, own = stream_id.partition(WITHIN)
        return f"{self.prefix}:{{{within}}}{WITHIN}{own}" if own else f"{self.prefix}:{{{within}}}"

    def meta(self, stream_id: str) -> str:
        """Hash: the stream's status, request and counters."""
        return f"{self._stream(stream_id)}:meta"

    def events(self, stream_id: str) -> str:
        """Redis Stream: the stream's events, one entry each."""
        return f"{self._stream(stream_id)}:events"

    def lease(self, stream_id: str) -> str:
        """String with a TTL: the id of the worker that may append to the stream."""
        return f"{self._stream(stream_id)}:lease"

    def notify(self, stream_id: str) -> str:
        """Pub/sub channel: each appended event, as ``<previous offset> <offset> <type> <data>``
        (a durable stream's: its new tail alone, or ``deleted``)."""
        return f"{self._stream(stream_id)}:notify"

    def stream_of(self, channel: str) -> str:
        """The stream id of a notify channel."""
        return channel[len(self.prefix) + 1 : -len(":notify")].replace("{", "").replace("}", "")

    def readers(self, stream_id: str) -> str:
        """Hash: reader id -> JSON {gateway, offset, since}, kept by the gateways serving it."""
        return f"{self._stream(stream_id)}:readers"

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

    def writing_keys(self, stream_id: str) -> tuple[str, ...]:
        """The keys of the scripts that write events (append, finish): ``stream_keys``, and
        the meta and events of the durable stream it writes into, if it does."""
        within = durable_stream_of(stream_id)
        if within is None:
            return self.stream_keys(stream_id)
        return (*self.stream_keys(stream_id), self.meta(within), self.events(within))

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
