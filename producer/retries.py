"""When to ask the upstream again after it failed before the first token.

Nothing of a generation is in its stream before the first token, so asking again can never
append anything twice. A ``Retry-After`` (or ``retry-after-ms``) from the upstream is the
wait, as it says; without one the wait doubles from ``base_s`` (half of it random, so many
workers refused at once do not come back at once). Retries stop after ``max_retries`` or
when the next wait would take the generation's total waiting past ``max_wait_s``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

from shared.errors import UpstreamError


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """The wait an upstream asks for: ``retry-after-ms``, else ``retry-after`` in seconds
    or as an HTTP date; None if it asks for none (or nothing readable)."""
    try:
        return max(0.0, float(headers["retry-after-ms"]) / 1000)
    except (KeyError, ValueError):
        pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(raw).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class UpstreamRetries:
    """The retries left to one generation."""

    def __init__(self, *, max_retries: int, max_wait_s: float, base_s: float = 0.5) -> None:
        self._left = max_retries
        self._wait_left = max_wait_s
        self._next_backoff = base_s

    def wait_before_retry(self, error: UpstreamError) -> float | None:
        """Seconds to wait before asking again after ``error``; None: do not ask again
        (``error`` is then what the generation ends with)."""
        if not error.retryable or self._left <= 0:
            return None
        if error.retry_after_s is not None:
            wait = error.retry_after_s
        else:
            wait = self._next_backoff * (0.5 + random.random() / 2)
            self._next_backoff *= 2
        if wait > self._wait_left:
            return None
        self._left -= 1
        self._wait_left -= wait
        return wait
