"""A Redis of dev mode's own, for machines that have none to offer.

``redis-server`` on a free port if it is installed (in a temporary directory, persisting
nothing), else fakeredis's TCP server in a thread: slower, but needs nothing installed.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def reachable(url: str) -> bool:
    client = aioredis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(await client.ping())
    except Exception:
        return False
    finally:
        await client.aclose()


@asynccontextmanager
async def private_redis() -> AsyncIterator[tuple[str, str]]:
    """Start a throwaway Redis; yields its URL and what it is."""
    binary = shutil.which("redis-server")
    if binary is not None:
        async with _redis_server(binary) as url:
            yield url, "redis-server"
    else:
        async with _fake_server() as url:
            yield url, "fakeredis"


@asynccontextmanager
async def _redis_server(binary: str) -> AsyncIterator[str]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="tokenrelay-dev-redis-") as workdir:
        process = await asyncio.create_subprocess_exec(
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{port}/0"
        try:
            for _ in range(100):
                if await reachable(url):
                    break
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError("the private redis-server did not start")
            yield url
        finally:
            process.terminate()
            await asyncio.wait_for(process.wait(), 10)


@asynccontextmanager
async def _fake_server() -> AsyncIterator[str]:
    from fakeredis import TcpFakeServer

    server = TcpFakeServer(("127.0.0.1", 0), server_type="redis")
    thread = threading.Thread(target=server.serve_forever, name="fakeredis", daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{server.server_address[1]}/0"
    finally:
        server.shutdown()
        server.server_close()
