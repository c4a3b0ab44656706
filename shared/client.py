"""An async client for the gateway: create streams and follow them, resuming on failure.

``events()`` reads NDJSON and remembers the offset of the last event it yielded; when the
connection breaks, the response ends early or the gateway answers 429/5xx, it reconnects with
``?after=<that offset>`` (backing off, with jitter, honouring ``Retry-After``), so the caller
sees every event once, in order, across gateway restarts and replicas.

On top of the events: ``text()`` is the answer's text; ``stream_answer()`` follows the whole
answer as it grows (reasoning, tool calls, refusal, every choice: an ``AnswerSoFar``, the
``shared.completion.CompletionSoFar`` that also reads a Responses stream's events) and
``answer()`` waits for all of it.

A stream created through ``POST /v1/responses`` holds ``response`` events, each a Responses
API event as the upstream sent it: a ``ClientEvent`` of type ``response`` whose ``data`` is that
event, its own ``type`` included (``response.output_text.delta``...), however it was read.
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

    @classmethod
    def of(cls, offset: str, kind: str, data: dict[str, Any]) -> ClientEvent:
        """The event from ``{"offset", "type", ...data}`` taken apart (NDJSON, the admin
        API's events), where a ``response`` event is ``{"offset", "type": "response",
        "event": {...}}``; or from an SSE frame (its ``event`` and ``data``)."""
        if kind == "response" and isinstance(data.get("event"), dict) and len(data) == 1:
            return cls(offset, kind, data["event"])
        return cls(offset, kind, data)

    @property
    def response_type(self) -> str | None:
        """A ``response`` event's own type (``response.created``, ``response.output_text.delta``,
        ``error``...); None for the other events."""
        if self.type != "response":
            return None
        kind = self.data.get("type")
        return kind if isinstance(kind, str) else ""

    @property
    def text(self) -> str:
        """The answer's text this event carries: a ``token``'s text, the ``content`` of a
        ``delta`` of choice 0 (its first fragment, or one sent with logprobs), the ``delta``
        of a ``response.output_text.delta``; empty for everything else. Joined over a
        stream's events, the answer (the ``text`` format)."""
        if self.type == "token":
            return str(self.data.get("text", ""))
        if self.type == "delta" and self.data.get("choice") == 0:
            content = self.data.get("content")
            return content if isinstance(content, str) else ""
        if self.response_type == "response.output_text.delta":
            delta = self.data.get("delta")
            return delta if isinstance(delta, str) else ""
        return ""

    @property
    def choice(self) -> int | None:
        """The choice a ``token`` (always 0), ``delta`` or ``response`` (always 0: a
        Responses stream's answer is one choice) event belongs to; None for the terminal
        events."""
        if self.type in ("token", "response"):
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


_INCOMPLETE_REASONS = {"max_output_tokens": "length", "content_filter": "content_filter"}
"""How an incomplete Response's reason reads as a finish reason (as the worker ends its stream)."""


class AnswerSoFar(CompletionSoFar):
    """A ``CompletionSoFar`` that also reads a Responses stream's ``response`` events, as one
    choice the way the OpenAI SDK reads them: ``response.output_text.delta`` is the text,
    ``response.refusal.delta`` the refusal, ``response.reasoning_summary_text.delta`` and
    ``response.reasoning_text.delta`` the ``reasoning`` (parts apart by a blank line), each
    ``function_call`` item a tool call (``call_id`` its id) whose arguments grow by
    ``response.function_call_arguments.delta`` (found by ``item_id``, else by
    ``output_index``); ``response.completed`` / ``incomplete`` / ``failed`` give the usage and
    the finish reason (``stop``, ``length`` or ``content_filter``; none for a failure). Its
    ``response`` is the Response object of the last event that carried one; its
    ``completion`` that object's ``id``, ``created_at`` and ``model`` (as the stream's status
    has them).

    The same rules as ``AnswerBuilder`` in web/tokenrelay.js.
    """

    def __init__(self, completion: dict[str, Any] | None = None) -> None:
        super().__init__(completion)
        self.response: dict[str, Any] | None = None
        """A Responses stream's Response object (``id``, ``status``, ``output``, ``usage``...)."""
        self._calls: dict[tuple[str, object], int] = {}

    def add(self, kind: str, data: dict[str, Any]) -> None:
        """One event: its ``type`` and its data (a ``response`` event's data with its own
        type; or that type as ``kind``, the rest as ``data``)."""
        if kind == "response":
            if isinstance(data.get("type"), str):  # else nothing tells what it adds
                self._response_event(data["type"], data)
        elif kind.startswith("response.") or (
            kind == "error" and "sequence_number" in data and "retryable" not in data
        ):
            self._response_event(kind, data)
        else:
            super().add(kind, data)

    def _response_event(self, kind: str, event: dict[str, Any]) -> None:
        choice = self.choice(0)
        delta = event.get("delta")
        if kind == "response.output_text.delta" and isinstance(delta, str):
            super().add("token", {"text": delta})
        elif kind == "response.refusal.delta" and isinstance(delta, str):
            choice.add({"refusal": delta})
        elif kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            if isinstance(delta, str):
                choice.add({"reasoning": delta})
        elif kind == "response.reasoning_summary_part.added" or (
            kind == "response.content_part.added"
            and isinstance(event.get("part"), dict)
            and event["part"].get("type") == "reasoning_text"
        ):
            if choice.reasoning:  # a new part: a new paragraph
                choice.add({"reasoning": "\n\n"})
        elif kind == "response.output_item.added":
            self._item_added(event)
        elif kind == "response.function_call_arguments.delta" and isinstance(delta, str):
            index = self._call_index(event)
            choice.add({"tool_calls": [{"index": index, "function": {"arguments": delta}}]})
        elif kind == "response.output_item.done":
            item = event.get("item")
            if isinstance(item, dict) and item.get("type") == "function_call":
                self._complete_call(self._call_index(event), item)
        elif isinstance(event.get("response"), dict):
            self._response_object(kind, event["response"])

    def _response_object(self, kind: str, response: dict[str, Any]) -> None:
        self.response = response
        if not self.completion:
            self.completion = {
                k: response[k] for k in ("id", "created_at", "model") if k in response
            }
        if kind not in ("response.completed", "response.incomplete", "response.failed"):
            return
        if kind == "response.completed":
            self.choice(0).finish_reason = "stop"
        elif kind == "response.incomplete":
            details = response.get("incomplete_details")
            reason = details.get("reason") if isinstance(details, dict) else None
            self.choice(0).finish_reason = _INCOMPLETE_REASONS.get(str(reason), "length")
        if isinstance(response.get("usage"), dict):
            self.usage = response["usage"]

    def _item_added(self, event: dict[str, Any]) -> None:
        item = event.get("item")
        if not isinstance(item, dict):
            return
        choice = self.choice(0)
        if choice.message.get("role") is None:  # a message's role, "assistant" for any other
            role = item.get("role")
            choice.add({"role": role if isinstance(role, str) else "assistant"})
        if item.get("type") != "function_call" or self._known(event) is not None:
            return
        index = self._new_call(event)
        name, arguments = item.get("name"), item.get("arguments")
        call = {
            "index": index,
            "id": item.get("call_id"),
            "type": "function",
            "function": {
                "name": name if isinstance(name, str) else "",
                "arguments": arguments if isinstance(arguments, str) else "",
            },
        }
        choice.add({"tool_calls": [call]})

    def _call_index(self, event: dict[str, Any]) -> int:
        """The tool call of the event's item; a new one (the reader began after the item
        was added: made of what comes after it) if none."""
        known = self._known(event)
        if known is not None:
            return known
        index = self._new_call(event)
        call = {"index": index, "id": None, "type": "function"}
        self.choice(0).add({"tool_calls": [{**call, "function": {"name": "", "arguments": ""}}]})
        return index

    def _known(self, event: dict[str, Any]) -> int | None:
        item = event.get("item")
        item_id = event.get("item_id") or (item.get("id") if isinstance(item, dict) else None)
        # some upstreams (GitHub Copilot) give every event a new id: the output index is the
        # item's place
        found = self._calls.get(("item", item_id)) if item_id is not None else None
        if found is None and event.get("output_index") is not None:
            found = self._calls.get(("output", event["output_index"]))
        return found

    def _new_call(self, event: dict[str, Any]) -> int:
        index = len(self.choice(0).tool_calls)
        item = event.get("item")
        item_id = event.get("item_id") or (item.get("id") if isinstance(item, dict) else None)
        if item_id is not None:
            self._calls[("item", item_id)] = index
        if event.get("output_index") is not None:
            self._calls[("output", event["output_index"])] = index
        return index

    def _complete_call(self, index: int, item: dict[str, Any]) -> None:
        """The whole item: the id and name the call lacks, its arguments when they differ."""
        call = next((c for c in self.choice(0).tool_calls if c.get("index") == index), None)
        if call is None:
            return
        function = call.setdefault("function", {})
        if call.get("id") is None and isinstance(item.get("call_id"), str):
            call["id"] = item["call_id"]
        if not function.get("name") and isinstance(item.get("name"), str):
            function["name"] = item["name"]
        if isinstance(item.get("arguments"), str):
            function["arguments"] = item["arguments"]


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
    ) -> AsyncIterator[tuple[ClientEvent, AnswerSoFar]]:
        """The stream's events from its start, each with the answer so far including it:
        one ``AnswerSoFar``, updated in place: ``.text`` is the answer's text,
        ``.choice(n)`` a choice's ``text``, ``reasoning``, ``refusal``, ``tool_calls`` (the
        fragments joined: ``{"index", "id", "type", "function": {"name", "arguments"}}``) and
        ``finish_reason``; ``.usage`` once it has ended. A Responses stream's answer is one
        choice, and ``.response`` its Response object.

        Resumes like ``events()``. The terminal event comes last, and comes once the
        stream's status has been read for the completion's ``id``, ``created``, ``model``,
        ``system_fingerprint`` and ``service_tier`` (left empty if that read fails), so that
        the last answer's ``chat_completion()`` is the whole ``chat.completion`` object. An
        ``error`` event does not raise here: the answer's ``ended`` and ``error`` tell.
        """
        so_far = AnswerSoFar()
        async for event in self.events(stream_id, token=token):
            so_far.add(event.type, event.data)
            if event.is_terminal and not so_far.completion:
                so_far.completion = await self._completion_fields(stream_id, token)
            yield event, so_far

    async def answer(self, stream_id: str, *, token: str | None = None) -> AnswerSoFar:
        """The whole answer once the stream has ended (``stream_answer()``'s last);
        ``StreamFailed`` if it ended in error, with the answer up to the failure."""
        so_far = AnswerSoFar()
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
        offset, kind = str(payload.pop("offset")), str(payload.pop("type"))
        return ClientEvent.of(offset, kind, payload)
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
