"""Quotas kept in Redis hold across gateway replicas: streams per minute per API key, and
generations queued or running at once; each refusal is 429 with Retry-After."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.client import Relay
from tests.processes import API_KEY, Stack

PER_MINUTE, ACTIVE = 8, 3
STACK_ENV = {
    "TOKENRELAY_CREATES_PER_MINUTE": str(PER_MINUTE),
    "TOKENRELAY_MAX_ACTIVE_GENERATIONS": str(ACTIVE),
}
SECOND_KEY = "second-key"


@pytest.fixture
async def two_gateways(shared_stack: tuple[Stack, str]) -> AsyncIterator[list[httpx.AsyncClient]]:
    stack, first = shared_stack
    _, other = stack.gateway()  # a second replica on the same Redis
    async with (
        httpx.AsyncClient(base_url=first, timeout=30) as a,
        httpx.AsyncClient(base_url=other, timeout=30) as b,
    ):
        yield [a, b]


def body(model: str) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "quota"}]}


async def test_streams_per_minute_per_api_key_across_replicas(
    two_gateways: list[httpx.AsyncClient], shared_stack: tuple[Stack, str]
) -> None:
    if time.time() % 60 > 45:  # the window is a calendar minute: do not straddle two
        await asyncio.sleep(61 - time.time() % 60)
    auth = {"Authorization": f"Bearer {API_KEY}"}
    relay = Relay(two_gateways[0], shared_stack[0].mock_url.removesuffix("/v1"), API_KEY)
    for i in range(PER_MINUTE):  # alternating replicas, each stream ending at once
        created = await two_gateways[i % 2].post(
            "/v1/streams", json=body("mock?tokens=1"), headers=auth
        )
        assert created.status_code == 201, created.text
        await relay.read_sse(created.json()["id"])
    refused = await two_gateways[1].post("/v1/streams", json=body("mock?tokens=1"), headers=auth)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert f"more than {PER_MINUTE} streams" in refused.json()["error"]["message"]
    other_key = {"Authorization": f"Bearer {SECOND_KEY}"}  # another client is not affected
    created = await two_gateways[0].post(
        "/v1/streams", json=body("mock?tokens=1"), headers=other_key
    )
    assert created.status_code == 201


async def test_generations_at_once_per_api_key_across_replicas(
    two_gateways: list[httpx.AsyncClient],
) -> None:
    auth = {"Authorization": f"Bearer {SECOND_KEY}"}
    long = body("mock?tokens=400&rate=10")
    running = []
    for i in range(ACTIVE):
        created = await two_gateways[i % 2].post("/v1/streams", json=long, headers=auth)
        assert created.status_code == 201, created.text
        running.append(created.json()["id"])
    key = {"Idempotency-Key": uuid.uuid4().hex}
    refused = await two_gateways[1].post("/v1/streams", json=long, headers={**auth, **key})
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert refused.headers["retry-after"] == "1"

    cancelled = await two_gateways[0].post(f"/v1/streams/{running[0]}/cancel", headers=auth)
    assert cancelled.status_code == 202
    deadline = time.monotonic() + 5
    while (await two_gateways[0].get(f"/v1/streams/{running[0]}", headers=auth)).json()[
        "status"
    ] != "cancelled":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    # the same request again (same Idempotency-Key): now there is room, and it is a new stream
    again = await two_gateways[1].post("/v1/streams", json=long, headers={**auth, **key})
    assert again.status_code == 201, again.text
    assert again.json()["id"] not in running
    for stream_id in [*running[1:], again.json()["id"]]:
        await two_gateways[0].post(f"/v1/streams/{stream_id}/cancel", headers=auth)
