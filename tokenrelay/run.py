"""``tokenrelay run "prompt"``: create a stream and print its answer as it arrives."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any, TextIO

import httpx2

from shared.client import GatewayError, TokenRelayClient


async def run(
    prompt: str,
    *,
    url: str,
    model: str,
    api_key: str | None,
    max_tokens: int | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Print the answer's tokens to ``out`` as they come; the exit status: 0, or 1 on an
    ``error`` event or a refused request. Cancelled (Ctrl-C), it cancels the generation
    before re-raising."""
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # a line per request otherwise
    params: dict[str, Any] = {} if max_tokens is None else {"max_tokens": max_tokens}
    messages = [{"role": "user", "content": prompt}]
    async with TokenRelayClient(url, api_key=api_key) as client:
        try:
            created = await client.create(messages, model=model, **params)
        except GatewayError as error:
            print(f"error: {error.code}: {error.message}", file=err)
            return 1
        except httpx2.TransportError as error:
            print(f"error: cannot reach {url}: {error}", file=err)
            return 1
        try:
            async for event in client.events(created.id, token=created.read_token):
                if event.type == "token":
                    out.write(event.text)
                    out.flush()
                elif event.type == "error":
                    _end_line(out)
                    print(f"error: {event.data['code']}: {event.data['message']}", file=err)
                    return 1
        except GatewayError as error:
            _end_line(out)
            print(f"error: {error.code}: {error.message}", file=err)
            return 1
        except asyncio.CancelledError:
            _end_line(out)
            await client.cancel(created.id, token=created.read_token)
            raise
    _end_line(out)
    return 0


def _end_line(out: TextIO) -> None:
    out.write("\n")
    out.flush()
