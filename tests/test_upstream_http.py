"""The worker reads an upstream's body from aiohttp itself, and through the SDK when it must.

``producer.upstream_http`` reaches under the SDK's aiohttp transport for aiohttp's body
stream (five generator hops fewer per network read); these tests fail if an SDK upgrade
moves what it reaches for, and show that a compressed body, which only httpx2 decodes,
still arrives whole.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from producer.chunks import Finished
from producer.upstream import Upstream, build_client
from producer.upstream_http import reads_directly, received
from tests.processes import free_port

TEXT = ["Hello", ", compressed", " world", "."]


def _chunk(choice: dict[str, object]) -> str:
    chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    return f"data: {json.dumps(chunk | {'choices': [{'index': 0} | choice]})}\n\n"


def _sse(pieces: list[str]) -> bytes:
    lines = [_chunk({"delta": {"role": "assistant", "content": ""}})]
    lines += [_chunk({"delta": {"content": piece}}) for piece in pieces]
    lines += [_chunk({"delta": {}, "finish_reason": "stop"}), "data: [DONE]\n\n"]
    return "".join(lines).encode()


@pytest.fixture
async def gzip_upstream() -> AsyncIterator[str]:
    """An OpenAI-compatible endpoint whose SSE body is gzip-encoded."""

    async def completions(request: web.Request) -> web.Response:
        return web.Response(
            body=gzip.compress(_sse(TEXT)),
            headers={"Content-Type": "text/event-stream", "Content-Encoding": "gzip"},
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


def _client(base_url: str):  # type: ignore[no-untyped-def]
    return build_client(api_key="x", base_url=base_url, timeout_s=10, connect_timeout_s=5)


async def test_the_body_is_read_from_aiohttp_itself(mock_model: str) -> None:
    async with _client(f"{mock_model}/v1") as client:
        async with client.chat.completions.with_streaming_response.create(
            model="mock?tokens=5&rate=0",
            messages=[{"role": "user", "content": "direct"}],
            stream=True,
        ) as response:
            assert reads_directly(response.http_response)
            body = b"".join([chunk async for chunk in received(response)])
    assert body.count(b"data: {") == 5 + 2  # the role chunk, five tokens, the finish chunk
    assert body.rstrip().endswith(b"data: [DONE]")


async def test_a_compressed_body_goes_through_the_sdk_and_arrives_whole(
    gzip_upstream: str,
) -> None:
    async with _client(gzip_upstream) as client:
        async with client.chat.completions.with_streaming_response.create(
            model="m", messages=[{"role": "user", "content": "gzip"}], stream=True
        ) as response:
            assert not reads_directly(response.http_response)
        upstream = Upstream(client, "gzip")
        items = [
            item
            async for item in upstream.stream(
                {"model": "m", "messages": [{"role": "user", "content": "gzip"}]}, "s1"
            )
        ]
    text = "".join(
        piece for item in items if isinstance(item, list) for part in item
        if isinstance(part, list) for piece in part
    )  # fmt: skip
    assert text == "".join(TEXT)
    assert isinstance(items[-1], Finished) and items[-1].finish_reason == "stop"
