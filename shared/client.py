"""An async client for the gateway: create streams and follow them, resuming on failure.

``events()`` reads NDJSON and remembers the offset of the last event it yielded; when the
connection breaks, the response ends early or the gateway answers 429/5xx, it reconnects with
``?after=<that offset>`` (backing off, with jitter, honouring ``Retry-After``), so the caller
sees every event once, in order, across gateway restarts and replicas.

On top of the events: ``text()`` is the answer's text; ``stream_answer()`` follows the whole
answer as it grows (reasoning, tool calls, refusal, every choice: a
``shared.completion.CompletionSoFar``) and ``answer()`` waits for all of it.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import httpx2

from shared.completion import CompletionSoFar


@dataclass(frozen=True, slots=True)
class Created:
    """The answer to ``POST /v1/streams``."""

    id: str
    status: str
    created_at: float
    read_token: str
    events_url: str


@dataclass(frozen=True, slots=True)
class ClientEvent:
    """One stream event: ``data`` is the event's payload without ``offset`` and ``type``.

    A ``delta`` event's ``data`` is ``{"choice": n, ...}`` with the upstream's own field
    names (``reasoning_content`` or ``reasoning``, ``refusal``, ``tool_calls`` fragments,
    ``content`` of other choices, ``logprobs``, ``finish_reason``, …); see the contract's
    "Events". Feed events to a ``CompletionSoFar`` (or use ``stream_answer()``) rather than
    merging those fragments by hand.
    """

    offset: str
    type: str
    data: dict[str, Any]

    @property
    def text(self) -> str:
        """The answer's text this event carries: a ``token``'s text, or the ``content`` of a
        ``delta`` of choice 0 (its first fragment, or one sent with logprobs); empty for
        everything else. Joined over a stream's events, the answer (the ``text`` format)."""
        if self.type == "token":
            return str(self.data.get("text", ""))
        if self.type == "delta" and self.data.get("choice") == 0:
            content = self.data.get("content")
            return content if isinstance(content, str) else ""
        return ""

    @property
    def choice(self) -> int | None:
        """The choice a ``token`` (always 0) or ``delta`` event belongs to; None for the
        terminal events."""
        if self.type == "token":
            return 0
        if self.type == "delta":
            choice = self.data.get("choice", 0)
            return choice if isinstance(choice, int) else 0
        return None

    @property
    def is_terminal(self) -> bool:
        return self.type in ("done", "error")


class GatewayError(Exception):
    """A non-2xx answer: the gateway's ``error.code`` and ``message``, and the HTTP status."""

    def __init__(
        self, code: str, message: str, status: int, *, retry_after_s: float | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.retry_after_s = retry_after_s

    @property
    def retryable(self) -> bool:
        """Rate limited or a server-side failure: the same request may succeed later."""
        return self.status == 429 or self.status >= 500


class StreamFailed(Exception):
    """The stream ended with a terminal ``error`` event: its ``code``, ``message`` and
    ``retryable``, the ``upstream``'s own error answer when there was one, and (from
    ``answer()``) the ``answer`` as far as it had come."""

    def __init__(
        self,
        code: str,
        message: str,
        retryable: bool,
        *,
        upstream: dict[str, Any] | None = None,
        answer: CompletionSoFar | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable
        self.upstream = upstream
        self.answer = answer

    @classmethod
    def from_event(
        cls, data: dict[str, Any], *, answer: CompletionSoFar | None = None
    ) -> StreamFailed:
        """From an ``error`` event's data."""
        upstream = data.get("upstream")
        return cls(
            str(data.get("code", "")),
            str(data.get("message", "")),
            bool(data.get("retryable")),
            upstream=upstream if isinstance(upstream, dict) else None,
            answer=answer,
        )


class TokenRelayClient:
    """Async client for the gateway: create streams, follow them with automatic resume.

    ``api_key`` authorises everything; without one, pass a stream's ``read_token`` as
    ``token=`` (a gateway in demo mode also creates streams without a key).
    ``max_attempts`` bounds consecutive failed reconnects of ``events()`` (None: no bound).
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 30,
        backoff_initial_s: float = 0.25,
        backoff_max_s: float = 10.0,
        max_attempts: int | None = None,
        http: httpx2.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._max_attempts = max_attempts
        self._owns_http = http is None
        self._http = http or httpx2.AsyncClient(timeout=timeout_s)

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
        """Close the HTTP client, unless it was passed in."""
        if self._owns_http:
            await self._http.aclose()

    async def create(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str,
        idempotency_key: str | None = None,
        **params: Any,
    ) -> Created:
        """Start a generation; ``params`` (``max_tokens``, ``metadata``, …) go into the body."""
        headers = dict(self._headers)
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        body = {"model": model, "messages": messages, **params}
        response = await self._http.post(self._url("/v1/streams"), json=body, headers=headers)
        data = _json_or_raise(response)
        return Created(
            data["id"], data["status"], data["created_at"], data["read_token"], data["events_url"]
        )

    async def status(self, stream_id: str, *, token: str | None = None) -> dict[str, Any]:
        """The stream's status object."""
        response = await self._http.get(
            self._url(f"/v1/streams/{stream_id}"), params=_token(token), headers=self._headers
        )
        return _json_or_raise(response)

    async def cancel(self, stream_id: str, *, token: str | None = None) -> dict[str, Any]:
        """Stop the generation (idempotent); the stream ends ``done``/``cancelled``."""
        response = await self._http.post(
            self._url(f"/v1/streams/{stream_id}/cancel"),
            params=_token(token),
            headers=self._headers,
        )
        return _json_or_raise(response)

    async def events(
        self, stream_id: str, *, token: str | None = None, after: str | None = None
    ) -> AsyncIterator[ClientEvent]:
        """The stream's events after ``after`` (from the start without it), up to and
        including the terminal one, resuming from the last offset whenever the read breaks.

        Ends without yielding anything more if the stream had already ended at ``after``
        (``204``). Raises ``GatewayError`` for a non-retryable answer, or the last error once
        ``max_attempts`` reconnects in a row have failed.
        """
        url = self._url(f"/v1/streams/{stream_id}/events")
        failures = 0
        while True:
            params = {"format": "ndjson", **_token(token)}
            if after is not None:
                params["after"] = after
            try:
                async with self._http.stream("GET", url, params=params, headers=self._headers) as r:
                    if r.status_code == 204:
                        return
                    if r.status_code != 200:
                        await r.aread()
                        raise gateway_error(r)
                    async for line in r.aiter_lines():
                        if not line:
                            continue  # keep-alive
                        event = _parse(line)
                        after, failures = event.offset, 0
                        yield event
                        if event.is_terminal:
                            return
                raise httpx2.RemoteProtocolError("the response ended before the terminal event")
            except (httpx2.TransportError, GatewayError) as error:
                if isinstance(error, GatewayError) and not error.retryable:
                    raise
                failures += 1
                if self._max_attempts is not None and failures > self._max_attempts:
                    raise
                retry_after = error.retry_after_s if isinstance(error, GatewayError) else None
                await asyncio.sleep(self._backoff(failures, retry_after))

    async def text(self, stream_id: str, *, token: str | None = None) -> str:
        """The answer's text (choice 0's content), once the stream is done; ``StreamFailed``
        if it ended in error."""
        parts: list[str] = []
        async for event in self.events(stream_id, token=token):
            if event.type == "error":
                raise StreamFailed.from_event(event.data)
            parts.append(event.text)
        return "".join(parts)

    async def stream_answer(
        self, stream_id: str, *, token: str | None = None
    ) -> AsyncIterator[tuple[ClientEvent, CompletionSoFar]]:
        """The stream's events from its start, each with the answer so far including it:
        one ``CompletionSoFar``, updated in place: ``.text`` is the answer's text,
        ``.choice(n)`` a choice's ``text``, ``reasoning``, ``refusal``, ``tool_calls`` (the
        fragments joined: ``{"index", "id", "type", "function": {"name", "arguments"}}``) and
        ``finish_reason``; ``.usage`` once it has ended.

        Resumes like ``events()``. The terminal event comes last, and comes once the
        stream's status has been read for the completion's ``id``, ``created``, ``model``,
        ``system_fingerprint`` and ``service_tier`` (left empty if that read fails), so that
        the last answer's ``chat_completion()`` is the whole ``chat.completion`` object. An
        ``error`` event does not raise here: the answer's ``ended`` and ``error`` tell.
        """
        so_far = CompletionSoFar()
        async for event in self.events(stream_id, token=token):
            so_far.add(event.type, event.data)
            if event.is_terminal and not so_far.completion:
                so_far.completion = await self._completion_fields(stream_id, token)
            yield event, so_far

    async def answer(self, stream_id: str, *, token: str | None = None) -> CompletionSoFar:
        """The whole answer once the stream has ended (``stream_answer()``'s last);
        ``StreamFailed`` if it ended in error, with the answer up to the failure."""
        so_far = CompletionSoFar()
        async for event, so_far in self.stream_answer(stream_id, token=token):
            if event.type == "error":
                raise StreamFailed.from_event(event.data, answer=so_far)
        return so_far

    async def _completion_fields(self, stream_id: str, token: str | None) -> dict[str, Any]:
        try:
            status = await self.status(stream_id, token=token)
        except (GatewayError, httpx2.TransportError):
            return {}  # the answer itself is whole: the status adds only its identity
        completion = status.get("completion")
        return completion if isinstance(completion, dict) else {}

    def _url(self, path: str) -> str:
        return self.base_url + path

    def _backoff(self, failures: int, retry_after_s: float | None) -> float:
        """Exponential with jitter (half fixed, half random), never below ``Retry-After``."""
        ceiling = min(self._backoff_max_s, self._backoff_initial_s * 2.0 ** (failures - 1))
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)
        return max(delay, retry_after_s or 0.0)


def _token(token: str | None) -> dict[str, str]:
    return {"token": token} if token is not None else {}


def _parse(line: str) -> ClientEvent:
    try:
        payload = json.loads(line)
        return ClientEvent(str(payload.pop("offset")), str(payload.pop("type")), payload)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        # A line cut short by a broken connection looks like this too: read it again.
        raise httpx2.RemoteProtocolError(f"not an NDJSON event: {line[:80]!r}") from error


def _json_or_raise(response: httpx2.Response) -> dict[str, Any]:
    if not response.is_success:
        raise gateway_error(response)
    data: dict[str, Any] = response.json()
    return data


def gateway_error(response: httpx2.Response) -> GatewayError:
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = f"http_{response.status_code}", response.text[:200]
    try:
        retry_after: float | None = float(response.headers.get("retry-after", ""))
    except ValueError:
        retry_after = None  # absent, or an HTTP date
    return GatewayError(code, message, response.status_code, retry_after_s=retry_after)
