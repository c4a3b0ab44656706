"""A reader on a gateway that was watching nothing is subscribed at once: the hub's
listener, idle with no channel, wakes on the first subscription rather than at its next
look (which cost every first reader of an idle gateway up to 50 ms before its first token)."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid

from gateway.hub import Hub
from shared.keys import Keys
from shared.redis import single_client
from tests.processes import REDIS_URL


async def test_the_first_reader_of_an_idle_gateway_is_subscribed_at_once() -> None:
    hub = Hub(single_client(REDIS_URL, role="test-hub"), Keys(f"trtest-{uuid.uuid4().hex[:10]}"))
    await hub.start()
    try:
        waits = []
        for i in range(9):
            started = time.monotonic()
            async with hub.watch(f"stream{i}") as topic:
                waits.append(time.monotonic() - started)
                assert topic.subscribed.is_set()
            assert hub.watched == 0
            await asyncio.sleep(0.12)  # the listener reads the unsubscription: idle again
        # the listener used to look every 50 ms: a median of about 25 ms
        assert statistics.median(waits) < 0.015, waits
    finally:
        await hub.stop()
