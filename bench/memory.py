"""Where a gateway's memory per SSE reader goes: tracemalloc of one gateway process.

The gateway runs in this process (uvicorn on uvloop + httptools, as ``tokenrelay gateway``)
against a private ``redis-server``; the readers are raw sockets in a child process, opened
50 at a time, reading streams that stay queued (no worker), so only idle readers are
measured. Prints the Python heap per reader by file and by allocation site:

    .venv/bin/python -m bench.memory --readers 2000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

import httpx
import uvicorn
import uvloop

from bench.stack import API_KEY, SIGNING_KEY, Stack, free_port
from gateway.app import create_app
from shared.settings import Settings

_READERS = r"""
import asyncio, sys
port, count, paths = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
connected = 0
async def read(gate, path):
    global connected
    async with gate:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        await reader.read(200)  # the response head: this reader is in
    connected += 1
    if connected == count:
        print("connected", flush=True)
    await asyncio.sleep(3600)
async def main():
    gate = asyncio.Semaphore(50)
    await asyncio.gather(*(read(gate, paths[i % len(paths)]) for i in range(count)))
asyncio.run(main())
"""
_SITE = str(Path(httpx.__file__).parents[1]) + "/"


def _short(filename: str) -> str:
    return filename.replace(_SITE, "").replace(sys.prefix, "")


async def profile(redis_url: str, readers: int, streams: int, top: int) -> None:
    port = free_port()
    settings = Settings(redis_url=redis_url, api_keys=[API_KEY], signing_key=SIGNING_KEY)
    config = uvicorn.Config(
        create_app(settings), port=port, log_level="warning", loop="uvloop", http="httptools"
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn has no event for it)
        await asyncio.sleep(0.05)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        paths = []
        for i in range(streams):
            created = await client.post(
                "/v1/streams",
                headers={"Authorization": f"Bearer {API_KEY}"},
                json={"model": "mock", "messages": [{"role": "user", "content": f"memory {i}"}]},
            )
            paths.append(created.json()["events_url"])
    gc.collect()
    tracemalloc.start(4)
    before = tracemalloc.take_snapshot()
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _READERS, str(port), str(readers), *paths, stdout=subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        await child.stdout.readline()
        await asyncio.sleep(2)  # let the last ones settle into waiting
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        child.kill()
        await child.wait()
        server.should_exit = True
        await serving
    by_file = sorted(after.compare_to(before, "filename"), key=lambda s: -s.size_diff)
    total = sum(s.size_diff for s in by_file)
    print(f"{readers} readers: Python heap +{total / readers / 1024:.1f} KB per reader")
    print("\nby file (bytes per reader, blocks per reader):")
    for stat in by_file[:top]:
        filename = _short(stat.traceback[0].filename)
        print(f"{stat.size_diff / readers:8.0f} {stat.count_diff / readers:6.1f}  {filename}")
    print("\nby allocation site:")
    by_line = sorted(after.compare_to(before, "lineno"), key=lambda s: -s.size_diff)
    for stat in by_line[:top]:
        frame = stat.traceback[0]
        print(f"{stat.size_diff / readers:8.0f}  {_short(frame.filename)}:{frame.lineno}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--readers", type=int, default=2000)
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--top", type=int, default=20, help="rows per table")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as logs, Stack(Path(logs)) as stack:
        uvloop.run(profile(stack.redis_url, args.readers, args.streams, args.top))


if __name__ == "__main__":
    main()
