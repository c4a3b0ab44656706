"""A mixed load that checks what it gets: the day of a gateway, in sessions.

Each session is one of ``SCENARIOS`` (taken in turn): a whole answer as NDJSON, SSE with a
read token, or plain text; a read broken off and resumed from its last offset; a reader
that leaves mid-answer and never comes back; a cancel; an upstream 429 the worker backs off
from; an upstream that breaks mid-answer; a retried create (``Idempotency-Key``); the admin
view; bad input. Every answer is checked against the mock model's deterministic text, so a
lost, doubled or reordered token is a *problem*, counted and kept (the first few) in
``Tally``; so is any unexpected status code.

    async with aclosing(Mix(gateway_url, api_key, admin_token)) as mix:
        await mix.run(seconds=60, concurrency=30)
        print(mix.tally.sessions, mix.tally.problems)
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx2

from producer.mockmodel import mock_text
from shared.client import ClientEvent, TokenRelayClient

TOKENS, RATE = 40, 200.0
"""Each generation's length and pace (tokens per second): 0.2 s, as a short chat answer."""


class Problem(Exception):
    """What a session got that it should not have."""


@dataclass
class Tally:
    sessions: Counter[str] = field(default_factory=Counter)
    problems: int = 0
    first_problems: list[str] = field(default_factory=list)

    def problem(self, scenario: str, error: BaseException) -> None:
        self.problems += 1
        if len(self.first_problems) < 20:
            self.first_problems.append(f"{scenario}: {type(error).__name__}: {error}")


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise Problem(what)


class Mix:
    def __init__(self, gateway_url: str, api_key: str, admin_token: str) -> None:
        self._http = httpx2.AsyncClient(base_url=gateway_url, timeout=30)
        self._client = TokenRelayClient(gateway_url, api_key=api_key, http=self._http)
        self._auth = {"Authorization": f"Bearer {api_key}"}
        self._admin = {"Authorization": f"Bearer {admin_token}"}
        self.tally = Tally()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def run(self, *, seconds: float, concurrency: int) -> None:
        """``concurrency`` sessions at a time, one after another, for ``seconds``."""
        deadline = time.monotonic() + seconds
        turn = iter(range(1 << 62))

        async def lane() -> None:
            while time.monotonic() < deadline:
                await self.session(next(turn))

        await asyncio.gather(*(lane() for _ in range(concurrency)))

    async def session(self, n: int) -> None:
        name, scenario = SCENARIOS[n % len(SCENARIOS)]
        try:
            await scenario(self, f"soak {n} {uuid.uuid4().hex[:6]}")
        except Exception as error:  # a session's failure is counted, the load goes on
            self.tally.problem(name, error)
        self.tally.sessions[name] += 1

    # --- helpers -----------------------------------------------------------------------------

    async def _create(self, prompt: str, model: str = "", **params: object) -> str:
        model = model or f"mock?tokens={TOKENS}&rate={RATE:g}"
        created = await self._client.create(
            [{"role": "user", "content": prompt}], model=model, **params
        )
        return created.id

    async def _events(self, stream_id: str, after: str | None = None) -> list[ClientEvent]:
        return [event async for event in self._client.events(stream_id, after=after)]

    # --- the scenarios -----------------------------------------------------------------------

    async def whole(self, prompt: str) -> None:
        stream_id = await self._create(prompt)
        expect(await self._client.text(stream_id) == answer(prompt), "the NDJSON text differs")

    async def sse_with_token(self, prompt: str) -> None:
        created = await self._client.create(
            [{"role": "user", "content": prompt}], model=f"mock?tokens={TOKENS}&rate={RATE:g}"
        )
        text, terminal = "", ""
        async with self._http.stream("GET", created.events_url) as response:
            expect(response.status_code == 200, f"SSE answered {response.status_code}")
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    terminal = line[7:]
                elif line.startswith("data: ") and terminal == "token":
                    text += json.loads(line[6:])["text"]
        expect(terminal == "done", f"SSE ended with {terminal!r}")
        expect(text == answer(prompt), "the SSE text differs")

    async def plain(self, prompt: str) -> None:
        stream_id = await self._create(prompt)
        response = await self._http.get(
            f"/v1/streams/{stream_id}/events", params={"format": "text"}, headers=self._auth
        )
        expect(response.status_code == 200, f"text/plain answered {response.status_code}")
        expect(response.text == answer(prompt), "the plain text differs")

    async def resume(self, prompt: str) -> None:
        stream_id = await self._create(prompt)
        first: list[ClientEvent] = []
        async for event in self._client.events(stream_id):
            first.append(event)
            if len(first) == 3 or event.is_terminal:
                break  # the connection is dropped here
        rest = await self._events(stream_id, after=first[-1].offset) if first else []
        text = "".join(event.text for event in first + rest)
        expect(text == answer(prompt), "the resumed text differs")

    async def leave(self, prompt: str) -> None:
        """Reads up to the first token and goes; the generation finishes for nobody."""
        stream_id = await self._create(prompt)
        async for event in self._client.events(stream_id):
            if event.offset and event.type == "token":
                break

    async def cancel(self, prompt: str) -> None:
        stream_id = await self._create(prompt, model="mock?tokens=400&rate=40")
        events: list[ClientEvent] = []
        async for event in self._client.events(stream_id):
            events.append(event)
            if len(events) == 2:
                await self._client.cancel(stream_id)
            if event.is_terminal:
                break
        terminal = events[-1]
        expect(
            terminal.type == "done" and terminal.data.get("finish_reason") == "cancelled",
            f"a cancel ended with {terminal}",
        )
        text = "".join(event.text for event in events)
        expect(answer(prompt, 400).startswith(text), "the cancelled text is not a prefix")

    async def rate_limited_once(self, prompt: str) -> None:
        model = f"mock?tokens={TOKENS}&rate={RATE:g}&fault=429&retry_after=0.2&times=1"
        stream_id = await self._create(prompt, model=model)
        expect(await self._client.text(stream_id) == answer(prompt), "the retried text differs")

    async def upstream_breaks(self, prompt: str) -> None:
        model = f"mock?tokens={TOKENS}&rate={RATE:g}&fault=disconnect&after=5"
        events = await self._events(await self._create(prompt, model=model))
        terminal = events[-1]
        expect(
            terminal.type == "error" and terminal.data["code"] == "upstream_error",
            f"a broken upstream ended with {terminal}",
        )
        expect("".join(e.text for e in events) == answer(prompt, 5), "the text before the break")

    async def idempotent(self, prompt: str) -> None:
        key = uuid.uuid4().hex
        first = await self._create(prompt, idempotency_key=key)
        again = await self._create(prompt, idempotency_key=key)
        expect(first == again, "a retried create started a second stream")
        expect(await self._client.text(first) == answer(prompt), "the text differs")

    async def admin(self, prompt: str) -> None:
        stream_id = await self._create(prompt)
        for path in (
            "/admin/api/streams?limit=20",
            f"/admin/api/streams/{stream_id}",
            f"/admin/api/streams/{stream_id}/events?count=10",
            "/admin/api/system",
        ):
            response = await self._http.get(path, headers=self._admin)
            expect(response.status_code == 200, f"{path} answered {response.status_code}")
        expect(await self._client.text(stream_id) == answer(prompt), "the text differs")

    async def bad_input(self, prompt: str) -> None:
        stream_id = await self._create(prompt)
        cases = (
            ("GET", f"/v1/streams/{stream_id}/events?after=yesterday", 400),
            ("GET", "/v1/streams/no-such-stream-at-all-here/events", 404),
            ("POST", "/v1/streams", 422),
        )
        for method, path, status in cases:
            response = await self._http.request(method, path, headers=self._auth, json={})
            expect(response.status_code == status, f"{method} {path}: {response.status_code}")
        expect(await self._client.text(stream_id) == answer(prompt), "the text differs")


def answer(prompt: str, tokens: int = TOKENS) -> str:
    return "".join(mock_text(prompt, tokens))


Scenario = Callable[[Mix, str], Awaitable[None]]
SCENARIOS: list[tuple[str, Scenario]] = [
    (name, getattr(Mix, name))
    for name in (
        "whole",
        "sse_with_token",
        "resume",
        "plain",
        "leave",
        "cancel",
        "whole",
        "rate_limited_once",
        "upstream_breaks",
        "idempotent",
        "resume",
        "admin",
        "bad_input",
    )
]
