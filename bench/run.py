"""tokenrelay's benchmark scenarios: one command each, a results table and a JSON line.

    .venv/bin/python -m bench.run latency      # 200 generations x 50 tokens/s x 500 tokens
    .venv/bin/python -m bench.run throughput   # 50 generations x 5,000 tokens, mock at full speed

Each run starts its own stack (``bench/stack.py``: a private redis-server, the mock model,
gateways and workers as separate processes, logs in ``bench/results/logs/<scenario>/``) and
drives it from this process with the load generator (``bench/loadgen.py``) under uvloop.
The results are printed as a table and appended to ``bench/results/<scenario>.jsonl``;
``latency`` also draws ``bench/results/latency-cdf.png`` when matplotlib is installed.
Every run is bounded in time: it stops by itself, and exits 1 if anything was lost or failed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import uvloop
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from bench import loadgen, profile
from bench.loadgen import Tally
from bench.stack import API_KEY, REPO, Proc, Stack, cpu_seconds, rss_bytes
from shared.keys import Keys

RESULTS = Path(__file__).resolve().parent / "results"
console = Console()

# --- measuring ------------------------------------------------------------------------------


def percentiles(values_ns: list[int]) -> dict[str, float]:
    """p50, p99 (nearest rank) and max, in milliseconds."""
    if not values_ns:
        return {"p50_ms": math.nan, "p99_ms": math.nan, "max_ms": math.nan}
    ordered = sorted(values_ns)

    def rank(q: float) -> float:
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)] / 1e6

    return {"p50_ms": rank(0.50), "p99_ms": rank(0.99), "max_ms": ordered[-1] / 1e6}


class Processes:
    """CPU% of each process of the stack (and of this load generator) over a window."""

    def __init__(self, procs: dict[str, Proc]) -> None:
        self.pids = {name: proc.pid for name, proc in procs.items()} | {"loadgen": os.getpid()}
        self.start()

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.cpu0 = {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def cpu_percent(self) -> dict[str, float]:
        wall = time.monotonic() - self.t0
        return {
            name: round(100 * (cpu_seconds(pid) - self.cpu0[name]) / wall, 1)
            for name, pid in self.pids.items()
        }

    def rss_mb(self) -> dict[str, float]:
        return {name: round(rss_bytes(pid) / 2**20, 1) for name, pid in self.pids.items()}


@contextmanager
def progress_bar(label: str, total: int, done: Callable[[], int]) -> Iterator[None]:
    """A progress bar of ``done()`` out of ``total``, refreshed a few times a second."""
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        refresh_per_second=4,
    ) as progress:
        task = progress.add_task(label, total=total)

        async def tick() -> None:
            while True:
                progress.update(task, completed=done())
                await asyncio.sleep(0.25)

        ticker = asyncio.create_task(tick())
        try:
            yield
        finally:
            ticker.cancel()
            progress.update(task, completed=done())


async def _guarded(errors: list[str], work: Awaitable[None]) -> None:
    try:
        await work
    except Exception as exc:
        errors.append(repr(exc))


def _lost(tally: Tally, readers: int, tokens: int) -> int:
    """Tokens missing (or extra) over all readers, compared with ``tokens`` each."""
    counts = tally.per_reader + [0] * (readers - len(tally.per_reader))
    return sum(abs(count - tokens) for count in counts)


def _observe(stack: Stack, procs: dict[str, Proc], window: Processes) -> dict[str, Any]:
    """Memory and Redis connections, taken while the load runs."""
    return {
        "rss_mb": window.rss_mb(),
        "redis_connections": {
            name: stack.redis_connections(proc)
            for name, proc in procs.items()
            if name.startswith(("gateway", "worker", "naive", "control"))
        },
        "redis_clients": stack.redis_clients(),
    }


# --- scenarios ------------------------------------------------------------------------------


async def latency(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """G generations x R tokens/s x T tokens, one reader each through the gateways, and as
    many direct readers of the mock model: per-token latency of both, and the difference."""
    with console.status("starting redis, the mock model, gateways and workers"):
        mock = stack.mock_model()
        gateways = [stack.gateway() for _ in range(args.gateways)]
        max_jobs = str(max(200, args.streams))  # 200: the default
        workers = [stack.worker(TOKENRELAY_MAX_JOBS=max_jobs) for _ in range(args.workers)]
    procs = {"redis": stack.redis, "mock": mock}
    procs |= {f"gateway-{i}": proc for i, proc in enumerate(gateways)}
    procs |= {f"worker-{i}": proc for i, proc in enumerate(workers)}
    naive = stack.naive_gateway() if args.naive else None
    if naive is not None:  # the gateways only create streams; every reader is on the naive one
        procs["naive-gateway"] = naive
    model = f"mock?tokens={args.tokens}&rate={args.rate:g}&ttft={args.ttft:g}&stamp=1"
    relay, direct, errors = Tally(), Tally(), list[str]()

    async def relayed(gateway: Proc, prompt: str) -> None:
        on_frame = relay.relay_reader()
        events_url = await loadgen.create_stream(gateway.port, API_KEY, model, prompt)
        await loadgen.read_relay((naive or gateway).port, events_url, on_frame)

    async def generation(i: int) -> None:
        await asyncio.sleep(i * args.ramp / args.streams)
        prompt = f"bench {i}"
        await asyncio.gather(
            _guarded(errors, relayed(gateways[i % len(gateways)], prompt)),
            _guarded(errors, loadgen.read_direct(mock.port, model, prompt, direct.direct_reader())),
        )

    duration = args.ramp + args.ttft + args.tokens / args.rate
    window = Processes(procs)

    async def observe_midway() -> dict[str, Any]:
        await asyncio.sleep(args.ramp + args.ttft + args.tokens / args.rate / 2)
        return await asyncio.to_thread(_observe, stack, procs, window)

    async def steady_cpu() -> tuple[dict[str, float], float]:
        """CPU% while the generations stream (from 1 s after the last one was due to start
        to 1 s before the first one is due to end), and the tokens per second the relay's
        readers received meanwhile: the per-token cost without the starts and ends."""
        await asyncio.sleep(args.ramp + args.ttft + 1)
        steady, received = Processes(procs), relay.tokens
        await asyncio.sleep(max(0.5, args.tokens / args.rate - args.ramp - 2))
        cpu = steady.cpu_percent()
        return cpu, (relay.tokens - received) / (time.monotonic() - steady.t0)

    expected = args.streams * args.tokens
    timed_out = False
    with progress_bar("tokens received", 2 * expected, lambda: relay.tokens + direct.tokens):
        observer = asyncio.create_task(observe_midway())
        steady = asyncio.create_task(steady_cpu())
        try:
            async with asyncio.timeout(duration + args.grace):
                await asyncio.gather(*(generation(i) for i in range(args.streams)))
        except TimeoutError:
            timed_out = True
        cpu = window.cpu_percent()
        elapsed = time.monotonic() - window.t0
        if not observer.done():  # a short run: observe now, while the processes still run
            observer.cancel()
            observer = asyncio.create_task(asyncio.to_thread(_observe, stack, procs, window))
        observed = await observer
        steady_percent, steady_tokens_per_s = await steady
        loop_lag = {
            name: await _loop_lag(proc)
            for name, proc in procs.items()
            if name.startswith(("gateway", "worker"))
        }

    plot = _plot_cdf(
        args.results / "latency-cdf.png",
        {
            "direct from the mock model": direct.latencies_ns,
            "through tokenrelay": relay.latencies_ns,
        },
        f"{args.streams} generations x {args.rate:g} tokens/s x {args.tokens} tokens",
    )
    relay_p, direct_p = percentiles(relay.latencies_ns), percentiles(direct.latencies_ns)
    lost = _lost(relay, args.streams, args.tokens) + _lost(direct, args.streams, args.tokens)
    return {
        "params": {k: vars(args)[k] for k in ("streams", "rate", "tokens", "ttft", "ramp")}
        | {"gateways": args.gateways, "workers": args.workers, "naive": args.naive},
        "gateway_kind": "naive" if args.naive else "tokenrelay",
        "relay": relay_p | {"tokens": relay.tokens, "events": relay.events},
        "direct": direct_p | {"tokens": direct.tokens},
        "added_p50_ms": round(relay_p["p50_ms"] - direct_p["p50_ms"], 3),
        "added_p99_ms": round(relay_p["p99_ms"] - direct_p["p99_ms"], 3),
        "to_redis": percentiles(relay.to_redis_ns),
        "from_redis": percentiles(relay.from_redis_ns),
        "event_loop_lag": loop_lag,
        "elapsed_s": round(elapsed, 2),
        "planned_s": round(duration, 2),
        "expected_tokens": expected,
        "lost_tokens": lost,
        "cpu_percent": cpu,
        "steady_cpu_percent": steady_percent,
        "steady_tokens_per_s": round(steady_tokens_per_s),
        "cpu_us_per_token": {
            name: round(percent / 100 * 1e6 / steady_tokens_per_s, 1)
            for name, percent in steady_percent.items()
            if steady_tokens_per_s
        },
        **observed,
        "plot": str(plot) if plot else None,
        "errors": (errors + relay.errors)[:10],
        "ok": not (timed_out or errors or relay.errors or lost),
    }


async def _first_token_ns(read: Callable[[loadgen.OnFrame], Awaitable[None]]) -> int:
    """Nanoseconds from now to the first token that ``read`` (a whole read) delivers."""
    started, first = time.time_ns(), 0

    def on_frame(event: bytes, id_: bytes, data: bytes, now: int) -> None:
        nonlocal first
        if not first and loadgen.STAMP.search(data):
            first = now

    await read(on_frame)
    if not first:
        raise RuntimeError("a read ended without a token")
    return first - started


async def ttft(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """Time to first token through tokenrelay (create the stream, read it) and straight from
    the mock model: one generation at a time (idle), then a burst of many within a second."""
    with console.status("starting redis, the mock model, a gateway and a worker"):
        mock = stack.mock_model()
        gateway = stack.gateway()
        worker = stack.worker(TOKENRELAY_MAX_JOBS=str(max(200, args.streams)))
    procs = {"redis": stack.redis, "mock": mock, "gateway-0": gateway, "worker-0": worker}
    model = f"mock?tokens={args.tokens}&rate={args.rate:g}&stamp=1"
    errors: list[str] = []

    moments: dict[str, list[float]] = {name: [] for name in TTFT_MOMENTS}

    async def relayed(prompt: str, *, timeline: bool = False) -> int:
        sent_at, answered_at, stream_id = time.time(), 0.0, ""

        async def read(on_frame: loadgen.OnFrame) -> None:
            nonlocal answered_at, stream_id
            events_url = await loadgen.create_stream(gateway.port, API_KEY, model, prompt)
            answered_at, stream_id = time.time(), _stream_id(events_url)
            await loadgen.read_relay(gateway.port, events_url, on_frame)

        first_ns = await _first_token_ns(read)
        if timeline:  # where the time went, by the stream's own timestamps (one clock)
            meta = await asyncio.to_thread(stack.observer.hgetall, Keys("bench").meta(stream_id))
            at = {
                name: float(meta[field.encode()]) for name, field in TTFT_MOMENTS.items() if field
            }
            at |= {
                "POST answered": answered_at,
                "first token at the client": sent_at + first_ns / 1e9,
            }
            for name, moment in at.items():
                moments[name].append((moment - sent_at) * 1e3)
        return first_ns

    async def direct(prompt: str) -> int:
        return await _first_token_ns(
            lambda on_frame: loadgen.read_direct(mock.port, model, prompt, on_frame)
        )

    idle: dict[str, list[int]] = {"relay": [], "direct": []}
    with progress_bar("one at a time", args.idle, lambda: len(idle["relay"])):
        for i in range(args.warmup + args.idle):
            relay_ns = await relayed(f"idle {i}", timeline=i >= args.warmup)
            direct_ns = await direct(f"idle {i}")
            if i >= args.warmup:
                idle["relay"].append(relay_ns)
                idle["direct"].append(direct_ns)
            await asyncio.sleep(args.gap)

    burst: dict[str, list[int]] = {"relay": [], "direct": []}
    window = Processes(procs)

    async def one_of_the_burst(i: int) -> None:
        await asyncio.sleep(i * args.ramp / args.streams)
        relay_ns, direct_ns = await asyncio.gather(relayed(f"burst {i}"), direct(f"burst {i}"))
        burst["relay"].append(relay_ns)
        burst["direct"].append(direct_ns)

    with progress_bar("a burst", args.streams, lambda: len(burst["relay"])):
        async with asyncio.timeout(args.ramp + args.grace):
            await asyncio.gather(
                *(_guarded(errors, one_of_the_burst(i)) for i in range(args.streams))
            )
    cpu = window.cpu_percent()

    def summary(series: dict[str, list[int]]) -> dict[str, Any]:
        relay_p, direct_p = percentiles(series["relay"]), percentiles(series["direct"])
        return {
            "relay": relay_p,
            "direct": direct_p,
            "added_p50_ms": round(relay_p["p50_ms"] - direct_p["p50_ms"], 3),
            "added_p99_ms": round(relay_p["p99_ms"] - direct_p["p99_ms"], 3),
            "count": len(series["relay"]),
        }

    return {
        "params": {k: vars(args)[k] for k in ("idle", "streams", "ramp", "tokens", "rate")},
        "gateway_kind": "tokenrelay",
        "idle": summary(idle),
        "idle_timeline_ms": {
            name: round(statistics.median(values), 2) for name, values in moments.items() if values
        },
        "burst": summary(burst),
        "cpu_percent": cpu,
        "errors": errors[:10],
        "lost_tokens": 0,
        "ok": not errors and len(burst["relay"]) == args.streams,
    }


TTFT_MOMENTS = {
    "stored (created_at)": "created_at",
    "POST answered": "",
    "claimed by the worker (started_at)": "started_at",
    "first token appended (first_token_at)": "first_token_at",
    "first token at the client": "",
}
"""The moments of one generation's start, as ``ttft`` times them from the client's POST: by
the stream's meta (one clock: the machine's), the POST's answer, the first token's arrival."""


def _ttft_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    def pair(row: dict[str, float], prefix: str = "") -> str:
        return f"{_ms(row[prefix + 'p50_ms'])} / {_ms(row[prefix + 'p99_ms'])}"

    rows = []
    for phase, label in (("idle", "one at a time"), ("burst", "a burst")):
        p = r[phase]
        rows += [
            (f"{label} ({p['count']}): direct p50 / p99 ms", pair(p["direct"])),
            (f"{label}: through tokenrelay p50 / p99 ms", pair(p["relay"])),
            (f"[bold]{label}: added p50 / p99 ms", "[bold]" + pair(p, "added_")),
        ]
        if phase == "idle":
            rows += [
                (f"  {name} (p50 ms after the POST)", _ms(ms))
                for name, ms in r.get("idle_timeline_ms", {}).items()
            ]
    return rows


async def throughput(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """K generations of T tokens at full speed, one worker, one gateway, one reader each:
    tokens/s appended by the worker and delivered by the gateway."""
    with console.status("starting redis, the mock model, a gateway and a worker"):
        mock = stack.mock_model()
        gateway = stack.gateway()
        worker = stack.worker(TOKENRELAY_MAX_JOBS=str(max(200, args.streams)))
        readers_gw = _reader_gateway(stack, args, gateway)
    procs = {"redis": stack.redis, "mock": mock, "gateway": readers_gw, "worker": worker}
    if args.naive:
        procs["control-gateway"] = gateway
    model = f"mock?tokens={args.tokens}&rate={args.rate:g}&stamp=1"
    relay, errors = Tally(), list[str]()
    expected = args.streams * args.tokens

    async def generation(i: int) -> None:
        on_frame = relay.relay_reader()
        events_url = await loadgen.create_stream(gateway.port, API_KEY, model, f"bench {i}")
        await loadgen.read_relay(readers_gw.port, events_url, on_frame)

    window = Processes(procs)
    observed: dict[str, Any] = {}
    timed_out = False
    with progress_bar("tokens received", expected, lambda: relay.tokens):
        try:
            plan = args.tokens / args.rate if args.rate else 0
            async with asyncio.timeout(args.grace + plan + expected / 5_000):
                await asyncio.gather(
                    *(_guarded(errors, generation(i)) for i in range(args.streams))
                )
        except TimeoutError:
            timed_out = True
        cpu = window.cpu_percent()
        observed = await asyncio.to_thread(_observe, stack, procs, window)

    appended_metric = await _metric(worker, "tokenrelay_tokens_appended_total")
    status, body = await loadgen.request(mock.port, "GET", "/_mock/requests")
    sent = sum(record["tokens_sent"] for record in json.loads(body)) if status == 200 else -1
    append_s = (relay.last_append_ms - relay.first_append_ms) / 1e3
    deliver_s = (relay.last_ns - relay.first_ns) / 1e9
    lost = _lost(relay, args.streams, args.tokens)
    return {
        "params": {"streams": args.streams, "tokens": args.tokens, "rate": args.rate}
        | {"naive": args.naive},
        "gateway_kind": "naive" if args.naive else "tokenrelay",
        "tokens_sent_by_mock": sent,
        "tokens_appended_metric": appended_metric,
        "tokens_received": relay.tokens,
        "expected_tokens": expected,
        "lost_tokens": lost,
        "token_events": relay.events,
        "appended_per_s": round(relay.tokens / append_s) if append_s > 0 else None,
        "delivered_per_s": round(relay.tokens / deliver_s) if deliver_s > 0 else None,
        "events_delivered_per_s": round(relay.events / deliver_s) if deliver_s > 0 else None,
        "append_window_s": round(append_s, 3),
        "deliver_window_s": round(deliver_s, 3),
        "latency": percentiles(relay.latencies_ns),
        "cpu_percent": cpu,
        **observed,
        "errors": (errors + relay.errors)[:10],
        "ok": not (timed_out or errors or relay.errors or lost)
        and sent == expected == appended_metric,
    }


# --- connections, fan-out, catch-up: readers of streams created beforehand ------------------


def _reader_gateway(stack: Stack, args: argparse.Namespace, gateway: Proc, **env: str) -> Proc:
    """Where the readers go: ``gateway`` itself, or with ``--naive`` the naive baseline
    (``bench/naive_gateway.py``) while ``gateway`` only creates and cancels streams."""
    return stack.naive_gateway(**env) if args.naive else gateway


def _stream_id(events_url: str) -> str:
    return events_url.split("/")[3]


def _reference(stack: Stack, stream_id: str) -> tuple[int, str]:
    """(tokens, digest of the token events' data) of a stream as Redis holds it."""
    entries = cast(
        list[tuple[bytes, dict[bytes, bytes]]],
        stack.observer.xrange(Keys("bench").events(stream_id)),
    )
    data = [fields[b"data"] for _, fields in entries if fields[b"type"] == b"token"]
    tokens = sum(len(loadgen.STAMP.findall(d)) for d in data)
    return tokens, loadgen.text_digest(data)


async def _create_streams(gateway: Proc, model: str, count: int, tag: str) -> list[str]:
    """``count`` streams created on ``gateway``; their events URLs."""
    return list(
        await asyncio.gather(
            *(
                loadgen.create_stream(gateway.port, API_KEY, model, f"{tag} {i}")
                for i in range(count)
            )
        )
    )


async def _cancel_streams(gateway: Proc, events_urls: list[str]) -> None:
    auth = {"authorization": f"Bearer {API_KEY}"}
    await asyncio.gather(
        *(
            loadgen.request(gateway.port, "POST", f"/v1/streams/{stream}/cancel", headers=auth)
            for stream in map(_stream_id, events_urls)
        ),
        return_exceptions=True,
    )


async def _wait_finished(gateway: Proc, events_urls: list[str], within_s: float) -> None:
    """Wait until every stream is in a final state (``GET /v1/streams/{id}``)."""
    auth = {"authorization": f"Bearer {API_KEY}"}
    pending = list(events_urls)
    async with asyncio.timeout(within_s):
        while pending:
            still = []
            for url in pending:
                _, body = await loadgen.request(
                    gateway.port, "GET", f"/v1/streams/{_stream_id(url)}", headers=auth
                )
                if json.loads(body).get("status") not in ("completed", "failed", "cancelled"):
                    still.append(url)
            pending = still
            if pending:
                await asyncio.sleep(0.2)


class Readers:
    """Many relay readers into one ``Tally``, opened ``concurrency`` at a time: a reader
    counts as connected once its first token (or, with ``until=None``, its response) came."""

    def __init__(self, tally: Tally, errors: list[str], ports: list[int], concurrency: int) -> None:
        """Readers go to ``ports`` in turn (several gateway processes)."""
        self.tally, self.errors, self.ports = tally, errors, ports
        self.gate = asyncio.Semaphore(concurrency)
        self.connected = 0
        self.failed = 0
        self.tasks: list[asyncio.Task[None]] = []
        self.stream_of: list[str] = []

    def open(self, events_url: str) -> None:
        self.stream_of.append(_stream_id(events_url))
        port = self.ports[len(self.tasks) % len(self.ports)]
        self.tasks.append(asyncio.create_task(self._read(port, events_url)))

    async def _read(self, port: int, events_url: str) -> None:
        first, terminal = asyncio.Event(), asyncio.Event()
        record = self.tally.relay_reader()

        def on_frame(event: bytes, id_: bytes, data: bytes, now: int) -> None:
            record(event, id_, data, now)
            if event in (b"token", b"done", b"error"):
                first.set()
            if event in (b"done", b"error"):
                terminal.set()

        async with self.gate:
            reading = asyncio.create_task(loadgen.read_relay(port, events_url, on_frame))
            waiting = asyncio.create_task(first.wait())
            await asyncio.wait((reading, waiting), return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
        if first.is_set():
            self.connected += 1
        try:
            await reading
        except asyncio.CancelledError:
            reading.cancel()
            raise
        except Exception as exc:
            self.failed += 1
            self.errors.append(repr(exc))
        else:
            if not terminal.is_set():
                self.failed += 1
                self.errors.append("the response ended before the stream's terminal event")

    async def wait(self, within_s: float) -> bool:
        """Wait for every reader to end; False (and the rest cancelled) on timeout."""
        if not self.tasks:
            return True
        _, pending = await asyncio.wait(self.tasks, timeout=within_s)
        await self.stop()
        return not pending

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def checked(self, references: dict[str, tuple[int, str]]) -> tuple[int, int]:
        """(readers whose tokens differ from their stream's, tokens missing or extra)."""
        wrong = lost = 0
        for i, stream in enumerate(self.stream_of):
            tokens, digest = references[stream]
            received = self.tally.per_reader[i]
            lost += abs(received - tokens)
            if received != tokens or self.tally.digests[i].hexdigest() != digest:
                wrong += 1
        return wrong, lost


def _cpu_per_token(cpu_percent: float, seconds: float, tokens: int) -> float | None:
    """Microseconds of CPU per delivered token (comparable when the load generator limits)."""
    return round(cpu_percent / 100 * seconds * 1e6 / tokens, 2) if tokens else None


def _gateway_observed(stack: Stack, gateway: Proc) -> dict[str, Any]:
    return {
        "gateway_rss_mb": round(gateway.rss_bytes() / 2**20, 1),
        "gateway_redis_named": stack.redis_named_connections(gateway),
        "gateway_redis_tcp": stack.redis_connections(gateway),
        "redis_clients": stack.redis_clients(),
    }


async def connections(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """N readers on S streams that send one token and then stay open and idle: gateway RSS
    per connection, its Redis connections, its CPU while idle (pings only)."""
    ping = f"{args.ping_interval:g}"
    with console.status("starting redis, the mock model, a gateway and a worker"):
        mock = stack.mock_model()
        gateway = stack.gateway(TOKENRELAY_PING_INTERVAL_S=ping)
        worker = stack.worker(
            TOKENRELAY_MAX_JOBS=str(max(200, args.streams)), TOKENRELAY_UPSTREAM_TIMEOUT_S="3600"
        )
        readers_gw = _reader_gateway(stack, args, gateway, TOKENRELAY_PING_INTERVAL_S=ping)
    procs = {"redis": stack.redis, "mock": mock, "gateway": readers_gw, "worker": worker}
    if args.naive:
        procs["control-gateway"] = gateway
    tally, errors = Tally(), list[str]()
    urls = await _create_streams(gateway, "mock?fault=stall&after=1&stamp=1", args.streams, "idle")
    await asyncio.sleep(0.5)
    before = await asyncio.to_thread(_gateway_observed, stack, readers_gw)
    readers = Readers(tally, errors, [readers_gw.port], args.concurrency)
    window = Processes(procs)
    t0 = time.monotonic()
    connect_timed_out = False
    samples: list[list[float]] = []  # [readers connected, gateway RSS MB, its Redis connections]

    async def sample() -> None:
        while True:
            connected = readers.connected
            rss = readers_gw.rss_bytes() / 2**20
            conns = await asyncio.to_thread(stack.redis_connections, readers_gw)
            samples.append([connected, round(rss, 1), conns])
            await asyncio.sleep(1)

    sampler = asyncio.create_task(sample())
    with progress_bar("readers connected", args.readers, lambda: readers.connected):
        try:
            async with asyncio.timeout(args.grace + args.readers / 200):
                for i in range(args.readers):
                    if readers.failed >= args.max_failures:
                        break
                    readers.open(urls[i % len(urls)])
                    await asyncio.sleep(0)
                while readers.connected + readers.failed < len(readers.tasks):
                    if readers.failed >= args.max_failures:
                        break
                    await asyncio.sleep(0.1)
        except TimeoutError:
            connect_timed_out = True
    connect_s = time.monotonic() - t0
    connect_cpu = window.cpu_percent()
    sampler.cancel()
    with_readers = await asyncio.to_thread(_gateway_observed, stack, readers_gw)
    samples.append(
        [readers.connected, with_readers["gateway_rss_mb"], with_readers["gateway_redis_tcp"]]
    )
    reached = readers.connected
    with console.status(f"{reached:,} readers connected; idle for {args.idle:g} s (pings only)"):
        window.start()
        await asyncio.sleep(args.idle)
        idle_cpu = window.cpu_percent()
        after_idle = await asyncio.to_thread(_gateway_observed, stack, readers_gw)
        rss_all = window.rss_mb()
        held = sum(1 for task in readers.tasks if not task.done())
    pings = sorted(tally.pings)
    without_ping = sum(1 for count in tally.pings if count == 0)
    without_token = sum(1 for count in tally.per_reader if count != 1)
    with console.status("cancelling the streams"):
        await _cancel_streams(gateway, urls)
        ended = await readers.wait(args.grace)
    rss_growth = (with_readers["gateway_rss_mb"] - before["gateway_rss_mb"]) * 2**20
    kind = "naive" if args.naive else "tokenrelay"
    plot = _plot_connections(args.results / "connections.png", args.results, kind, samples)
    lost = args.readers - reached
    return {
        "params": {
            k: vars(args)[k]
            for k in ("readers", "streams", "ping_interval", "idle", "concurrency", "naive")
        },
        "gateway_kind": "naive" if args.naive else "tokenrelay",
        "readers_connected": reached,
        "readers_failed": readers.failed,
        "readers_held_after_idle": held,
        "connect_s": round(connect_s, 2),
        "connect_cpu_percent": connect_cpu,
        "rss_before_mb": before["gateway_rss_mb"],
        "rss_with_mb": with_readers["gateway_rss_mb"],
        "rss_after_idle_mb": after_idle["gateway_rss_mb"],
        "rss_per_connection_kb": round(rss_growth / max(reached, 1) / 1024, 2),
        "gateway_redis_named": with_readers["gateway_redis_named"],
        "gateway_redis_tcp": with_readers["gateway_redis_tcp"],
        "redis_clients": with_readers["redis_clients"],
        "gateway_redis_named_before": before["gateway_redis_named"],
        "idle_gateway_cpu_percent": idle_cpu["gateway"],
        "pings_per_reader": {
            "min": pings[0] if pings else 0,
            "p50": pings[len(pings) // 2] if pings else 0,
            "max": pings[-1] if pings else 0,
        },
        "readers_without_ping": without_ping,
        "readers_without_token": without_token,
        "readers_ended_after_cancel": tally.finished,
        "samples": samples,
        "plot": str(plot) if plot else None,
        "cpu_percent": idle_cpu,
        "rss_mb": rss_all,
        "lost_tokens": lost + without_token,
        "errors": (errors + tally.errors)[:10],
        "ok": not (connect_timed_out or errors or tally.errors or lost or without_ping)
        and without_token == 0
        and held == args.readers
        and ended,
    }


async def fanout(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """R readers on one stream of T tokens at a paced rate: every reader gets every token;
    per-token latency; gateway CPU."""
    with console.status("starting redis, the mock model, gateways and a worker"):
        mock = stack.mock_model()
        gateway = stack.gateway()
        worker = stack.worker()
        readers_gws = [_reader_gateway(stack, args, gateway)]
        readers_gws += [
            _reader_gateway(stack, args, stack.gateway()) for _ in range(args.gateways - 1)
        ]
    names = ["gateway"] + [f"gateway-{i}" for i in range(1, args.gateways)]
    procs = {"redis": stack.redis, "mock": mock, "worker": worker}
    procs |= dict(zip(names, readers_gws, strict=True))
    if args.naive:
        procs["control-gateway"] = gateway
    model = f"mock?tokens={args.tokens}&rate={args.rate:g}&ttft={args.ttft:g}&stamp=1"
    tally, errors = Tally(), list[str]()
    window = Processes(procs)
    (url,) = await _create_streams(gateway, model, 1, "fanout")
    readers = Readers(tally, errors, [gw.port for gw in readers_gws], args.concurrency)
    expected = args.readers * args.tokens
    timed_out = False
    with progress_bar("tokens received", expected, lambda: tally.tokens):
        for _ in range(args.readers):
            readers.open(url)
        timed_out = not await readers.wait(args.ttft + args.tokens / args.rate + args.grace)
    cpu = window.cpu_percent()
    elapsed = time.monotonic() - window.t0
    observed = await asyncio.to_thread(_gateway_observed, stack, readers_gws[0])
    reference = await asyncio.to_thread(_reference, stack, _stream_id(url))
    wrong, lost = readers.checked({_stream_id(url): reference})
    lost += abs(expected - tally.tokens) if tally.tokens < expected else 0
    return {
        "params": {
            k: vars(args)[k]
            for k in ("readers", "tokens", "rate", "ttft", "concurrency", "gateways", "naive")
        },
        "gateway_kind": "naive" if args.naive else "tokenrelay",
        "latency": percentiles(tally.latencies_ns),
        "tokens_received": tally.tokens,
        "expected_tokens": expected,
        "stream_tokens": reference[0],
        "gateway_cpu_us_per_token": _cpu_per_token(
            sum(cpu[name] for name in names), elapsed, tally.tokens
        ),
        "token_events": tally.events,
        "readers_wrong": wrong,
        "readers_finished": tally.finished,
        "lost_tokens": lost,
        "elapsed_s": round(elapsed, 2),
        "cpu_percent": cpu,
        "rss_mb": window.rss_mb() if all(p.alive() for p in procs.values()) else {},
        **observed,
        "errors": (errors + tally.errors)[:10],
        "ok": not (timed_out or errors or tally.errors or lost or wrong)
        and reference[0] == args.tokens
        and tally.finished == args.readers,
    }


async def catchup(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """S finished streams of T tokens, then R readers resuming them from offset 0 at once:
    time until all have everything, tokens/s delivered, gateway CPU."""
    with console.status("starting redis, the mock model, a gateway and a worker"):
        mock = stack.mock_model()
        gateway = stack.gateway()
        worker = stack.worker(TOKENRELAY_MAX_JOBS=str(max(200, args.streams)))
        readers_gw = _reader_gateway(stack, args, gateway)
    procs = {"redis": stack.redis, "mock": mock, "gateway": readers_gw, "worker": worker}
    if args.naive:
        procs["control-gateway"] = gateway
    with console.status(f"generating {args.streams} streams of {args.tokens} tokens"):
        model = f"mock?tokens={args.tokens}&rate={args.rate:g}&stamp=1"
        urls = await _create_streams(gateway, model, args.streams, "catchup")
        plan = args.tokens / args.rate if args.rate else args.streams * args.tokens / 5_000
        await _wait_finished(gateway, urls, args.grace + plan)
        references = {
            _stream_id(url): await asyncio.to_thread(_reference, stack, _stream_id(url))
            for url in urls
        }
    tally, errors = Tally(), list[str]()
    readers = Readers(tally, errors, [readers_gw.port], args.readers)
    expected = sum(references[_stream_id(urls[i % len(urls)])][0] for i in range(args.readers))
    window = Processes(procs)
    with progress_bar("tokens received", expected, lambda: tally.tokens):
        for i in range(args.readers):
            readers.open(urls[i % len(urls)])
        timed_out = not await readers.wait(args.grace + expected / 5_000)
    elapsed = time.monotonic() - window.t0
    cpu = window.cpu_percent()
    observed = await asyncio.to_thread(_gateway_observed, stack, readers_gw)
    wrong, lost = readers.checked(references)
    return {
        "params": {k: vars(args)[k] for k in ("readers", "streams", "tokens", "rate", "naive")},
        "gateway_kind": "naive" if args.naive else "tokenrelay",
        "all_done_s": round(elapsed, 3),
        "tokens_received": tally.tokens,
        "expected_tokens": expected,
        "delivered_per_s": round(tally.tokens / elapsed) if elapsed > 0 else None,
        "gateway_cpu_us_per_token": _cpu_per_token(cpu["gateway"], elapsed, tally.tokens),
        "token_events": tally.events,
        "readers_wrong": wrong,
        "readers_finished": tally.finished,
        "lost_tokens": lost,
        "cpu_percent": cpu,
        "rss_mb": window.rss_mb(),
        **observed,
        "errors": (errors + tally.errors)[:10],
        "ok": not (timed_out or errors or tally.errors or lost or wrong)
        and tally.finished == args.readers
        and all(tokens == args.tokens for tokens, _ in references.values()),
    }


async def _metric(proc: Proc, name: str) -> int:
    """A counter of a process's Prometheus ``/metrics``."""
    _, body = await loadgen.request(proc.port, "GET", "/metrics")
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    return -1


async def _loop_lag(proc: Proc) -> dict[str, float]:
    """A process's ``tokenrelay_event_loop_lag_seconds``: mean, and the bucket bound under
    which 99 % of its samples fell (both in ms)."""
    _, body = await loadgen.request(proc.port, "GET", "/metrics")
    buckets: list[tuple[float, float]] = []
    total = count = 0.0
    for line in body.decode().splitlines():
        name, _, value = line.rpartition(" ")
        if name.startswith("tokenrelay_event_loop_lag_seconds_bucket"):
            bound = name.split('le="')[1].split('"')[0]
            buckets.append((float(bound), float(value)))
        elif name == "tokenrelay_event_loop_lag_seconds_sum":
            total = float(value)
        elif name == "tokenrelay_event_loop_lag_seconds_count":
            count = float(value)
    p99 = next((bound for bound, n in buckets if count and n >= 0.99 * count), float("inf"))
    return {"mean_ms": round(1e3 * total / count, 2) if count else -1.0, "p99_le_ms": 1e3 * p99}


def _plot_connections(
    path: Path, results: Path, kind: str, samples: list[list[float]]
) -> Path | None:
    """Gateway RSS and Redis connections against readers connected, as a PNG: this run, and
    the latest run of the other gateway kind found in ``connections.jsonl``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    series = {kind: samples}
    history = results / "connections.jsonl"
    if history.exists():
        for line in history.read_text().splitlines():
            record = json.loads(line)
            if record.get("gateway_kind") not in (None, kind) and record.get("samples"):
                series[record["gateway_kind"]] = record["samples"]
    fig, (rss_ax, conns_ax) = plt.subplots(1, 2, figsize=(11, 4.5))
    for label, points in sorted(series.items()):
        xs = [point[0] for point in points]
        rss_ax.plot(xs, [point[1] for point in points], marker=".", label=label)
        conns_ax.plot(xs, [point[2] for point in points], marker=".", label=label)
    rss_ax.set_ylabel("gateway RSS (MB)")
    conns_ax.set_ylabel("gateway Redis connections")
    conns_ax.set_yscale("symlog")
    for ax in (rss_ax, conns_ax):
        ax.set_xlabel("SSE readers connected")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle("one gateway process, idle SSE readers")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _plot_cdf(path: Path, series: dict[str, list[int]], title: str) -> Path | None:
    """A latency CDF (log x axis) as a PNG, if matplotlib is installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, values in series.items():
        if not values:
            continue
        ordered = sorted(max(v / 1e6, 1e-3) for v in values)
        step = max(1, len(ordered) // 2000)
        xs = ordered[::step]
        ys = [(i * step + 1) / len(ordered) for i in range(len(xs))]
        ax.plot(xs, ys, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("per-token latency, mock model write → client read (ms)")
    ax.set_ylabel("fraction of tokens")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# --- output ---------------------------------------------------------------------------------


def _processes_table(result: dict[str, Any]) -> Table:
    table = Table("process", "CPU %", "RSS MB", "Redis conns", title="processes")
    connections = result.get("redis_connections", {})
    for name, cpu in result["cpu_percent"].items():
        rss = result.get("rss_mb", {}).get(name, "")
        table.add_row(name, f"{cpu:.0f}", str(rss), str(connections.get(name, "")))
    return table


def _ms(value: float) -> str:
    return f"{value:.2f}"


def _connections_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    pings = r["pings_per_reader"]
    return [
        ("readers connected / asked", f"{r['readers_connected']:,} / {r['params']['readers']:,}"),
        ("readers failed", f"{r['readers_failed']:,}"),
        (
            "[bold]readers still open after the idle window",
            f"[bold]{r['readers_held_after_idle']:,}",
        ),
        ("time to connect them", f"{r['connect_s']:.1f} s"),
        ("gateway RSS before / with readers", f"{r['rss_before_mb']} / {r['rss_with_mb']} MB"),
        ("[bold]RSS per connection", f"[bold]{r['rss_per_connection_kb']:.1f} KB"),
        (
            "[bold]gateway Redis connections (CLIENT LIST / TCP)",
            f"[bold]{r['gateway_redis_named']} / {r['gateway_redis_tcp']}",
        ),
        ("Redis clients in all", f"{r['redis_clients']:,}"),
        ("[bold]gateway CPU while idle", f"[bold]{r['idle_gateway_cpu_percent']:.1f} %"),
        ("pings per reader min / p50 / max", f"{pings['min']} / {pings['p50']} / {pings['max']}"),
        (
            "readers without token / without ping",
            (f"{r['readers_without_token']:,} / {r['readers_without_ping']:,}"),
        ),
    ]


def _fanout_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    lat = r["latency"]
    return [
        ("tokens received / expected", f"{r['tokens_received']:,} / {r['expected_tokens']:,}"),
        (
            "readers finished / with wrong text",
            f"{r['readers_finished']:,} / {r['readers_wrong']:,}",
        ),
        (
            "[bold]per-token latency p50 / p99 / max",
            f"[bold]{_ms(lat['p50_ms'])} / {_ms(lat['p99_ms'])} / {_ms(lat['max_ms'])} ms",
        ),
        *_gateway_rows(r),
    ]


def _gateway_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    """The gateway processes' CPU (each), per token, and Redis connections."""
    cpus = (f"{cpu:.0f} %" for name, cpu in r["cpu_percent"].items() if name.startswith("gateway"))
    return [
        ("gateway CPU", " + ".join(cpus)),
        ("gateway CPU per token", f"{r['gateway_cpu_us_per_token'] or 0:.1f} µs"),
        ("gateway Redis connections (TCP)", str(r["gateway_redis_tcp"])),
    ]


def _catchup_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ("tokens received / expected", f"{r['tokens_received']:,} / {r['expected_tokens']:,}"),
        (
            "readers finished / with wrong text",
            f"{r['readers_finished']:,} / {r['readers_wrong']:,}",
        ),
        ("token events received", f"{r['token_events']:,}"),
        ("[bold]time until all have everything", f"[bold]{r['all_done_s']:.2f} s"),
        ("[bold]tokens/s delivered", f"[bold]{r['delivered_per_s'] or 0:,}"),
        *_gateway_rows(r),
    ]


_READER_ROWS = {
    "connections": _connections_rows,
    "fanout": _fanout_rows,
    "catchup": _catchup_rows,
    "ttft": _ttft_rows,
}


def show(scenario: str, result: dict[str, Any]) -> None:
    if scenario == "latency":
        kind = result.get("gateway_kind", "tokenrelay")
        table = Table(
            "per-token latency",
            "p50 ms",
            "p99 ms",
            "max ms",
            "tokens",
            title=f"{scenario} ({kind})",
        )
        for label, key in (("direct (mock model)", "direct"), (f"through {kind}", "relay")):
            row = result[key]
            table.add_row(
                label,
                _ms(row["p50_ms"]),
                _ms(row["p99_ms"]),
                _ms(row["max_ms"]),
                f"{row['tokens']:,}",
            )
        table.add_row(
            f"[bold]added by {kind}",
            f"[bold]{_ms(result['added_p50_ms'])}",
            f"[bold]{_ms(result['added_p99_ms'])}",
            "",
            "",
        )
        for label, key in (
            ("  mock → Redis (±0.5 ms)", "to_redis"),
            ("  Redis → client", "from_redis"),
        ):
            row = result[key]
            table.add_row(label, _ms(row["p50_ms"]), _ms(row["p99_ms"]), _ms(row["max_ms"]), "")
        for name, lag in result.get("event_loop_lag", {}).items():
            table.add_row(
                f"  {name} event loop lag (mean, p99 ≤)",
                _ms(lag["mean_ms"]),
                _ms(lag["p99_le_ms"]),
                "",
                "",
            )
        if "steady_tokens_per_s" in result:
            table.add_row("  tokens/s received (steady)", f"{result['steady_tokens_per_s']:,}")
        for name, micros in result.get("cpu_us_per_token", {}).items():
            table.add_row(f"  {name} CPU µs per token (steady)", f"{micros}", "", "", "")
        table.caption = f"took {result['elapsed_s']:.1f} s (planned {result['planned_s']:.1f} s)"
    elif scenario in _READER_ROWS:
        table = Table("", "value", title=f"{scenario} ({result['gateway_kind']} gateway)")
        for label, row in _READER_ROWS[scenario](result):
            table.add_row(label, row)
    else:
        table = Table("", "value", title=f"{scenario} ({result.get('gateway_kind', 'tokenrelay')})")
        table.add_row(
            "tokens sent / appended / received",
            "{:,} / {:,} / {:,}".format(
                result["tokens_sent_by_mock"],
                result["tokens_appended_metric"],
                result["tokens_received"],
            ),
        )
        table.add_row(
            "token events, events/s delivered",
            f"{result['token_events']:,}, {result['events_delivered_per_s'] or 0:,}",
        )
        table.add_row(
            "[bold]tokens/s appended (worker)", f"[bold]{result['appended_per_s'] or 0:,}"
        )
        table.add_row(
            "[bold]tokens/s delivered (gateway)", f"[bold]{result['delivered_per_s'] or 0:,}"
        )
        lat = result["latency"]
        table.add_row("latency p50 / p99 ms", f"{_ms(lat['p50_ms'])} / {_ms(lat['p99_ms'])}")
    console.print(table)
    console.print(_processes_table(result))
    if result["errors"]:
        console.print("[red]errors:", *result["errors"], sep="\n  ")
    if result["lost_tokens"]:
        console.print(f"[red]{result['lost_tokens']:,} tokens lost or repeated")


def _profile_processes(stack: Stack, args: argparse.Namespace, out_dir: Path) -> dict[str, str]:
    """``--profile``: py-spy records every gateway and worker of the run for ``--profile`` s,
    starting ``--profile-after`` s after the scenario started; the raw profiles' paths."""
    time.sleep(args.profile_after)
    recordings = {
        proc.name: (out, profile.start_recording(proc.pid, args.profile, out))
        for proc in list(stack.processes)
        if proc.alive() and proc.name.startswith(("gateway", "worker"))
        for out in [out_dir / f"{args.scenario}-{proc.name.split('-')[0]}-{proc.pid}.raw"]
    }
    for name, (out, recording) in recordings.items():
        _, stderr = recording.communicate()
        if recording.returncode != 0 or not out.exists():
            console.print(f"[yellow]py-spy on {name} failed: {stderr.decode().strip()[-300:]}")
    return {name: str(out) for name, (out, _) in recordings.items() if out.exists()}


def _show_profiles(paths: dict[str, str]) -> None:
    for name, path in paths.items():
        recorded = profile.read(Path(path))
        table = Table("layer", "share", title=f"{name}: {recorded.samples} samples ({path})")
        for layer, count in recorded.layers.most_common(8):
            table.add_row(layer, recorded.share(count))
        for function, count in recorded.self_time.most_common(12):
            table.add_row(f"  {function}", recorded.share(count))
        console.print(table)


def _commit() -> str:
    def git(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *argv], cwd=REPO, capture_output=True, text=True)

    commit = git("rev-parse", "--short", "HEAD").stdout.strip()
    dirty = git("status", "--porcelain", "gateway", "producer", "shared", "tokenrelay").stdout
    return commit + ("+dirty" if dirty.strip() else "")


SCENARIOS = {
    "latency": latency,
    "throughput": throughput,
    "connections": connections,
    "fanout": fanout,
    "catchup": catchup,
    "ttft": ttft,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="where results go")
    parser.add_argument("--grace", type=float, default=30, help="seconds allowed past the plan")
    parser.add_argument(
        "--profile",
        type=float,
        default=0,
        metavar="SECONDS",
        help="py-spy every gateway and worker for this long (bench/profile.py)",
    )
    parser.add_argument(
        "--profile-after",
        type=float,
        default=5,
        metavar="SECONDS",
        help="start --profile this long after the processes start",
    )
    scenarios = parser.add_subparsers(dest="scenario", required=True)
    lat = scenarios.add_parser("latency", help="per-token latency, relay vs direct")
    lat.add_argument("--streams", type=int, default=200, help="concurrent generations")
    lat.add_argument("--rate", type=float, default=50, help="tokens/s of each generation")
    lat.add_argument("--tokens", type=int, default=500, help="tokens per generation")
    lat.add_argument("--ttft", type=float, default=0.0, help="seconds to the first token")
    lat.add_argument("--ramp", type=float, default=1.0, help="seconds over which to start them")
    lat.add_argument("--gateways", type=int, default=1)
    lat.add_argument("--workers", type=int, default=1)
    thr = scenarios.add_parser("throughput", help="tokens/s of one worker and one gateway")
    thr.add_argument("--streams", type=int, default=50, help="concurrent generations")
    thr.add_argument("--tokens", type=int, default=5000, help="tokens per generation")
    thr.add_argument("--rate", type=float, default=0, help="tokens/s each (0: full speed)")
    con = scenarios.add_parser("connections", help="idle SSE readers held by one gateway")
    con.add_argument("--readers", type=int, default=10_000, help="concurrent SSE readers")
    con.add_argument("--streams", type=int, default=100, help="idle streams they read")
    con.add_argument("--ping-interval", type=float, default=5, help="TOKENRELAY_PING_INTERVAL_S")
    con.add_argument("--idle", type=float, default=15, help="seconds of idle window (pings)")
    con.add_argument("--concurrency", type=int, default=100, help="readers connecting at once")
    con.add_argument(
        "--max-failures", type=int, default=100, help="stop opening readers after this many fail"
    )
    fan = scenarios.add_parser("fanout", help="many readers on one stream")
    fan.add_argument("--readers", type=int, default=1000, help="readers of the one stream")
    fan.add_argument("--tokens", type=int, default=500, help="tokens of the stream")
    fan.add_argument("--rate", type=float, default=50, help="tokens/s of the stream")
    fan.add_argument("--ttft", type=float, default=3, help="seconds to the first token")
    fan.add_argument("--concurrency", type=int, default=1000, help="readers connecting at once")
    fan.add_argument("--gateways", type=int, default=1, help="gateway processes, readers spread")
    cat = scenarios.add_parser("catchup", help="readers resuming finished streams from 0")
    cat.add_argument("--readers", type=int, default=1000, help="readers, spread over the streams")
    cat.add_argument("--streams", type=int, default=20, help="finished streams")
    cat.add_argument("--tokens", type=int, default=500, help="tokens per stream")
    cat.add_argument(
        "--rate",
        type=float,
        default=0,
        help="tokens/s of each generation (0: full speed, coalesced into few events)",
    )
    tt = scenarios.add_parser("ttft", help="time to first token, relay vs direct")
    tt.add_argument("--idle", type=int, default=50, help="generations one at a time")
    tt.add_argument("--warmup", type=int, default=5, help="first ones, not counted")
    tt.add_argument("--gap", type=float, default=0.05, help="seconds between those")
    tt.add_argument("--streams", type=int, default=200, help="generations of the burst")
    tt.add_argument("--ramp", type=float, default=1.0, help="seconds over which to start them")
    tt.add_argument("--tokens", type=int, default=20, help="tokens per generation")
    tt.add_argument("--rate", type=float, default=50, help="tokens/s of each generation")
    for sub in (lat, thr, con, fan, cat):
        sub.add_argument(
            "--naive", action="store_true", help="readers on bench/naive_gateway.py instead"
        )
    return parser.parse_args(argv)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    signal.signal(signal.SIGTERM, _interrupt)
    args.results.mkdir(parents=True, exist_ok=True)
    logdir = args.results / "logs" / args.scenario
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    profiles: dict[str, str] = {}
    try:
        with Stack(logdir) as stack:
            profiler = threading.Thread(
                target=lambda: profiles.update(
                    _profile_processes(stack, args, args.results / "profiles")
                ),
                daemon=True,
            )
            if args.profile:
                profiler.start()
            result = uvloop.run(SCENARIOS[args.scenario](stack, args))
            if args.profile:
                profiler.join()
                result["profiles"] = profiles
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; the stack is stopped")
        return 130
    except RuntimeError as exc:
        console.print(f"[red]{exc}\n(logs in {logdir})")
        return 1
    record = {"scenario": args.scenario, "started": started, "commit": _commit(), **result}
    with (args.results / f"{args.scenario}.jsonl").open("a") as out:
        out.write(json.dumps(record) + "\n")
    show(args.scenario, record)
    _show_profiles(profiles)
    console.print(f"appended to {args.results / f'{args.scenario}.jsonl'}; logs in {logdir}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
