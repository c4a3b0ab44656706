"""An agent run as one durable stream: the application's events and two generations, written
with ``shared.durable_client`` through a real gateway and worker, read by a reader that
disconnects twice; and an append retried after a timeout, stored once."""

from __future__ import annotations

import asyncio
import json
import uuid
from contextlib import aclosing
from typing import Any

import httpx2

from shared.client import AnswerSoFar, TokenRelayClient
from shared.completion import CompletionSoFar
from shared.durable_client import DurableStreamReader, DurableStreamWriter
from tests.processes import API_KEY, Stack

STACK_ENV: dict[str, str] = {}
"""Credentials on: the API key writes, the read token reads."""

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
AUTH = {"Authorization": f"Bearer {API_KEY}"}
QUESTION = "What is the weather in Zürich?"
FINAL = "It is 18 °C and sunny in Zürich."


def _generation(messages: list[dict[str, Any]], generation_id: str) -> CompletionSoFar:
    """One generation's answer, rebuilt from the durable stream's messages alone."""
    so_far = CompletionSoFar()
    for message in messages:
        if message.get("generation") == generation_id:
            data = {k: v for k, v in message.items() if k not in ("type", "generation")}
            so_far.add(message["type"], data)
    return so_far


async def _run_agent(base: str, path: str) -> tuple[AnswerSoFar, AnswerSoFar, list[str]]:
    """The application: three events of its own and two generations, then close."""
    async with DurableStreamWriter(base, path, api_key=API_KEY) as run:
        await run.create()
        await run.append({"type": "user", "text": QUESTION})
        asked = [{"role": "user", "content": QUESTION}]
        first = await run.generate(asked, model="mock?tools=1&rate=400", tools=[WEATHER_TOOL])
        call = first.choices[0].tool_calls[0]
        await run.append(
            {"type": "tool_result", "tool_call_id": call["id"], "content": "18 °C, sunny"}
        )
        answered = [
            *asked,
            first.choices[0].as_message(),
            {"role": "tool", "tool_call_id": call["id"], "content": "18 °C, sunny"},
            {"role": "user", "content": FINAL},
        ]
        second = await run.generate(answered, model="mock?echo=1&rate=400")
        await run.append({"type": "status", "text": "done"})
        await run.close()
        generations = await _generation_ids(base, path, run.read_token)
        return first, second, generations


async def _generation_ids(base: str, path: str, token: str | None) -> list[str]:
    async with httpx2.AsyncClient() as http:
        response = await http.get(f"{base}/v1/ds/{path}", params={"offset": "-1", "token": token})
    ids: list[str] = []
    for message in response.json():
        if "generation" in message and message["generation"] not in ids:
            ids.append(message["generation"])
    return ids


async def _read_with_two_disconnects(
    base: str, path: str, token: str, stops: tuple[int, int]
) -> tuple[list[Any], list[str]]:
    """Follow the stream, hanging up after ``stops[0]`` and again after ``stops[1]``
    messages, resuming each time from the last offset it got."""
    reader = DurableStreamReader(base, path, token=token)
    received: list[Any] = []
    resumed_from: list[str] = []
    offset = "-1"
    try:
        for stop in (*stops, None):
            async with aclosing(reader.follow(offset)) as messages:
                async for next_offset, message in messages:
                    received.append(message)
                    offset = next_offset
                    if stop is not None and len(received) == stop:
                        break
            if stop is not None:
                resumed_from.append(offset)
    finally:
        await reader.aclose()
    return received, resumed_from


async def test_an_agent_run_is_one_stream_that_a_reader_follows_across_two_disconnects(
    shared_stack: tuple[Stack, str],
) -> None:
    _, base = shared_stack
    path = f"agents/run-{uuid.uuid4().hex[:8]}"
    async with DurableStreamWriter(base, path, api_key=API_KEY) as setup:
        await setup.create()  # the reader needs the token before the run starts
        token = setup.read_token
    assert token is not None
    agent = asyncio.create_task(_run_agent(base, path))
    received, resumed_from = await _read_with_two_disconnects(base, path, token, (3, 9))
    first, second, generations = await agent

    # the reader hung up twice and resumed where it was: every message once, in order
    assert len(resumed_from) == 2 and resumed_from[0] < resumed_from[1]
    async with httpx2.AsyncClient() as http:
        stored = (await http.get(f"{base}/v1/ds/{path}?offset=-1", params={"token": token})).json()
    assert received == stored

    # the application's three events, in order, around the two generations
    own = [m for m in received if "generation" not in m]
    assert own == [
        {"type": "user", "text": QUESTION},
        {"type": "tool_result", "tool_call_id": first.choices[0].tool_calls[0]["id"],
         "content": "18 °C, sunny"},
        {"type": "status", "text": "done"},
    ]  # fmt: skip
    assert len(generations) == 2
    first_id, second_id = generations
    kinds = [m.get("generation") or m["type"] for m in received]
    assert kinds.index("user") < kinds.index(first_id)
    assert max(i for i, k in enumerate(kinds) if k == first_id) < kinds.index("tool_result")
    assert kinds.index("tool_result") < kinds.index(second_id)
    assert max(i for i, k in enumerate(kinds) if k == second_id) < kinds.index("status")

    # each generation, rebuilt from the durable stream alone, is its whole answer
    tool_call = _generation(received, first_id).choices[0].tool_calls
    assert tool_call == first.choices[0].tool_calls
    assert tool_call[0]["function"]["name"] == "get_weather"
    arguments = json.loads(tool_call[0]["function"]["arguments"])
    assert set(arguments) == {"city"} and isinstance(arguments["city"], str)
    assert _generation(received, second_id).text == FINAL == second.text
    ends = [m for m in received if m["type"] in ("done", "error")]
    assert [(m["generation"], m["finish_reason"]) for m in ends] == [
        (first_id, "tool_calls"),
        (second_id, "stop"),
    ]
    # and the generations are streams of their own too, with the same answer
    async with TokenRelayClient(base, api_key=API_KEY) as client:
        assert (await client.answer(second_id)).text == FINAL


class _HoldingProxy:
    """A TCP proxy to the gateway that holds back the answer to the first POST for
    ``hold_s``: the request arrives and is applied, its answer comes too late."""

    def __init__(self, target_port: int, hold_s: float) -> None:
        self.target_port = target_port
        self.hold_s = hold_s
        self.posts = 0
        self._server: asyncio.Server | None = None
        self._connections: list[asyncio.Task[None]] = []

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        server_in, server_out = await asyncio.open_connection("127.0.0.1", self.target_port)
        first = await client_in.read(65536)
        hold = 0.0
        if first.startswith(b"POST"):
            self.posts += 1
            hold = self.hold_s if self.posts == 1 else 0.0
        server_out.write(first)
        await server_out.drain()

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, wait: float) -> None:
            try:
                while data := await src.read(65536):
                    if wait:
                        await asyncio.sleep(wait)
                        wait = 0.0
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(client_in, server_out, 0.0), pipe(server_in, client_out, hold))


async def test_an_append_retried_after_a_timeout_is_stored_once(
    shared_stack: tuple[Stack, str],
) -> None:
    _, base = shared_stack
    path = f"agents/retry-{uuid.uuid4().hex[:8]}"
    proxy = _HoldingProxy(int(base.rsplit(":", 1)[1]), hold_s=1.5)
    proxied = f"http://127.0.0.1:{await proxy.start()}"
    try:
        async with DurableStreamWriter(base, path, api_key=API_KEY) as setup:
            await setup.create()
        # one connection per request, so that the proxy sees each
        no_reuse = httpx2.Limits(max_keepalive_connections=0)
        async with httpx2.AsyncClient(timeout=0.5, limits=no_reuse) as http:
            writer = DurableStreamWriter(proxied, path, api_key=API_KEY, http=http)
            offset = await writer.append({"type": "tool_result", "content": "once"})
            head = await http.head(f"{base}/v1/ds/{path}", headers=AUTH)
            await writer.append({"type": "status", "text": "after"})
    finally:
        await proxy.stop()
    # the retry was answered as a duplicate, naming where the first append ended
    assert offset == head.headers["Stream-Next-Offset"]
    assert proxy.posts == 3  # the first (answered too late), its retry, the next append
    async with httpx2.AsyncClient() as http:
        response = await http.get(f"{base}/v1/ds/{path}", params={"offset": "-1"}, headers=AUTH)
    assert response.json() == [
        {"type": "tool_result", "content": "once"},
        {"type": "status", "text": "after"},
    ]
