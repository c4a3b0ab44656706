"""Prometheus metrics: every metric of tokenrelay, defined once.

Each process exports its own: the gateway at ``/metrics``, a worker on
``TOKENRELAY_WORKER_METRICS_PORT``. (In ``tokenrelay dev`` both live in one process and
``/metrics`` shows them all.)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
_SLOW_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)

streams_created = Counter("tokenrelay_streams_created", "Streams created (gateway).")
streams_finished = Counter(
    "tokenrelay_streams_finished", "Streams ended, by final status.", ["status"]
)
time_to_first_token = Histogram(
    "tokenrelay_time_to_first_token_seconds",
    "From a worker starting a generation to its first appended token.",
    buckets=_SLOW_BUCKETS,
)
stream_duration = Histogram(
    "tokenrelay_stream_duration_seconds",
    "From a worker starting a generation to its terminal event.",
    buckets=_SLOW_BUCKETS,
)
tokens_appended = Counter(
    "tokenrelay_tokens_appended",
    "Fragments received from the upstream and appended: text tokens and the other parts "
    "(tool-call arguments, reasoning...), a choice's opening fragment not counted.",
)
events_appended = Counter(
    "tokenrelay_token_events_appended",
    "Token and delta events appended (fragments after coalescing).",
)
upstream_retries = Counter(
    "tokenrelay_upstream_retries",
    "Upstream requests asked again after failing before the first token, by error code.",
    ["code"],
)
upstream_errors = Counter(
    "tokenrelay_upstream_errors", "Generations that ended in an error, by code.", ["code"]
)
events_delivered = Counter(
    "tokenrelay_events_delivered", "Events sent to readers, by format.", ["format"]
)
responses_cut = Counter(
    "tokenrelay_responses_cut",
    "Stream responses ended by the gateway before their end, by reason.",
    ["reason"],
)
active_readers = Gauge("tokenrelay_active_readers", "Readers connected to this gateway.")
delivery_lag = Histogram(
    "tokenrelay_delivery_lag_seconds",
    "How far behind its append an event reached a reader (reader lag, in time); once per "
    "batch a gateway delivers, however many readers at the same offset share it.",
    buckets=(*_LATENCY_BUCKETS, 2.5, 5, 10, 30, 60),
)
event_loop_lag = Histogram(
    "tokenrelay_event_loop_lag_seconds",
    "How late the process's event loop woke a timer: the wait every event in it pays.",
    buckets=_LATENCY_BUCKETS,
)
redis_latency = Histogram(
    "tokenrelay_redis_command_seconds",
    "Latency of tokenrelay's Redis operations, by operation.",
    ["operation"],
    buckets=_LATENCY_BUCKETS,
)


@contextmanager
def timed_redis(operation: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        redis_latency.labels(operation).observe(time.perf_counter() - started)
