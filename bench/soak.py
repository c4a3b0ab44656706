"""Soak: the mixed load (``bench/mix.py``) for a long time, and what the system holds over it.

    python -m bench.soak                         # an hour: bench/results/soak.{csv,json,png}
    python -m bench.soak --minutes 5 --sample-s 5

A gateway, a worker, the mock model and a private ``redis-server`` (``bench/stack.py``) run
the mix at ``--concurrency`` sessions at a time. Every ``--sample-s`` seconds it records each
process's resident memory and open file descriptors, Redis's memory, keys and clients, and
the sessions and problems so far. Finished streams are kept ``--retention-s`` (60 s, not an
hour as by default), so Redis reaches its steady state within the first minutes; growth is
judged after ``--warmup-s``: a least-squares line through the samples, whose rise over the
run must stay within a tolerance per measure (``TOLERANCES``, ``RELATIVE_TOLERANCE``). The
fitted rises and the verdict go to ``soak.json``, the samples to ``soak.csv``, the plot to
``soak.png`` (with matplotlib: ``pip install -e ".[bench]"``); ``--rejudge`` does this again
for the run in ``--out``.

``tests/test_soak.py`` is its short version: load in cycles, each followed by a quiet spell,
with the same measures compared cycle after cycle.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import itertools
import json
import os
import sys
import time
from collections.abc import Sequence
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.mix import Mix, Tally
from bench.stack import API_KEY, REPO, Proc, Stack

RESULTS = REPO / "bench" / "results"
ADMIN_TOKEN = "soak-admin-token"


def soak_env(retention_s: float) -> dict[str, str]:
    """Settings of the soak's gateway and worker."""
    return {
        "TOKENRELAY_ADMIN_TOKEN": ADMIN_TOKEN,
        "TOKENRELAY_RETENTION_S": f"{retention_s:g}",
        "TOKENRELAY_IDEMPOTENCY_TTL_S": f"{retention_s:g}",
        "TOKENRELAY_UPSTREAM_MAX_RETRIES": "2",
    }


@dataclass(frozen=True)
class Sample:
    t_s: float
    gateway_rss_mb: float
    worker_rss_mb: float
    gateway_fds: int
    worker_fds: int
    redis_memory_mb: float
    redis_keys: int
    redis_clients: int
    sessions: int
    problems: int


MEASURES = ("gateway_rss_mb", "worker_rss_mb", "gateway_fds", "worker_fds", "redis_clients")
"""Judged as they are: with a steady load, none of them has a reason to rise."""
PER_LOAD = ("redis_keys", "redis_memory_mb")
"""Judged per session per second of the last ``retention_s``: Redis holds every stream of
that window, so these follow the load (a busier minute holds more), a leak rises anyway."""
TOLERANCES = {
    "gateway_rss_mb": 10.0,
    "worker_rss_mb": 10.0,
    "gateway_fds": 20,
    "worker_fds": 10,
    "redis_clients": 5,
}
RELATIVE_TOLERANCE = 0.10
"""A measure is flat if its fitted rise over the run (after the warm-up) is within its
tolerance here (none for ``PER_LOAD``) or within a tenth of its first value, whichever is
larger: under load the measures move with the work in flight (the sessions open at a sample
hold connections, descriptors and keys). A leak rises with time however long the run."""


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def take_sample(stack: Stack, gateway: Proc, worker: Proc, t_s: float, tally: Tally) -> Sample:
    info = stack.observer.info()
    return Sample(
        t_s=round(t_s, 1),
        gateway_rss_mb=round(gateway.rss_bytes() / 2**20, 2),
        worker_rss_mb=round(worker.rss_bytes() / 2**20, 2),
        gateway_fds=open_fds(gateway.pid),
        worker_fds=open_fds(worker.pid),
        redis_memory_mb=round(int(info["used_memory"]) / 2**20, 3),
        redis_keys=int(stack.observer.dbsize()),
        redis_clients=int(info["connected_clients"]) - 1,  # not the observer
        sessions=sum(tally.sessions.values()),
        problems=tally.problems,
    )


def rise(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The rise of ``ys`` over the span of ``xs``, by a least-squares line."""
    if len(xs) < 2:
        return 0.0
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0
    return slope * (xs[-1] - xs[0])


def series(
    samples: Sequence[Sample], warmup_s: float, window_s: float
) -> dict[str, tuple[list[float], list[float]]]:
    """Each judged measure as (times, values) after the warm-up; ``PER_LOAD`` measures
    divided by the session rate over the ``window_s`` before each sample."""
    judged: dict[str, tuple[list[float], list[float]]] = {}
    steady = [s for s in samples if s.t_s >= warmup_s]
    for measure in MEASURES:
        judged[measure] = ([s.t_s for s in steady], [float(getattr(s, measure)) for s in steady])
    for measure in PER_LOAD:
        times, values = [], []
        for sample in steady:
            before = [s for s in samples if s.t_s <= sample.t_s - window_s]
            if before and sample.t_s > before[-1].t_s:
                rate = (sample.sessions - before[-1].sessions) / (sample.t_s - before[-1].t_s)
                if rate > 0:
                    times.append(sample.t_s)
                    values.append(float(getattr(sample, measure)) / rate)
        judged[f"{measure}_per_session_per_s"] = (times, values)
    return judged


def judge(
    samples: Sequence[Sample], warmup_s: float, window_s: float
) -> dict[str, dict[str, float | bool]]:
    """Per judged measure: first and last value after the warm-up, the fitted rise, and
    whether it is within its tolerance."""
    verdict: dict[str, dict[str, float | bool]] = {}
    for measure, (times, values) in series(samples, warmup_s, window_s).items():
        fitted = rise(times, values)
        first = values[0] if values else 0.0
        tolerance = max(TOLERANCES.get(measure, 0.0), RELATIVE_TOLERANCE * first)
        verdict[measure] = {
            "first": round(first, 4),
            "last": round(values[-1], 4) if values else 0.0,
            "max": round(max(values, default=0.0), 4),
            "rise": round(fitted, 4),
            "flat": abs(fitted) <= tolerance,
        }
    return verdict


async def soak(
    logdir: Path,
    *,
    seconds: float,
    sample_s: float,
    concurrency: int,
    retention_s: float,
) -> tuple[list[Sample], Tally]:
    with Stack(logdir, env=soak_env(retention_s)) as stack:
        stack.mock_model()
        gateway, worker = stack.gateway(), stack.worker()
        async with aclosing(Mix(gateway.url, API_KEY, ADMIN_TOKEN)) as mix:
            started = time.monotonic()
            load = asyncio.create_task(mix.run(seconds=seconds, concurrency=concurrency))
            samples: list[Sample] = []
            while not load.done():  # the first sample is before any load
                sample = take_sample(stack, gateway, worker, time.monotonic() - started, mix.tally)
                samples.append(sample)
                print(_line(sample), flush=True)
                await asyncio.wait({load}, timeout=sample_s)
            await load
            return samples, mix.tally


def _line(sample: Sample) -> str:
    return (
        f"{sample.t_s:7.0f} s  gateway {sample.gateway_rss_mb:6.1f} MB {sample.gateway_fds:4d} fds"
        f"  worker {sample.worker_rss_mb:6.1f} MB {sample.worker_fds:4d} fds"
        f"  redis {sample.redis_memory_mb:6.2f} MB {sample.redis_keys:5d} keys"
        f" {sample.redis_clients:3d} clients  sessions {sample.sessions} problems {sample.problems}"
    )


def read_csv(path: Path) -> list[Sample]:
    with path.open(newline="") as source:
        rows = list(csv.DictReader(source))
    types = {f.name: f.type for f in dataclasses.fields(Sample)}
    return [
        Sample(**{k: (float(v) if types[k] == "float" else int(v)) for k, v in row.items()})
        for row in rows
    ]


def write_csv(samples: Sequence[Sample], path: Path) -> None:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow([f.name for f in dataclasses.fields(Sample)])
        writer.writerows(dataclasses.astuple(s) for s in samples)


def plot(samples: Sequence[Sample], path: Path, title: str) -> bool:
    """The measures over time as one PNG; False if matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    minutes = [s.t_s / 60 for s in samples]
    panels = [
        ("resident memory (MB)", ["gateway_rss_mb", "worker_rss_mb"]),
        ("open file descriptors", ["gateway_fds", "worker_fds"]),
        ("Redis memory (MB)", ["redis_memory_mb"]),
        ("Redis keys", ["redis_keys"]),
        ("Redis clients", ["redis_clients"]),
    ]
    fig, axes = plt.subplots(3, 2, figsize=(12, 9), sharex=True)
    rates = [(b.sessions - a.sessions) / (b.t_s - a.t_s) for a, b in itertools.pairwise(samples)]
    axes.flat[-1].plot(minutes[1:], rates)
    axes.flat[-1].set_ylabel("sessions per second")
    axes.flat[-1].set_ylim(bottom=0)
    axes.flat[-1].grid(alpha=0.3)
    for ax, (label, measures) in zip(axes.flat, panels, strict=False):
        for measure in measures:
            ax.plot(minutes, [getattr(s, measure) for s in samples], label=measure)
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        if len(measures) > 1:
            ax.legend(fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("minutes")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--sample-s", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=30, help="sessions at a time")
    parser.add_argument("--retention-s", type=float, default=60)
    parser.add_argument("--warmup-s", type=float, default=None, help="default: a tenth")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where soak.* go")
    parser.add_argument(
        "--rejudge", action="store_true", help="judge and plot the run in --out again, no load"
    )
    args = parser.parse_args(argv)
    if args.rejudge:
        run = json.loads((args.out / "soak.json").read_text())
        samples = read_csv(args.out / "soak.csv")
    else:
        seconds = args.minutes * 60
        samples, tally = asyncio.run(
            soak(
                args.out / "soak-logs",
                seconds=seconds,
                sample_s=args.sample_s,
                concurrency=args.concurrency,
                retention_s=args.retention_s,
            )
        )
        run = {
            "minutes": args.minutes,
            "concurrency": args.concurrency,
            "retention_s": args.retention_s,
            "warmup_s": args.warmup_s
            if args.warmup_s is not None
            else max(seconds / 10, 2 * args.retention_s),
            "sessions": dict(tally.sessions),
            "problems": tally.problems,
            "first_problems": tally.first_problems,
        }
        args.out.mkdir(parents=True, exist_ok=True)
        write_csv(samples, args.out / "soak.csv")
    return report(samples, run, args.out)


def report(samples: Sequence[Sample], run: dict[str, Any], out: Path) -> int:
    """Judge the run, write ``soak.json`` and ``soak.png``, print the verdict; the exit code."""
    verdict = judge(samples, run["warmup_s"], run["retention_s"])
    flat = all(bool(v["flat"]) for v in verdict.values())
    (out / "soak.json").write_text(
        json.dumps({**run, "measures": verdict, "flat": flat}, indent=2) + "\n"
    )
    title = (
        f"soak: {run['minutes']:g} min, {sum(run['sessions'].values())} sessions "
        f"({run['concurrency']} at a time), {run['problems']} problems"
    )
    plotted = plot(samples, out / "soak.png", title)
    for measure, v in verdict.items():
        print(
            f"{measure:34s} {v['first']:10.2f} -> {v['last']:10.2f} (max {v['max']:.2f})"
            f"  fitted rise {v['rise']:+.3f}  {'flat' if v['flat'] else 'GROWS'}"
        )
    print(f"{title}; results in {out}/soak.{{csv,json{',png' if plotted else ''}}}")
    return 0 if flat and not run["problems"] else 1


if __name__ == "__main__":
    sys.exit(main())
