"""The naive gateway the benchmarks compare tokenrelay with (``--naive``): a baseline only.

What the usual FastAPI + Redis Streams examples do: for each client, one loop of blocking
``XREAD BLOCK <ms> STREAMS <events key> <last id>`` on a ``redis.asyncio`` client whose pool
is unbounded, so every client holds its own Redis connection while it waits. It reads the
same keys as tokenrelay's gateway and writes the same ``id:/event:/data:`` SSE frames, ending
after the terminal event; it authorizes nothing and serves nothing else.

    TOKENRELAY_REDIS_URL=... TOKENRELAY_KEY_PREFIX=bench \\
        python -m uvicorn bench.naive_gateway:app --port 8001
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import FastAPI, Header, Query
from fastapi.responses import StreamingResponse
from redis.asyncio import Redis

from shared.events import StreamEvent
from shared.keys import Keys

REDIS_URL = os.environ.get("TOKENRELAY_REDIS_URL", "redis://127.0.0.1:6379/0")
KEYS = Keys(os.environ.get("TOKENRELAY_KEY_PREFIX", "tokenrelay"))
PING_INTERVAL_S = float(os.environ.get("TOKENRELAY_PING_INTERVAL_S", "15"))

# The default pool: no upper bound, one connection per concurrent XREAD BLOCK.
redis = Redis.from_url(REDIS_URL, decode_responses=True)
app = FastAPI(title="naive gateway (benchmark baseline)")


@app.get("/healthz")
async def healthz() -> dict[str, bool]:
    return {"ok": True}


@app.get("/v1/streams/{stream_id}/events")
async def events(
    stream_id: str,
    after: Annotated[str | None, Query()] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    return StreamingResponse(
        _follow(KEYS.events(stream_id), last_event_id or after or "0-0"),
        media_type="text/event-stream",
    )


async def _follow(key: str, last_id: str) -> AsyncIterator[bytes]:
    yield b"retry: 1000\n\n"
    while True:
        reply = await redis.xread({key: last_id}, count=512, block=int(PING_INTERVAL_S * 1000))
        if not reply:
            yield b": ping\n\n"
            continue
        for entry_id, fields in reply[0][1]:
            event = StreamEvent.from_entry(entry_id, fields)
            yield event.sse().encode()
            last_id = entry_id
            if event.is_terminal:
                return
