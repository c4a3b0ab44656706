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
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvloop
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from bench import loadgen
from bench.loadgen import Tally
from bench.stack import API_KEY, REPO, Proc, Stack, cpu_seconds, rss_bytes

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
            if name.startswith(("gateway", "worker"))
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
    model = f"mock?tokens={args.tokens}&rate={args.rate:g}&ttft={args.ttft:g}&stamp=1"
    relay, direct, errors = Tally(), Tally(), list[str]()

    async def relayed(gateway: Proc, prompt: str) -> None:
        on_frame = relay.relay_reader()
        events_url = await loadgen.create_stream(gateway.port, API_KEY, model, prompt)
        await loadgen.read_relay(gateway.port, events_url, on_frame)

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

    expected = args.streams * args.tokens
    timed_out = False
    with progress_bar("tokens received", 2 * expected, lambda: relay.tokens + direct.tokens):
        observer = asyncio.create_task(observe_midway())
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
        | {"gateways": args.gateways, "workers": args.workers},
        "relay": relay_p | {"tokens": relay.tokens, "events": relay.events},
        "direct": direct_p | {"tokens": direct.tokens},
        "added_p50_ms": round(relay_p["p50_ms"] - direct_p["p50_ms"], 3),
        "added_p99_ms": round(relay_p["p99_ms"] - direct_p["p99_ms"], 3),
        "to_redis": percentiles(relay.to_redis_ns),
        "from_redis": percentiles(relay.from_redis_ns),
        "elapsed_s": round(elapsed, 2),
        "planned_s": round(duration, 2),
        "expected_tokens": expected,
        "lost_tokens": lost,
        "cpu_percent": cpu,
        **observed,
        "plot": str(plot) if plot else None,
        "errors": (errors + relay.errors)[:10],
        "ok": not (timed_out or errors or relay.errors or lost),
    }


async def throughput(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """K generations of T tokens at full speed, one worker, one gateway, one reader each:
    tokens/s appended by the worker and delivered by the gateway."""
    with console.status("starting redis, the mock model, a gateway and a worker"):
        mock = stack.mock_model()
        gateway = stack.gateway()
        worker = stack.worker(TOKENRELAY_MAX_JOBS=str(max(200, args.streams)))
    procs = {"redis": stack.redis, "mock": mock, "gateway": gateway, "worker": worker}
    model = f"mock?tokens={args.tokens}&rate={args.rate:g}&stamp=1"
    relay, errors = Tally(), list[str]()
    expected = args.streams * args.tokens

    async def generation(i: int) -> None:
        on_frame = relay.relay_reader()
        events_url = await loadgen.create_stream(gateway.port, API_KEY, model, f"bench {i}")
        await loadgen.read_relay(gateway.port, events_url, on_frame)

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
        "params": {"streams": args.streams, "tokens": args.tokens, "rate": args.rate},
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


async def _metric(proc: Proc, name: str) -> int:
    """A counter of a process's Prometheus ``/metrics``."""
    _, body = await loadgen.request(proc.port, "GET", "/metrics")
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    return -1


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


def show(scenario: str, result: dict[str, Any]) -> None:
    if scenario == "latency":
        table = Table("per-token latency", "p50 ms", "p99 ms", "max ms", "tokens", title=scenario)
        for label, key in (("direct (mock model)", "direct"), ("through tokenrelay", "relay")):
            row = result[key]
            table.add_row(
                label,
                _ms(row["p50_ms"]),
                _ms(row["p99_ms"]),
                _ms(row["max_ms"]),
                f"{row['tokens']:,}",
            )
        table.add_row(
            "[bold]added by tokenrelay",
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
        table.caption = f"took {result['elapsed_s']:.1f} s (planned {result['planned_s']:.1f} s)"
    else:
        table = Table("", "value", title=scenario)
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


def _commit() -> str:
    def git(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *argv], cwd=REPO, capture_output=True, text=True)

    commit = git("rev-parse", "--short", "HEAD").stdout.strip()
    dirty = git("status", "--porcelain", "gateway", "producer", "shared", "tokenrelay").stdout
    return commit + ("+dirty" if dirty.strip() else "")


SCENARIOS = {"latency": latency, "throughput": throughput}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="where results go")
    parser.add_argument("--grace", type=float, default=30, help="seconds allowed past the plan")
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
    try:
        with Stack(logdir) as stack:
            result = uvloop.run(SCENARIOS[args.scenario](stack, args))
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
    console.print(f"appended to {args.results / f'{args.scenario}.jsonl'}; logs in {logdir}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
