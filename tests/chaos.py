"""A chaos run of the whole topology (tests/topology.py): many generations, each read through
nginx by a reader that reconnects and resumes from its last offset, while one gateway is
SIGKILLed, one worker is SIGKILLed and Redis is restarted from its append-only file.

Every stream must end with its exact text or a SPEC terminal error; no reader may see a
duplicated or missing event; no reader may hang. The short run is tests/test_topology.py; the
long one is a command:

    .venv/bin/python -m tests.chaos --generations 200 --tokens 400
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from tests.client import Event, Read, sse_events
from tests.processes import API_KEY, mock_model_process
from tests.topology import Topology, topology

# SPEC: the codes a terminal error event may carry
TERMINAL_ERRORS = {
    "rate_limit_exceeded",
    "upstream_error",
    "upstream_timeout",
    "upstream_rejected",
    "producer_lost",
    "internal",
}
AUTH = {"Authorization": f"Bearer {API_KEY}"}
# the chaos run's settings: a lost worker is declared within seconds, not 15
CHAOS_ENV = {
    "TOKENRELAY_LEASE_S": "5",
    "TOKENRELAY_SHUTDOWN_GRACE_S": "3",
    "TOKENRELAY_MAX_ACTIVE_GENERATIONS": "0",  # one client's many generations: no quota
}


@dataclass
class Reader:
    """One client: creates its stream through nginx, then reads it to the end, resuming."""

    index: int
    stream_id: str = ""
    events: list[Event] = field(default_factory=list)
    connects: int = 0
    refusals: collections.Counter[int] = field(default_factory=collections.Counter)
    finished_at: float | None = None

    @property
    def terminal(self) -> Event | None:
        last = self.events[-1] if self.events else None
        return last if last is not None and last.type in ("done", "error") else None

    @property
    def text(self) -> str:
        """The answer: choice 0's content, whichever event carried it."""
        return "".join(
            e.data["text"] if e.type == "token" else e.data.get("content") or ""
            for e in self.events
            if e.type == "token" or (e.type == "delta" and e.data.get("choice") == 0)
        )

    async def create(self, http: httpx.AsyncClient, model: str) -> None:
        # The same Idempotency-Key on every try: a retry after a lost answer is the same stream.
        key = uuid.uuid4().hex
        body = {"model": model, "messages": [{"role": "user", "content": f"chaos {self.index}"}]}
        while True:
            try:
                r = await http.post(
                    "/v1/streams", json=body, headers={**AUTH, "Idempotency-Key": key}
                )
            except httpx.HTTPError:
                r = None
            if r is not None and r.status_code == 201:
                self.stream_id = r.json()["id"]
                return
            self.refusals[r.status_code if r is not None else 0] += 1
            await asyncio.sleep(0.2)

    async def read(self, http: httpx.AsyncClient) -> None:
        while self.terminal is None:
            headers = dict(AUTH)
            if self.events:
                headers["Last-Event-ID"] = str(self.events[-1].offset)
            self.connects += 1
            try:
                url = f"/v1/streams/{self.stream_id}/events"
                async with http.stream("GET", url, headers=headers) as response:
                    if response.status_code != 200:
                        self.refusals[response.status_code] += 1
                    else:
                        async for event in sse_events(response, Read(200)):
                            self.events.append(event)
                            if event.type in ("done", "error"):
                                break
            except httpx.HTTPError:
                pass  # a gateway died under us, or Redis went away: resume
            if self.terminal is None:
                await asyncio.sleep(0.2)
        self.finished_at = time.monotonic()


@dataclass
class Outcome:
    readers: list[Reader]
    sent: dict[str, str]
    stored: dict[str, list[Event]]
    timeline: list[tuple[float, str]]
    hung: int
    seconds: float

    def problems(self) -> list[str]:
        found = []
        for reader in self.readers:
            sid, terminal = reader.stream_id, reader.terminal
            offsets = [e.offset for e in reader.events]
            if len(offsets) != len(set(offsets)):
                found.append(f"{sid}: an event was delivered twice")
            if [(e.offset, e.type, e.data) for e in reader.events] != [
                (e.offset, e.type, e.data) for e in self.stored.get(sid, [])
            ]:
                found.append(f"{sid}: what the reader got differs from the stream's events")
            if terminal is None:
                continue
            if terminal.type == "done" and terminal.data["finish_reason"] == "stop":
                if reader.text != self.sent.get(sid):
                    found.append(f"{sid}: completed, but not with the text the model sent")
            elif terminal.type == "error":
                if terminal.data["code"] not in TERMINAL_ERRORS:
                    found.append(f"{sid}: error {terminal.data['code']} is not a SPEC code")
                if not self.sent.get(sid, "").startswith(reader.text):
                    found.append(f"{sid}: its partial text is not what the model sent first")
            else:
                found.append(f"{sid}: ended {terminal.type} {terminal.data}")
        if self.hung:
            found.append(f"{self.hung} readers never got a terminal event")
        return found

    def table(self) -> Table:
        endings = collections.Counter(
            "hung"
            if r.terminal is None
            else f"{r.terminal.type} "
            + (r.terminal.data.get("finish_reason") or r.terminal.data.get("code", ""))
            for r in self.readers
        )
        table = Table("", "value", title="chaos run")
        table.add_row("generations", str(len(self.readers)))
        for ending, count in sorted(endings.items()):
            table.add_row(f"  ended {ending}", str(count))
        exact = sum(
            1
            for r in self.readers
            if r.terminal is not None
            and r.terminal.type == "done"
            and r.text == self.sent.get(r.stream_id)
        )
        table.add_row("  completed with the exact text", str(exact))
        table.add_row("events read", f"{sum(len(r.events) for r in self.readers):,}")
        table.add_row(
            "reader connections (1 = never cut)", str(sum(r.connects for r in self.readers))
        )
        refusals = sum((r.refusals for r in self.readers), collections.Counter[int]())
        table.add_row(
            "refused tries (status: count)",
            ", ".join(f"{s or 'no answer'}: {n}" for s, n in sorted(refusals.items())) or "none",
        )
        table.add_row("problems", str(len(self.problems())))
        for at, what in self.timeline:
            table.add_row(f"  t={at:5.1f} s", what)
        table.add_row("took", f"{self.seconds:.1f} s")
        return table


async def _stored(http: httpx.AsyncClient, stream_id: str) -> list[Event]:
    """The events the stream holds, read from the start after the run (those that came
    within 10 s, should it never have ended)."""
    events: list[Event] = []
    url = f"/v1/streams/{stream_id}/events"
    try:
        async with asyncio.timeout(10), http.stream("GET", url, headers=AUTH) as response:
            async for event in sse_events(response, Read(response.status_code)):
                events.append(event)
                if event.type in ("done", "error"):
                    break
    except TimeoutError:
        pass
    return events


async def _sent(mock_url: str, stream_id: str) -> str:
    async with httpx.AsyncClient(timeout=10) as http:
        records = (
            await http.get(f"{mock_url}/_mock/requests", params={"stream": stream_id})
        ).json()
    return "".join(record["sent_text"] for record in records)


async def run_chaos(
    topo: Topology,
    mock_url: str,
    *,
    generations: int,
    tokens: int,
    rate: float,
    chaos_at: tuple[float, float, float] = (1.0, 2.0, 3.0),
    within_s: float = 120,
) -> Outcome:
    """``chaos_at``: seconds after the start at which a gateway is SIGKILLed, a worker is
    SIGKILLed and Redis is restarted."""
    model = f"mock?tokens={tokens}&rate={rate:g}"
    readers = [Reader(i) for i in range(generations)]
    timeline: list[tuple[float, str]] = []
    limits = httpx.Limits(max_connections=generations * 2 + 10)
    async with httpx.AsyncClient(base_url=topo.url, timeout=30, limits=limits) as http:
        started = time.monotonic()

        async def client(reader: Reader) -> None:
            await reader.create(http, model)
            await reader.read(http)

        async def chaos() -> None:
            kill_gateway, kill_worker, restart_redis = chaos_at
            await asyncio.sleep(kill_gateway)
            topo.gateways[0].kill()
            timeline.append((time.monotonic() - started, "gateway 1 SIGKILLed"))
            await asyncio.sleep(max(0.0, kill_worker - kill_gateway))
            topo.workers[0].kill()
            timeline.append((time.monotonic() - started, "worker 1 SIGKILLed"))
            await asyncio.sleep(max(0.0, restart_redis - kill_worker))
            down = await asyncio.to_thread(topo.redis.restart)
            timeline.append(
                (time.monotonic() - started, f"Redis restarted from its AOF ({down:.1f} s down)")
            )

        clients = [asyncio.create_task(client(reader)) for reader in readers]
        breaking = asyncio.create_task(chaos())
        _, pending = await asyncio.wait(clients, timeout=within_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(breaking, *clients, return_exceptions=True)
        seconds = time.monotonic() - started
        hung = len(pending)
        ids = [r.stream_id for r in readers if r.stream_id]
        stored = dict(zip(ids, await asyncio.gather(*(_stored(http, i) for i in ids)), strict=True))
    sent = dict(zip(ids, await asyncio.gather(*(_sent(mock_url, i) for i in ids)), strict=True))
    return Outcome(readers, sent, stored, timeline, hung, seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--generations", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=400)
    parser.add_argument("--rate", type=float, default=40, help="tokens/s of each generation")
    parser.add_argument(
        "--at",
        type=float,
        nargs=3,
        default=(2.0, 4.0, 6.0),
        metavar=("GATEWAY", "WORKER", "REDIS"),
        help="seconds after the start of each fault",
    )
    args = parser.parse_args(argv)
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        with mock_model_process(Path(tmp)) as (_, mock_url):
            with topology(Path(tmp), f"{mock_url}/v1", **CHAOS_ENV) as topo:
                outcome = asyncio.run(
                    run_chaos(
                        topo,
                        mock_url,
                        generations=args.generations,
                        tokens=args.tokens,
                        rate=args.rate,
                        chaos_at=tuple(args.at),
                        within_s=args.tokens / args.rate + 120,
                    )
                )
    console.print(outcome.table())
    for problem in outcome.problems()[:20]:
        console.print(f"[red]{problem}")
    return 1 if outcome.problems() else 0


if __name__ == "__main__":
    raise SystemExit(main())
