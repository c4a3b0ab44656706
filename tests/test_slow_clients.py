"""Clients that stop reading: 500 readers that never read a byte of a large answer, beside
live readers of another. The gateway's memory stays bounded (a frozen reader holds at most its
connection's write buffer, ~64 KB, and a share of one batch), live readers keep their pace, and
the frozen ones are cut after the send timeout."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from pathlib import Path

import httpx

from tests.client import Read, Relay, sse_events
from tests.processes import API_KEY, Stack

FROZEN, LIVE, SEND_TIMEOUT_S = 500, 10, 3
STAMP = re.compile(r" t(\d+)")


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert match is not None
    return int(match[1]) / 1024


async def frozen_reader(port: int, path: str) -> socket.socket:
    """Connects with a tiny receive buffer, sends the request, and never reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    request = f"GET {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {API_KEY}\r\n\r\n"
    await loop.sock_sendall(sock, request.encode())
    return sock


async def live_reader(http: httpx.AsyncClient, path: str, latencies: list[float]) -> Read:
    read = Read(200)
    async with http.stream("GET", path, headers={"Authorization": f"Bearer {API_KEY}"}) as r:
        async for event in sse_events(r, read):
            read.events.append(event)
            if event.type == "token":
                now = time.time_ns()
                latencies.extend((now - int(s)) / 1e6 for s in STAMP.findall(event.data["text"]))
            if event.type in ("done", "error"):
                break
    return read


async def test_frozen_readers_cost_bounded_memory_and_nobody_waits_for_them(
    stack: Stack,
) -> None:
    # a small kernel buffer per connection (the default is 256 KB) so that the frozen readers
    # fill theirs, and block, with a few hundred KB of answer
    gateway, base = stack.gateway(
        TOKENRELAY_SEND_TIMEOUT_S=str(SEND_TIMEOUT_S), TOKENRELAY_SEND_BUFFER_BYTES="16384"
    )
    stack.worker()
    port = int(base.rsplit(":", 1)[1])
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        relay = Relay(http, stack.mock_url.removesuffix("/v1"), API_KEY)
        # the frozen readers ask for a large answer at full speed: more than their socket and
        # the gateway's write buffer hold, so every one of them ends up blocked
        firehose = await relay.create("firehose", model="mock?tokens=40000&rate=0")
        await relay.read_sse(firehose["id"])
        before = rss_mb(gateway.pid)
        frozen_path = f"/v1/streams/{firehose['id']}/events"
        frozen = [await frozen_reader(port, frozen_path) for _ in range(FROZEN)]
        # the live readers follow a paced answer meanwhile, each token stamped with its send time
        created = await relay.create("live", model="mock?tokens=400&rate=40&stamp=1")
        path = f"/v1/streams/{created['id']}/events"
        latencies: list[float] = []
        live = [asyncio.create_task(live_reader(http, path, latencies)) for _ in range(LIVE)]
        peak = before
        while not all(task.done() for task in live):
            peak = max(peak, rss_mb(gateway.pid))
            await asyncio.sleep(0.2)
        reads = [task.result() for task in live]
        await asyncio.sleep(SEND_TIMEOUT_S + 2)  # the frozen ones are cut by now
        metrics = (await http.get("/metrics")).text
        after = rss_mb(gateway.pid)
        sent = (await relay.mock_record(created["id"]))["sent_text"]
    for sock in frozen:
        sock.close()

    assert all(read.text == sent and read.terminal.type == "done" for read in reads)
    latencies.sort()
    p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]
    # the frozen readers cost CPU only while their buffers fill (a burst at the start); then
    # they cost nothing: the live ones keep their pace (143 ms p99 here, 317 ms seen in CI)
    assert p50 < 100, f"live readers' p50 latency {p50:.0f} ms beside {FROZEN} frozen ones"
    assert p99 < 1000, f"live readers' p99 latency {p99:.0f} ms beside {FROZEN} frozen ones"
    per_frozen_kb = (peak - before) * 1024 / FROZEN
    # a frozen reader holds a bounded part of the answer (its write buffer, one 64 KB slice,
    # its share of the batch it stopped in), whatever the answer's length
    assert per_frozen_kb < 256, f"{per_frozen_kb:.0f} KB of gateway memory per frozen reader"
    # gone after SEND_TIMEOUT_S: cut by the gateway's reaper, or by the kernel, which gives up
    # on a peer that acknowledges nothing for as long (TCP_USER_TIMEOUT), whichever is first
    active = re.search(r"^tokenrelay_active_readers (\d+)", metrics, re.MULTILINE)
    assert active is not None and int(float(active[1])) <= FROZEN * 0.1, metrics[-2000:]
    cut = re.search(r'tokenrelay_responses_cut_total\{reason="send timeout"\} (\d+)', metrics)
    print(
        f"gateway RSS {before:.1f} -> peak {peak:.1f} -> {after:.1f} MB "
        f"({per_frozen_kb:.0f} KB per frozen reader); live p50 {p50:.0f} ms, p99 {p99:.0f} ms; "
        f"cut by the send timeout {cut[1] if cut else 0}, the others by the kernel"
    )
