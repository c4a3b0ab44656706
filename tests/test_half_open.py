"""A reader whose machine vanishes (no FIN, no RST) is reaped: its response ends and its place
is freed within about ``SEND_TIMEOUT_S``, where TCP alone would keep it ~15 minutes.

The reader runs in a network namespace of its own, joined to this one by a veth pair; taking
its end of the pair down makes it vanish as a phone that lost its network does. (Needs root
and ``ip``, as on this project's machines and CI.)
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.client import Relay
from tests.processes import API_KEY, Stack

SEND_TIMEOUT_S = 2
ACTIVE_READERS = re.compile(r"^tokenrelay_active_readers (\S+)$", re.MULTILINE)

# Connects, asks for the stream's events, says "reading" once the first event arrived and then
# holds the connection without a word, reading what comes.
READER = """
import socket, sys
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])))
sock.sendall(f"GET {sys.argv[3]} HTTP/1.1\\r\\nHost: t\\r\\n{sys.argv[4]}\\r\\n\\r\\n".encode())
received = b""
while b"event: token" not in received:
    received += sock.recv(65536)
print("reading", flush=True)
while sock.recv(65536):
    pass
"""


@dataclass(frozen=True)
class Elsewhere:
    """A network namespace at ``address``, reaching this one's ``host_address``."""

    namespace: str
    link: str
    address: str
    host_address: str

    def python(self, *argv: str) -> subprocess.Popen[str]:
        """``python argv…`` run there, its standard output piped to us."""
        command = ["ip", "netns", "exec", self.namespace, sys.executable, *argv]
        return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)

    def vanish(self) -> None:
        """Its network goes: nothing it sends or would send reaches anyone any more."""
        ip("netns", "exec", self.namespace, "ip", "link", "set", self.link, "down")


def ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True, text=True)


@pytest.fixture
def elsewhere() -> Iterator[Elsewhere]:
    tag = f"tr{os.getpid() % 100000}"
    subnet = f"10.{200 + os.getpid() % 50}.{os.getpid() % 250}"
    namespace, host_link, link = f"{tag}ns", f"{tag}h", f"{tag}c"
    ip("netns", "add", namespace)
    try:
        ip("link", "add", host_link, "type", "veth", "peer", "name", link, "netns", namespace)
        ip("addr", "add", f"{subnet}.1/30", "dev", host_link)
        ip("link", "set", host_link, "up")
        inside = ("netns", "exec", namespace, "ip")
        ip(*inside, "addr", "add", f"{subnet}.2/30", "dev", link)
        ip(*inside, "link", "set", link, "up")
        yield Elsewhere(namespace, link, f"{subnet}.2", f"{subnet}.1")
    finally:
        subprocess.run(["ip", "link", "del", host_link], capture_output=True)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


async def active_readers(http: httpx.AsyncClient) -> float:
    match = ACTIVE_READERS.search((await http.get("/metrics")).text)
    assert match is not None
    return float(match[1])


async def test_a_vanished_reader_is_reaped(stack: Stack, elsewhere: Elsewhere) -> None:
    _, base = stack.gateway(
        host=elsewhere.host_address,
        TOKENRELAY_SEND_TIMEOUT_S=str(SEND_TIMEOUT_S),
        TOKENRELAY_PING_INTERVAL_S="0.5",
    )
    stack.worker()
    port = base.rsplit(":", 1)[1]
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        relay = Relay(http, stack.mock_url.removesuffix("/v1"), API_KEY)
        # a generation that goes silent after its first tokens: the reader gets only pings
        created = await relay.create("vanish", model="mock?tokens=10&rate=100&fault=stall&after=2")
        with elsewhere.python(
            "-c",
            READER,
            elsewhere.host_address,
            port,
            f"/v1/streams/{created['id']}/events",
            f"Authorization: Bearer {API_KEY}",
        ) as reader:
            try:
                assert reader.stdout is not None
                line = await asyncio.wait_for(asyncio.to_thread(reader.stdout.readline), 10)
                assert line == "reading\n"
                assert await active_readers(http) == 1
                elsewhere.vanish()
                reader.kill()  # its FIN cannot leave the namespace: the connection is half-open
                vanished = time.monotonic()
                while await active_readers(http) > 0:
                    assert time.monotonic() - vanished < SEND_TIMEOUT_S + 8, "never reaped"
                    await asyncio.sleep(0.1)
                reaped_after = time.monotonic() - vanished
            finally:
                reader.kill()
    # the kernel gave up on the unanswered pings after SEND_TIMEOUT_S (2 s), give or take
    # one retransmission
    assert SEND_TIMEOUT_S - 0.5 < reaped_after < SEND_TIMEOUT_S + 4, reaped_after
