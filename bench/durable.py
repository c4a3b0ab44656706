"""Durable streams under load: what application code gets when it writes its own streams.

    .venv/bin/python -m bench.durable appends   # 50 writers x 2,000 appends, one stream each
    .venv/bin/python -m bench.durable fanout    # 1,000 SSE readers, 500 events at 50/s

``appends``: W writers, each on a keep-alive connection of its own, append small JSON events
to their own durable stream as fast as the gateway answers, with the idempotent-producer
headers ``shared/durable_client.py`` sends (``--batch``: events per POST). Appends/s,
latency per append, and CPU per append of the gateway and Redis.

``fanout``: R readers follow one durable stream over SSE (``live=sse``) while a writer
appends E events at a paced rate, each carrying its send time; per-event latency (send →
read, this machine's clock), every reader must get every event once, in order. The same
shape as ``bench.run fanout`` (generations), so the two compare.

Each run starts its own stack (``bench/stack.py``), prints a table and appends a JSON line to
``bench/results/ds-<scenario>.jsonl``; it exits 1 if anything was lost or failed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
import time
from pathlib import Path
from typing import Any, cast

import uvloop
from rich.table import Table

from bench import loadgen
from bench.run import RESULTS, Processes, _commit, _ms, console, percentiles, progress_bar
from bench.stack import API_KEY, Stack
from gateway.durable.store import stream_id_of
from shared.keys import Keys

AUTH = f"authorization: Bearer {API_KEY}\r\n"


class _Connection:
    """One keep-alive HTTP/1.1 connection for small requests with small answers."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def send(self, method: str, path: str, headers: str, body: bytes) -> tuple[int, bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self._reader is not None
        head = (
            f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{self.port}\r\n{headers}"
            f"content-length: {len(body)}\r\n\r\n"
        )
        self._writer.write(head.encode() + body)
        raw = await self._reader.readuntil(b"\r\n\r\n")
        status = int(raw.split(b" ", 2)[1])
        length = 0
        for line in raw.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self._reader.readexactly(length) if length else b""

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


async def _create(port: int, path: str) -> None:
    status, body = await loadgen.request(
        port,
        "PUT",
        path,
        headers={"authorization": f"Bearer {API_KEY}", "content-type": "application/json"},
    )
    if status != 201:
        raise RuntimeError(f"PUT {path}: {status} {body[:200]!r}")


async def appends(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    with console.status("starting redis and a gateway"):
        stack.mock_model()  # the stack's environment names it; durable streams do not use it
        gateway = stack.gateway()
    paths = [f"/v1/ds/bench/appends-{i}" for i in range(args.writers)]
    for path in paths:
        await _create(gateway.port, path)
    latencies: list[int] = []
    errors: list[str] = []
    done = [0]
    window = Processes({"redis": stack.redis, "gateway": gateway})

    async def writer(path: str, index: int) -> None:
        connection = _Connection(gateway.port)
        try:
            for seq in range(args.appends):
                events = [{"writer": index, "seq": seq, "pad": "x" * 64}] * args.batch
                headers = (
                    f"{AUTH}content-type: application/json\r\nproducer-id: bench-{index}\r\n"
                    f"producer-epoch: 0\r\nproducer-seq: {seq}\r\n"
                )
                started = time.perf_counter_ns()
                status, body = await connection.send(
                    "POST", path, headers, json.dumps(events).encode()
                )
                latencies.append(time.perf_counter_ns() - started)
                if status != 200:
                    errors.append(f"POST {path} #{seq}: {status} {body[:100]!r}")
                    return
                done[0] += 1
        finally:
            connection.close()

    total = args.writers * args.appends
    with progress_bar("appends", total, lambda: done[0]):
        await asyncio.gather(*(writer(path, i) for i, path in enumerate(paths)))
    elapsed = time.monotonic() - window.t0
    cpu = window.cpu_percent()
    keys = Keys("bench")
    stored = [cast(int, stack.observer.xlen(keys.events(_stream_id(path)))) for path in paths]
    expected = args.appends * args.batch
    return {
        "params": {k: vars(args)[k] for k in ("writers", "appends", "batch")},
        "appends": done[0],
        "appends_per_s": round(done[0] / elapsed),
        "events_per_s": round(done[0] * args.batch / elapsed),
        "latency": percentiles(latencies),
        "cpu_percent": cpu,
        "gateway_cpu_us_per_append": round(cpu["gateway"] / 100 * elapsed / done[0] * 1e6, 1)
        if done[0]
        else None,
        "redis_cpu_us_per_append": round(cpu["redis"] / 100 * elapsed / done[0] * 1e6, 1)
        if done[0]
        else None,
        "elapsed_s": round(elapsed, 2),
        "stored_wrong": sum(1 for count in stored if count != expected),
        "errors": errors[:10],
        "ok": not errors and done[0] == total and all(count == expected for count in stored),
    }


def _stream_id(path: str) -> str:
    return stream_id_of(path.removeprefix("/v1/ds/"))


async def fanout(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    with console.status("starting redis and a gateway"):
        stack.mock_model()
        gateway = stack.gateway()
    path = "/v1/ds/bench/fanout"
    await _create(gateway.port, path)
    latencies: list[int] = []
    received = [0] * args.readers
    in_order = [True] * args.readers
    closed = [False] * args.readers
    errors: list[str] = []

    def reader(index: int) -> loadgen.OnFrame:
        def on_frame(event: bytes, id_: bytes, data: bytes, now: int) -> None:
            if event == b"data":
                for message in json.loads(data):
                    latencies.append(now - message["t"])
                    in_order[index] &= message["n"] == received[index]
                    received[index] += 1
            elif event == b"control" and b"streamClosed" in data:
                closed[index] = True

        return on_frame

    async def read(index: int) -> None:
        try:
            await loadgen.read_sse(
                gateway.port,
                "GET",
                f"{path}?offset=-1&live=sse",
                reader(index),
                headers={"authorization": f"Bearer {API_KEY}"},
            )
        except Exception as exc:
            errors.append(repr(exc))

    window = Processes({"redis": stack.redis, "gateway": gateway})
    readers = [asyncio.create_task(read(i)) for i in range(args.readers)]
    await asyncio.sleep(args.settle)  # the readers connect and catch up (nothing yet)
    connection = _Connection(gateway.port)
    expected = args.readers * args.events
    headers = f"{AUTH}content-type: application/json\r\n"
    with progress_bar("events received", expected, lambda: sum(received)):
        started = time.monotonic()
        for n in range(args.events):
            await asyncio.sleep(max(0.0, started + n / args.rate - time.monotonic()))
            body = json.dumps([{"n": n, "t": time.time_ns()}]).encode()
            status, answer = await connection.send("POST", path, headers, body)
            if status != 204:
                errors.append(f"append #{n}: {status} {answer[:100]!r}")
                break
        await connection.send("POST", path, f"{AUTH}stream-closed: true\r\n", b"")
        connection.close()
        try:
            async with asyncio.timeout(args.grace):
                await asyncio.gather(*readers)
        except TimeoutError:
            errors.append("readers did not all finish")
    cpu = window.cpu_percent()
    elapsed = time.monotonic() - window.t0
    delivered = sum(received)
    return {
        "params": {k: vars(args)[k] for k in ("readers", "events", "rate")},
        "latency": percentiles(latencies),
        "events_received": delivered,
        "expected_events": expected,
        "readers_complete": sum(
            1 for i in range(args.readers) if received[i] == args.events and closed[i]
        ),
        "readers_out_of_order": in_order.count(False),
        "gateway_cpu_us_per_event": round(cpu["gateway"] / 100 * elapsed / delivered * 1e6, 1)
        if delivered
        else None,
        "cpu_percent": cpu,
        "elapsed_s": round(elapsed, 2),
        "errors": errors[:10],
        "ok": not errors and delivered == expected and all(in_order) and all(closed),
    }


def _rows(scenario: str, r: dict[str, Any]) -> list[tuple[str, str]]:
    lat = r["latency"]
    latency = f"{_ms(lat['p50_ms'])} / {_ms(lat['p99_ms'])} / {_ms(lat['max_ms'])}"
    if scenario == "appends":
        return [
            (
                "writers x appends x events each",
                "{writers} x {appends} x {batch}".format(**r["params"]),
            ),
            ("[bold]appends/s", f"[bold]{r['appends_per_s']:,}"),
            ("events/s", f"{r['events_per_s']:,}"),
            ("latency per append p50 / p99 / max ms", latency),
            ("gateway CPU µs per append", f"{r['gateway_cpu_us_per_append']}"),
            ("Redis CPU µs per append", f"{r['redis_cpu_us_per_append']}"),
            ("CPU % (gateway, redis, loadgen)", _cpu(r)),
            ("streams with a wrong count", f"{r['stored_wrong']}"),
        ]
    return [
        ("readers x events at rate", "{readers} x {events} at {rate:g}/s".format(**r["params"])),
        ("[bold]latency send → reader p50 / p99 / max ms", f"[bold]{latency}"),
        ("events received / expected", f"{r['events_received']:,} / {r['expected_events']:,}"),
        (
            "readers complete / out of order",
            f"{r['readers_complete']:,} / {r['readers_out_of_order']}",
        ),
        ("gateway CPU µs per delivered event", f"{r['gateway_cpu_us_per_event']}"),
        ("CPU % (gateway, redis, loadgen)", _cpu(r)),
    ]


def _cpu(r: dict[str, Any]) -> str:
    cpu = r["cpu_percent"]
    return f"{cpu['gateway']} / {cpu['redis']} / {cpu['loadgen']}"


SCENARIOS = {"appends": appends, "fanout": fanout}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.durable", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="where results go")
    scenarios = parser.add_subparsers(dest="scenario", required=True)
    app = scenarios.add_parser("appends", help="appends/s from application code")
    app.add_argument("--writers", type=int, default=50, help="concurrent writers, a stream each")
    app.add_argument("--appends", type=int, default=2000, help="appends per writer")
    app.add_argument("--batch", type=int, default=1, help="events per append")
    fan = scenarios.add_parser("fanout", help="many SSE readers on one application stream")
    fan.add_argument("--readers", type=int, default=1000)
    fan.add_argument("--events", type=int, default=500)
    fan.add_argument("--rate", type=float, default=50, help="events/s appended")
    fan.add_argument("--settle", type=float, default=3, help="seconds for the readers to connect")
    fan.add_argument(
        "--grace", type=float, default=30, help="seconds allowed after the last append"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.results.mkdir(parents=True, exist_ok=True)
    logdir = args.results / "logs" / f"ds-{args.scenario}"
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    with Stack(logdir, env={"TOKENRELAY_MAX_READERS_PER_ADDRESS": "0"}) as stack:
        result = uvloop.run(SCENARIOS[args.scenario](stack, args))
    record = {"scenario": f"ds-{args.scenario}", "started": started, "commit": _commit(), **result}
    with (args.results / f"ds-{args.scenario}.jsonl").open("a") as out:
        out.write(json.dumps(record) + "\n")
    table = Table("", "value", title=f"durable streams: {args.scenario}")
    for label, value in _rows(args.scenario, result):
        table.add_row(label, value)
    console.print(table)
    if result["errors"]:
        console.print(f"[red]errors: {result['errors']}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
