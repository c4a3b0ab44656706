"""The upstream's HTTP client: the openai SDK's aiohttp client, read from aiohttp's own body.

The SDK sends each request (its auth, headers and error classes) over aiohttp, the SDK's
``aiohttp`` extra: with one token per chunk, as model APIs send them, aiohttp's C parser
costs about a third of the CPU per chunk of httpx2's default transport (27 vs 76 µs measured
here). Its response body, though, reaches the SDK's ``iter_bytes`` through five async
generators (the transport's stream, httpx2's raw and decoded iterators and its bound
stream, the SDK's own), each a hop per network read. ``received`` reads aiohttp's body
stream directly instead, with the transport's mapping of aiohttp's errors to httpx2's, so
a failure is classified as before; a response with a ``Content-Encoding`` (which httpx2
decodes) or from another transport goes through the SDK's ``iter_bytes``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx2
import openai
from openai._vendor.httpx_aiohttp import AiohttpTransport
from openai._vendor.httpx_aiohttp.transport import map_aiohttp_exceptions

BODY = "tokenrelay.aiohttp_body"
"""The ``httpx2.Response.extensions`` key of aiohttp's body stream (``_Transport``)."""

CONNECTION_LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=100)
"""The SDK's own default limits (``openai._constants.DEFAULT_CONNECTION_LIMITS``)."""


class _Transport(AiohttpTransport):
    """The SDK's aiohttp transport; each response also carries aiohttp's body stream."""

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await super().handle_async_request(request)
        aiohttp_response = getattr(response.stream, "_aiohttp_response", None)
        if isinstance(aiohttp_response, aiohttp.ClientResponse):
            response.extensions[BODY] = aiohttp_response.content
        return response


def http_client(timeout: httpx2.Timeout) -> httpx2.AsyncClient:
    """The SDK's aiohttp client (``openai.DefaultAioHttpClient``) on ``_Transport``."""
    return openai.DefaultAioHttpClient(
        timeout=timeout, transport=_Transport(limits=CONNECTION_LIMITS)
    )


def reads_directly(response: httpx2.Response) -> bool:
    """Whether ``received`` reads this response's body from aiohttp itself."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    return encoding in ("", "identity") and BODY in response.extensions


async def received(response: openai.AsyncAPIResponse[Any]) -> AsyncIterator[bytes]:
    """The response's body, as each network read brought it."""
    http = response.http_response
    if not reads_directly(http):
        async for chunk in response.iter_bytes():
            yield chunk
        return
    body: aiohttp.StreamReader = http.extensions[BODY]
    with map_aiohttp_exceptions():
        while chunk := await body.readany():
            yield chunk
