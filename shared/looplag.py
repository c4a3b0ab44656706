"""How late the event loop runs what is due: the queueing delay every event in it pays.

A task asks to wake every ``interval_s`` and records how much later than asked it woke
(``tokenrelay_event_loop_lag_seconds``). A busy loop, long callbacks, or a process waiting
for a CPU all show here, in the same unit as the latency they add to each token.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from shared.metrics import event_loop_lag

INTERVAL_S = 0.05


async def _measure(interval_s: float) -> None:
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + interval_s
        await asyncio.sleep(interval_s)
        event_loop_lag.observe(max(0.0, loop.time() - due))


@contextlib.asynccontextmanager
async def measuring_loop_lag(interval_s: float = INTERVAL_S) -> AsyncIterator[None]:
    task = asyncio.create_task(_measure(interval_s), name="event loop lag")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
