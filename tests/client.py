"""A small test client for the gateway: create streams, read them in each format."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Event:
    offset: str | None
    type: str
    data: dict[str, Any]


@dataclass
class Read:
    status_code: int
    events: list[Event] = field(default_factory=list)
    retry: int | None = None
    comments: int = 0

    @property
    def text(self) -> str:
        """The answer: choice 0's content, whichever event carried it."""
        return "".join(
            e.data["text"] if e.type == "token" else e.data.get("content") or ""
            for e in self.events
            if e.type == "token" or (e.type == "delta" and e.data.get("choice") == 0)
        )

    @property
    def terminal(self) -> Event:
        assert self.events and self.events[-1].type in ("done", "error"), self.events[-3:]
        return self.events[-1]


def parse_sse_block(block: str, read: Read) -> Event | None:
    fields: dict[str, str] = {}
    for line in block.split("\n"):
        if line.startswith(":"):
            read.comments += 1
            continue
        name, _, value = line.partition(":")
        fields[name] = value.removeprefix(" ")
    if "retry" in fields:
        read.retry = int(fields["retry"])
    if "data" not in fields:
        return None
    return Event(fields.get("id"), fields.get("event", "message"), json.loads(fields["data"]))


async def sse_events(response: httpx.Response, read: Read) -> AsyncIterator[Event]:
    """The events of an SSE response as they arrive (comments and ``retry`` go to ``read``)."""
    buffer = ""
    async for chunk in response.aiter_text():
        buffer += chunk
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            event = parse_sse_block(block, read)
            if event is not None:
                yield event


@dataclass
class Relay:
    http: httpx.AsyncClient
    mock_model_url: str
    api_key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    async def create(
        self, prompt: str = "Hello", model: str = "mock?tokens=30&rate=200", **extra: Any
    ) -> dict[str, Any]:
        body = {"model": model, "messages": [{"role": "user", "content": prompt}], **extra}
        response = await self.http.post("/v1/streams", json=body, headers=self.auth)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def status(self, stream_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/v1/streams/{stream_id}", headers=self.auth)
        assert response.status_code == 200, response.text
        status: dict[str, Any] = response.json()
        return status

    async def read_sse(
        self,
        stream_id: str,
        *,
        after: str | None = None,
        last_event_id: str | None = None,
        stop_after: int | None = None,
        token: str | None = None,
        url: str | None = None,
    ) -> Read:
        """Read SSE until the response ends, or until ``stop_after`` events (then hang up)."""
        params = {"after": after} if after is not None else {}
        headers = {} if token else dict(self.auth)
        if token:
            params["token"] = token
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        target = url or f"/v1/streams/{stream_id}/events"
        async with self.http.stream("GET", target, params=params, headers=headers) as response:
            read = Read(response.status_code)
            if response.status_code != 200:
                await response.aread()
                return read
            assert response.headers["content-type"].startswith("text/event-stream")
            async for event in sse_events(response, read):
                read.events.append(event)
                if stop_after is not None and len(read.events) >= stop_after:
                    break
            return read

    async def read_ndjson(self, stream_id: str) -> Read:
        response = await self.http.get(
            f"/v1/streams/{stream_id}/events", params={"format": "ndjson"}, headers=self.auth
        )
        assert response.headers["content-type"].startswith("application/x-ndjson")
        read = Read(response.status_code)
        for line in response.text.splitlines():
            if line:
                payload = json.loads(line)
                read.events.append(Event(payload.pop("offset"), payload.pop("type"), payload))
        return read

    async def read_text(self, stream_id: str) -> str:
        response = await self.http.get(
            f"/v1/streams/{stream_id}/events", headers={**self.auth, "Accept": "text/plain"}
        )
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        return response.text

    async def mock_record(self, stream_id: str) -> dict[str, Any]:
        """What the mock model recorded for this stream's (single) upstream request."""
        response = await self.http.get(
            f"{self.mock_model_url}/_mock/requests", params={"stream": stream_id}
        )
        records: list[dict[str, Any]] = response.json()
        assert len(records) == 1, records
        return records[0]

    async def mock_records(self, stream_id: str) -> list[dict[str, Any]]:
        response = await self.http.get(
            f"{self.mock_model_url}/_mock/requests", params={"stream": stream_id}
        )
        records: list[dict[str, Any]] = response.json()
        return records
