"""Caps on the readers a gateway process serves: per stream and per client address; a read
over a cap is 429 with Retry-After, and a reader that leaves frees its place."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import httpx

from tests.client import Relay

STACK_ENV = {"TOKENRELAY_MAX_READERS_PER_STREAM": "3", "TOKENRELAY_MAX_READERS_PER_ADDRESS": "5"}


async def test_readers_per_stream_and_per_address(relay: Relay) -> None:
    model = "mock?tokens=200&rate=10"
    first, second = [await relay.create(f"caps {i}", model=model) for i in range(2)]

    async def open_reader(stack: AsyncExitStack, stream_id: str) -> httpx.Response:
        response = await stack.enter_async_context(
            relay.http.stream("GET", f"/v1/streams/{stream_id}/events", headers=relay.auth)
        )
        return response

    async with AsyncExitStack() as readers:
        for _ in range(3):
            assert (await open_reader(readers, first["id"])).status_code == 200
        over_stream = await relay.http.get(f"/v1/streams/{first['id']}/events", headers=relay.auth)
        assert over_stream.status_code == 429
        assert over_stream.json()["error"]["code"] == "rate_limited"
        assert over_stream.headers["retry-after"] == "5"
        assert "this stream has 3 readers" in over_stream.json()["error"]["message"]

        for _ in range(2):
            assert (await open_reader(readers, second["id"])).status_code == 200
        over_address = await relay.http.get(
            f"/v1/streams/{second['id']}/events", headers=relay.auth
        )
        assert over_address.status_code == 429
        assert (
            "5 streams are already open from this address"
            in (over_address.json()["error"]["message"])
        )
    await asyncio.sleep(0.3)  # they left: their places are free again
    async with AsyncExitStack() as readers:
        for _ in range(3):
            assert (await open_reader(readers, first["id"])).status_code == 200
    for stream in (first, second):
        await relay.http.post(f"/v1/streams/{stream['id']}/cancel", headers=relay.auth)
