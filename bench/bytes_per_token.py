"""The cost of plain text: Redis bytes per token and the worker's tokens/s at full speed.

Runs the real worker path in-process, as ``bench/coalesce.py`` does (``Producer`` ->
the openai SDK -> ``Appender`` -> the Lua appends), under uvloop as the worker runs, against
a private ``redis-server`` on a free port and the mock model in a process of its own (both
from ``bench/stack.py``), so this process's CPU time is the worker's. Two phases per run:

- paced: ``--paced-streams`` streams of ``--paced-tokens`` tokens on average at
  ``--paced-rate`` tokens/s, ``--paced-concurrency`` at a time: one token per event, the
  realistic worst case for bytes per token. The worker runs them with
  ``coalesce_max_chars=1``, which keeps every token an event of its own even when a busy
  machine delays the worker or the mock (their tokens would otherwise merge). Their
  lengths are spread evenly over ``--paced-spread`` values (150-249 by default): a Redis
  stream grows by listpack nodes of up to 100 entries, the newest preallocated to 4 KB, so
  one entry more costs a whole node to the streams at a node boundary and almost nothing
  to the others; at one fixed length the figure would jump with the boundary;
- full speed: ``--streams`` x ``--tokens`` tokens from the mock at ``rate=0``, timed: tokens/s
  appended by the one worker, and its CPU (and Redis's) per token.

For every finished stream: ``MEMORY USAGE ... SAMPLES 0`` of its events stream and of its
meta hash (``shared/keys.py``), its entries (``XLEN``), and the bytes published on its notify
channel (counted by a pattern subscriber in this process). Every figure is per token as the
mock counted them; the text each stream holds is checked against what the mock sent.
``--runs`` repeats the whole measurement; the table shows the min and median of the runs.

    .venv/bin/python -m bench.bytes_per_token [--runs 3] [--json results.json]

The script only imports what both event models share (``Producer``, ``StreamStore.create``,
``build_client``), so the same file measures an older checkout too: copy it into that
worktree and run it there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import uvloop

from bench.stack import REPO, Stack, cpu_seconds
from producer.generation import Producer
from producer.upstream import Upstream, build_client
from shared.keys import Keys
from shared.settings import Settings
from shared.store import StreamStore

FIGURES = (
    # (phase, key, label, format)
    ("paced", "tokens_per_stream", "paced: tokens per stream", "{:,.1f}"),
    ("paced", "events_per_stream", "paced: stream entries per stream", "{:,.1f}"),
    ("paced", "token_events_per_token", "paced: token events per token", "{:.3f}"),
    ("paced", "events_bytes_per_token", "paced: events stream bytes per token", "{:.1f}"),
    ("paced", "meta_bytes_per_stream", "paced: meta hash bytes per stream", "{:,.0f}"),
    ("paced", "redis_bytes_per_token", "paced: Redis bytes per token (events + meta)", "{:.1f}"),
    ("paced", "notify_bytes_per_token", "paced: notify bytes published per token", "{:.1f}"),
    ("full", "events_per_stream", "full speed: stream entries per stream", "{:,.1f}"),
    ("full", "redis_bytes_per_token", "full speed: Redis bytes per token", "{:.2f}"),
    ("full", "notify_bytes_per_token", "full speed: notify bytes per token", "{:.2f}"),
    ("full", "tokens_per_s", "full speed: tokens/s appended by one worker", "{:,.0f}"),
    ("full", "worker_cpu_us_per_token", "full speed: worker CPU µs per token", "{:.2f}"),
    ("full", "redis_cpu_us_per_token", "full speed: Redis CPU µs per token", "{:.2f}"),
)


@dataclass(frozen=True)
class Mock:
    """The mock model: its URL, and its pid when this process started it."""

    url: str
    pid: int | None

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid) if self.pid is not None else 0.0


async def redis_cpu_seconds(redis: aioredis.Redis) -> float:
    """The Redis server's CPU time so far (``INFO cpu``: main thread and children)."""
    cpu = await redis.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


class NotifyCounter:
    """Bytes and messages published on every notify channel under ``prefix``."""

    def __init__(self, url: str, prefix: str) -> None:
        self._redis = aioredis.Redis.from_url(url)  # bytes: the payload's size as sent
        self._pubsub = self._redis.pubsub()
        self._pattern = f"{prefix}:*:notify"
        self.bytes: Counter[str] = Counter()
        self.messages: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()

    async def __aenter__(self) -> NotifyCounter:
        await self._pubsub.psubscribe(self._pattern)
        self._task = asyncio.create_task(self._count())
        return self

    async def _count(self) -> None:
        async for message in self._pubsub.listen():
            if message["type"] == "pmessage":
                channel = message["channel"].decode()
                self.bytes[channel] += len(message["data"])
                self.messages[channel] += 1
                self._arrived.set()

    async def drain(self, expected: int, timeout_s: float = 10) -> None:
        """Wait until ``expected`` messages arrived in all (they trail the appends)."""
        try:
            async with asyncio.timeout(timeout_s):
                while sum(self.messages.values()) < expected:
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            got = sum(self.messages.values())
            raise RuntimeError(f"{got} notify messages of {expected} arrived") from None

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._pubsub.aclose()
        await self._redis.aclose()


def _mock_records(mock: Mock, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The mock's record of each stream's request (``GET /_mock/requests?stream=...``)."""
    records: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), 50):
        query = urllib.parse.urlencode([("stream", i) for i in ids[start : start + 50]])
        with urllib.request.urlopen(f"{mock.url}/_mock/requests?{query}", timeout=30) as answer:
            records |= {r["stream_id"]: r for r in json.load(answer)}
    return records


async def _read_back(redis: aioredis.Redis, key: str) -> tuple[str, Counter[str]]:
    """Choice 0's text in a finished events stream (``token`` events, and the ``content`` of
    ``delta`` events of choice 0 where they exist), and its entries by type."""
    text: list[str] = []
    types: Counter[str] = Counter()
    for _, fields in await redis.xrange(key):
        kind = fields["type"]
        types[kind] += 1
        data = json.loads(fields["data"])
        if kind == "token":
            text.append(data["text"])
        elif kind == "delta" and data.get("choice") == 0 and isinstance(data.get("content"), str):
            text.append(data["content"])
    return "".join(text), types


async def phase(
    url: str,
    mock: Mock,
    models: list[str],
    concurrency: int,
    *,
    timed: bool,
    max_chars: int | None = None,
) -> dict[str, float]:
    """Generate one stream per model name with one in-process worker, ``concurrency`` at a
    time; measure them. ``max_chars``: the worker's ``coalesce_max_chars``, if not the
    default."""
    prefix = f"bench-bpt-{uuid.uuid4().hex[:8]}"
    settings = Settings(redis_url=url, key_prefix=prefix)
    if max_chars is not None:
        settings = Settings(redis_url=url, key_prefix=prefix, coalesce_max_chars=max_chars)
    keys = Keys(prefix)
    redis = aioredis.Redis.from_url(url, decode_responses=True)
    store = StreamStore(redis, settings)
    client = build_client(
        api_key="x", base_url=f"{mock.url}/v1", timeout_s=60, connect_timeout_s=10
    )
    streams = len(models)
    try:
        async with NotifyCounter(url, prefix) as notify:
            producer = Producer(store, Upstream(client, "mock"), settings, "bench")
            ids = [uuid.uuid4().hex[:22] for _ in models]
            for stream_id, model in zip(ids, models, strict=True):
                await store.create(
                    stream_id,
                    model=model,
                    request={"model": model, "messages": [{"role": "user", "content": stream_id}]},
                    metadata={},
                    cancel_on_disconnect_s=None,
                )
            slots = asyncio.Semaphore(concurrency)

            async def generate(stream_id: str) -> None:
                async with slots:
                    await producer.generate(stream_id)

            redis_cpu0, mock_cpu0 = await redis_cpu_seconds(redis), mock.cpu_seconds()
            cpu0, started = time.process_time(), time.perf_counter()
            await asyncio.gather(*(generate(i) for i in ids))
            elapsed = time.perf_counter() - started
            worker_cpu = time.process_time() - cpu0
            redis_cpu = await redis_cpu_seconds(redis) - redis_cpu0
            mock_cpu = mock.cpu_seconds() - mock_cpu0

            records = await asyncio.to_thread(_mock_records, mock, ids)
            tokens = sum(int(records[i]["tokens_sent"]) for i in ids)
            types: Counter[str] = Counter()
            events_bytes, meta_bytes = 0, 0
            for stream_id in ids:
                text, kinds = await _read_back(redis, keys.events(stream_id))
                if kinds["done"] != 1 or text != records[stream_id]["sent_text"]:
                    raise RuntimeError(f"stream {stream_id} does not hold what the mock sent")
                types += kinds
                events_bytes += await redis.memory_usage(keys.events(stream_id), samples=0) or 0
                meta_bytes += await redis.memory_usage(keys.meta(stream_id), samples=0) or 0
            entries = sum(types.values())
            await notify.drain(entries)  # every entry is published, the terminal one too
            notify_bytes = sum(notify.bytes[keys.notify(i)] for i in ids)
            notify_messages = sum(notify.messages[keys.notify(i)] for i in ids)
    finally:
        await client.close()
        async for key in redis.scan_iter(match=f"{prefix}:*", count=1000):
            await redis.delete(key)
        await redis.aclose()
    result = {
        "streams": streams,
        "tokens": tokens,
        "tokens_per_stream": tokens / streams,
        "events_per_stream": entries / streams,
        "token_events_per_token": types["token"] / tokens,
        "delta_events_per_stream": types["delta"] / streams,
        "events_bytes_per_token": events_bytes / tokens,
        "meta_bytes_per_stream": meta_bytes / streams,
        "redis_bytes_per_token": (events_bytes + meta_bytes) / tokens,
        "notify_bytes_per_token": notify_bytes / tokens,
        "notify_messages_per_token": notify_messages / tokens,
    }
    if timed:
        result |= {
            "seconds": elapsed,
            "tokens_per_s": tokens / elapsed,
            "worker_cpu_us_per_token": 1e6 * worker_cpu / tokens,
            "worker_cpu_percent": 100 * worker_cpu / elapsed,
            "redis_cpu_us_per_token": 1e6 * redis_cpu / tokens,
        }
        if mock.pid is not None:
            result["mock_cpu_us_per_token"] = 1e6 * mock_cpu / tokens
    return result


def paced_lengths(args: argparse.Namespace) -> list[int]:
    """Tokens of each paced stream: ``--paced-tokens`` on average, spread evenly over
    ``--paced-spread`` lengths (a Redis stream grows by nodes of 100 entries, so one entry
    more costs a node to the streams at a boundary only: the spread averages over that)."""
    low = args.paced_tokens - args.paced_spread // 2
    return [low + (i * args.paced_spread) // args.paced_streams for i in range(args.paced_streams)]


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    rate = f"{args.paced_rate:g}"
    paced_models = [f"mock?tokens={n}&rate={rate}" for n in paced_lengths(args)]
    full_model = f"mock?tokens={args.tokens}&rate=0"
    runs: list[dict[str, dict[str, float]]] = []
    load = [os.getloadavg()]
    with (
        tempfile.TemporaryDirectory(prefix="tokenrelay-bench-bpt-") as logs,
        Stack(Path(logs) / "logs") as stack,
    ):
        if args.mock_url:
            mock = Mock(args.mock_url.rstrip("/"), None)
        else:
            started = stack.mock_model()
            mock = Mock(started.url, started.pid)
        url = stack.redis_url
        # one small stream first: the SDK's imports and the scripts' loading are not measured
        await phase(url, mock, ["mock?tokens=10&rate=0"], 1, timed=False)
        for run in range(args.runs):
            paced = await phase(
                url, mock, paced_models, args.paced_concurrency, timed=False, max_chars=1
            )
            full = await phase(url, mock, [full_model] * args.streams, args.streams, timed=True)
            runs.append({"paced": paced, "full": full})
            load.append(os.getloadavg())
            print(
                f"run {run + 1}/{args.runs}: paced {paced['redis_bytes_per_token']:.1f} B/token,"
                f" full speed {full['tokens_per_s']:,.0f} tokens/s"
                f" ({full['worker_cpu_us_per_token']:.2f} µs worker CPU per token),"
                f" load average {load[-1][0]:.2f}",
                flush=True,
            )
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for phase_name in ("paced", "full"):
        summary[phase_name] = {}
        for key in runs[0][phase_name]:
            values = [r[phase_name][key] for r in runs]
            summary[phase_name][key] = {
                "min": min(values),
                "median": statistics.median(values),
                "max": max(values),
            }
    lengths = paced_lengths(args)
    return {
        "commit": _commit(),
        "mock": mock.url if mock.pid is None else "started by this run",
        "paced": f"{args.paced_streams} streams of {min(lengths)}-{max(lengths)} tokens"
        f" at {rate}/s, {args.paced_concurrency} at a time",
        "full": f"{args.streams} streams of {full_model}, all at once",
        "runs": runs,
        "summary": summary,
        "load_average_1m": [round(one, 2) for one, _, _ in load],
    }


def _commit() -> str:
    done = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True
    )
    return done.stdout.strip() or "unknown"


def print_table(result: dict[str, Any]) -> None:
    summary = result["summary"]
    print(f"\ncommit {result['commit']}, {len(result['runs'])} runs,", end=" ")
    print(f"load average (1 min) at start and after each run: {result['load_average_1m']}")
    print(f"paced: {result['paced']}; full speed: {result['full']}\n")
    print("| figure | min | median | max |")
    print("| --- | --- | --- | --- |")
    for phase_name, key, label, fmt in FIGURES:
        cell = summary[phase_name][key]
        row = " | ".join(fmt.format(cell[s]) for s in ("min", "median", "max"))
        print(f"| {label} | {row} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="repeats (default 3)")
    parser.add_argument("--streams", type=int, default=50, help="full-speed streams (50)")
    parser.add_argument("--tokens", type=int, default=5000, help="tokens per full-speed stream")
    parser.add_argument("--paced-streams", type=int, default=100, help="paced streams (100)")
    parser.add_argument(
        "--paced-tokens", type=int, default=200, help="tokens per paced stream, on average (200)"
    )
    parser.add_argument(
        "--paced-spread",
        type=int,
        default=100,
        help="paced streams' lengths spread evenly over this many values (100; 0: all equal)",
    )
    parser.add_argument(
        "--paced-concurrency", type=int, default=25, help="paced streams at a time (25)"
    )
    parser.add_argument("--paced-rate", type=float, default=100, help="paced tokens/s (100)")
    parser.add_argument(
        "--mock-url",
        help="a mock model already running (python -m producer.mockmodel --port P), e.g. the"
        " same one for two checkouts; default: start one from this checkout",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    counts = (args.runs, args.streams, args.tokens, args.paced_streams, args.paced_concurrency)
    if min(counts) < 1 or not 0 <= args.paced_spread < 2 * args.paced_tokens:
        parser.error("counts must be at least 1, and the spread below twice --paced-tokens")
    if args.paced_rate <= 0:
        parser.error("--paced-rate must be positive")
    result = uvloop.run(measure(args))
    print_table(result)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
