"""Application code's side of an agent run: one durable stream (``/v1/ds/<path>``) that
holds the application's own events and the generations it runs, read by anyone holding
its read token, from any offset, across reloads and gateway restarts.

    async with DurableStreamWriter(base_url, "runs/42", api_key=KEY) as run:
        await run.create()
        await run.append({"type": "status", "text": "looking up the weather"})
        answer = await run.generate(messages, model="gpt-4o-mini", tools=tools)
        await run.append({"type": "tool_result", "tool_call_id": ..., "content": ...})
        await run.close()

A generation's events arrive in the stream as messages ``{"type": "token" | "delta" |
"done" | "error", "generation": <its stream id>, ...its data}`` (the event model of
``/v1/streams``), between the application's own.

Appends are idempotent: each carries ``Producer-Id``, ``Producer-Epoch`` and ``Producer-Seq``.
One that times out, loses its connection or meets a 5xx is sent again with the same seq;
if the first one had arrived, the gateway answers 204 and stores nothing twice. A writer
that restarts under the same producer id must take a higher ``epoch`` (the old one is then
fenced off).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from types import TracebackType
from typing import Any, Self

import httpx2

from shared.client import AnswerSoFar, GatewayError, TokenRelayClient, gateway_error

DS_PREFIX = "/v1/ds/"
JSON = "application/json"


class DurableStreamWriter:
    """Creates, appends to, runs generations into and closes one JSON durable stream."""

    def __init__(
        self,
        base_url: str,
        path: str,
        *,
        api_key: str | None = None,
        producer_id: str | None = None,
        epoch: int = 0,
        timeout_s: float = 30,
        max_attempts: int = 5,
        http: httpx2.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.path = path.strip("/")
        self.producer_id = producer_id or f"writer-{uuid.uuid4()}"
        self.epoch = epoch
        self.read_token: str | None = None
        """The stream's read token (from ``create()``'s answer): what a browser needs."""
        self._seq = 0
        self._max_attempts = max_attempts
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._owns_http = http is None
        self._http = http or httpx2.AsyncClient(timeout=timeout_s)
        self._generations = TokenRelayClient(self.base_url, api_key=api_key, http=self._http)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    @property
    def url(self) -> str:
        return self.base_url + DS_PREFIX + self.path

    async def create(self, *, ttl_s: int | None = None) -> None:
        """Create the stream (or confirm it: creating again is fine)."""
        headers = {**self._headers, "Content-Type": JSON}
        if ttl_s is not None:
            headers["Stream-TTL"] = str(ttl_s)
        response = await self._http.put(self.url, headers=headers)
        self._remember(response)

    async def append(self, *events: Any) -> str:
        """Append ``events`` (JSON values) as one batch, exactly once; returns the stream's
        next offset."""
        if not events:
            raise ValueError("append at least one event")
        response = await self._produce(json.dumps(list(events)).encode(), close=False)
        return response.headers["Stream-Next-Offset"]

    async def close(self) -> None:
        """Close the stream: its readers end after its last message (idempotent)."""
        await self._produce(b"", close=True)

    async def generate(
        self, messages: list[dict[str, Any]], *, model: str, **params: Any
    ) -> AnswerSoFar:
        """Run a generation into the stream and wait for its whole answer (text, tool
        calls, finish reason): its events reach the stream's readers as they are made."""
        created = await self._generations.create(
            messages, model=model, durable_stream=self.path, **params
        )
        return await self._generations.answer(created.id)

    async def _produce(self, body: bytes, *, close: bool) -> httpx2.Response:
        """One producer batch, sent until the gateway answers it (the same seq every time)."""
        seq, self._seq = self._seq, self._seq + 1
        headers = {
            **self._headers,
            "Producer-Id": self.producer_id,
            "Producer-Epoch": str(self.epoch),
            "Producer-Seq": str(seq),
        }
        if body:
            headers["Content-Type"] = JSON
        if close:
            headers["Stream-Closed"] = "true"
        for attempt in range(1, self._max_attempts + 1):
            try:
                response = await self._http.post(self.url, content=body, headers=headers)
            except httpx2.TransportError:
                if attempt == self._max_attempts:
                    raise
            else:
                if response.status_code < 500 or attempt == self._max_attempts:
                    self._remember(response)
                    return response
            await asyncio.sleep(min(2.0, 0.1 * 2**attempt))
        raise AssertionError("unreachable")

    def _remember(self, response: httpx2.Response) -> None:
        if not response.is_success:
            raise gateway_error(response)
        self.read_token = response.headers.get("X-TokenRelay-Read-Token", self.read_token)


class DurableStreamReader:
    """Follows a JSON durable stream over SSE from an offset, reconnecting from the last
    one whenever the connection ends before the stream is closed: every message once, in
    order."""

    def __init__(
        self,
        base_url: str,
        path: str,
        *,
        token: str | None = None,
        api_key: str | None = None,
        http: httpx2.AsyncClient | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + DS_PREFIX + path.strip("/")
        self._params = {"token": token} if token else {}
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._owns_http = http is None
        self._http = http or httpx2.AsyncClient(timeout=httpx2.Timeout(30, read=120))
        self.offset = "-1"
        """Where the next read starts: after the last message yielded."""

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def follow(self, offset: str = "-1") -> AsyncGenerator[tuple[str, Any]]:
        """``(offset, message)`` for each message after ``offset`` until the stream is
        closed; ``offset`` is where to resume after this message."""
        self.offset = offset
        while True:
            ended = False
            async for next_offset, messages, closed in self._read_once():
                for message in messages:
                    yield next_offset, message
                self.offset, ended = next_offset, closed
            if ended:
                return

    async def _read_once(self) -> AsyncIterator[tuple[str, list[Any], bool]]:
        params = {**self._params, "offset": self.offset, "live": "sse"}
        try:
            async with self._http.stream(
                "GET", self.url, params=params, headers=self._headers
            ) as response:
                if not response.is_success:
                    await response.aread()
                    error = gateway_error(response)
                    if not error.retryable:
                        raise error
                    return
                pending: list[Any] = []
                async for kind, data in _sse(response.aiter_lines()):
                    if kind == "data":
                        pending = json.loads(data)
                    elif kind == "control":
                        control = json.loads(data)
                        closed = bool(control.get("streamClosed"))
                        yield control["streamNextOffset"], pending, closed
                        pending = []
                        if closed:
                            return
        except (httpx2.TransportError, GatewayError) as error:
            if isinstance(error, GatewayError) and not error.retryable:
                raise
            await asyncio.sleep(0.2)


async def _sse(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, str]]:
    """(event, data) of each SSE event."""
    kind, data = "", list[str]()
    async for line in lines:
        if not line:
            if kind and data:
                yield kind, "\n".join(data)
            kind, data = "", []
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:])
