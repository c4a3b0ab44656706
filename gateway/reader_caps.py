"""Caps on the readers one gateway process serves: per stream and per client address.

Each is a count in this process (a cap on what one replica holds open; the load balancer
spreads clients over replicas). A read over a cap is refused with ``429 rate_limited`` and
``Retry-After`` before its response starts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from shared.errors import RateLimited


class ReaderCaps:
    def __init__(self, per_stream: int, per_address: int) -> None:
        self._per_stream = per_stream
        self._per_address = per_address
        self._streams: Counter[str] = Counter()
        self._addresses: Counter[str] = Counter()

    def admit(self, stream_id: str, address: str) -> Callable[[], None]:
        """Count one more reader, or raise ``RateLimited``; returns its release."""
        if self._per_stream and self._streams[stream_id] >= self._per_stream:
            raise RateLimited(
                f"this stream has {self._per_stream} readers on this gateway already",
                retry_after_s=5,
            )
        if self._per_address and self._addresses[address] >= self._per_address:
            raise RateLimited(
                f"{self._per_address} streams are already open from this address",
                retry_after_s=5,
            )
        self._streams[stream_id] += 1
        self._addresses[address] += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                for counts, key in ((self._streams, stream_id), (self._addresses, address)):
                    counts[key] -= 1
                    if counts[key] <= 0:
                        del counts[key]

        return release
