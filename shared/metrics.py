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


# -- Durable Streams (/v1/ds) ------------------------------------------------------------------

DS_REFUSALS = (
    "missing",
    "gone",
    "closed",
    "content_type",
    "stale_epoch",
    "epoch_seq",
    "gap",
    "stream_seq",
    "full",
)
"""Why an append is refused: ``ds_append.lua``'s outcomes but ``ok`` and ``duplicate``."""
DS_READ_MODES = ("catch-up", "long-poll", "sse")

ds_streams_created = Counter(
    "tokenrelay_ds_streams_created",
    "Durable streams created (a PUT that found one with the same configuration not counted), "
    "by kind: new or fork.",
    ["kind"],
)
ds_streams_deleted = Counter(
    "tokenrelay_ds_streams_deleted",
    "Durable streams deleted (DELETE), by how: removed, or tombstoned while forks of it live.",
    ["how"],
)
ds_messages_appended = Counter(
    "tokenrelay_ds_messages_appended",
    "Messages written to durable streams (a JSON array's elements one each), by creating PUTs "
    "and appends; a fork's inherited messages not counted.",
)
ds_bytes_appended = Counter(
    "tokenrelay_ds_bytes_appended",
    "Bytes of the messages counted in tokenrelay_ds_messages_appended.",
)
ds_appends_refused = Counter(
    "tokenrelay_ds_appends_refused",
    "Durable stream appends refused, by reason: missing (404), gone (410), closed, "
    "content_type, gap and stream_seq (409), stale_epoch (403), epoch_seq (400), full (413).",
    ["reason"],
)
ds_appends_duplicate = Counter(
    "tokenrelay_ds_appends_duplicate",
    "Durable stream appends an idempotent producer had already made (acknowledged, not "
    "written again): its retries.",
)
ds_reads = Counter(
    "tokenrelay_ds_reads",
    "Durable stream reads (GET) answered, by mode: catch-up, long-poll or sse.",
    ["mode"],
)
ds_live_readers = Gauge(
    "tokenrelay_ds_live_readers",
    "Durable stream reads waiting for data on this gateway now, by mode: long-poll or sse.",
    ["mode"],
)
ds_long_poll_timeouts = Counter(
    "tokenrelay_ds_long_poll_timeouts",
    "Durable stream long-poll reads that waited their whole time for nothing (204).",
)


def _export_every_series() -> None:
    """Every labelled durable stream series from the start, at 0 (a rate needs two points)."""
    for reason in DS_REFUSALS:
        ds_appends_refused.labels(reason)
    for mode in DS_READ_MODES:
        ds_reads.labels(mode)
    for mode in DS_READ_MODES[1:]:
        ds_live_readers.labels(mode)
    for kind in ("new", "fork"):
        ds_streams_created.labels(kind)
    for how in ("removed", "tombstoned"):
        ds_streams_deleted.labels(how)


_export_every_series()
