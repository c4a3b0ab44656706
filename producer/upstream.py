"""The upstream model: one chat-completions stream through the real ``openai`` SDK.

The SDK sends the request (auth, its error classes); we read its raw response bytes
(``producer.upstream_http``) and parse the SSE lines ourselves, which is about ten times
cheaper per token than letting the SDK build a pydantic object for every chunk, and
cheaper again than its line iterator (three generator layers and a text decode per
network read). ``producer.chunks`` turns the chunks into the stream's parts; the parts of
one network read are yielded together, as one list.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import openai

from producer.chunks import ChunkTranslator, Finished, Part
from producer.mockmodel import MockModel
from producer.responses import ResponsesTranslator
from producer.retries import UpstreamRetries, retry_after_s
from producer.upstream_http import http_client, received
from shared import metrics
from shared.errors import StreamErrorCode, UpstreamError
from shared.settings import Settings
from shared.upstream_api import CHAT_COMPLETIONS, RESPONSES

log = logging.getLogger("tokenrelay.producer")

STREAM_HEADER = "X-TokenRelay-Stream"
"""Sent with every upstream request, so an upstream's logs can be matched to a stream."""


class Completion(dict[str, Any]):
    """The chunk-level fields kept once per stream (``producer.chunks``), yielded before the
    parts whenever it gained a field."""


class Upstream:
    """An OpenAI-compatible endpoint, named for stream statuses (``upstream``).

    A request that fails before its first token is asked again as ``UpstreamRetries`` says
    (the SDK's own retries are off: one policy, which honours ``Retry-After`` and bounds the
    total wait).
    """

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        name: str,
        *,
        max_retries: int = 0,
        max_retry_wait_s: float = 0.0,
    ) -> None:
        self.client = client
        self.name = name
        self.max_retries = max_retries
        self.max_retry_wait_s = max_retry_wait_s

    async def stream(
        self, request: Mapping[str, Any], stream_id: str, endpoint: str = CHAT_COMPLETIONS
    ) -> AsyncGenerator[list[Part] | Completion | Finished]:
        """Yield the parts (those of one network read at a time), preceded by the
        ``Completion`` whenever it changed, then ``Finished`` once the upstream ends
        properly.

        Raises ``UpstreamError`` for every failure; a stream that ends without a
        ``finish_reason`` simply stops without yielding ``Finished``.
        """
        retries = UpstreamRetries(max_retries=self.max_retries, max_wait_s=self.max_retry_wait_s)
        while True:
            started = False
            try:
                async for item in self._attempt(request, stream_id, endpoint):
                    started = True
                    yield item
                return
            except UpstreamError as exc:
                wait = None if started else retries.wait_before_retry(exc)
                if wait is None:
                    raise
                metrics.upstream_retries.labels(exc.code).inc()
                log.warning(
                    "stream=%s step=retry upstream failed before the first token, "
                    "asking again in %.2f s: %s",
                    stream_id,
                    wait,
                    exc.message,
                )
                await asyncio.sleep(wait)

    async def _attempt(
        self, request: Mapping[str, Any], stream_id: str, endpoint: str
    ) -> AsyncGenerator[list[Part] | Completion | Finished]:
        """One request to the upstream, as ``stream`` describes."""
        params = dict(request)
        model = params.pop("model")
        translator: ChunkTranslator | ResponsesTranslator
        if endpoint == RESPONSES:
            translator = ResponsesTranslator()
            opened = self.client.responses.with_streaming_response.create(
                model=model,
                stream=True,
                extra_headers={STREAM_HEADER: stream_id},
                extra_body=params,
            )
        else:
            translator = ChunkTranslator()
            # The messages go in extra_body, which the SDK merges over its typed fields as
            # they are: its typed ``messages`` would be walked field by field first (about
            # 0.8 ms for a one-line prompt, growing with the conversation).
            opened = self.client.chat.completions.with_streaming_response.create(  # type: ignore[assignment]
                model=model,
                messages=[],
                stream=True,
                stream_options={"include_usage": True},
                extra_headers={STREAM_HEADER: stream_id},
                extra_body=params,
            )
        try:
            async with opened as response:
                lines = _DataLines()
                async for chunk in received(response):
                    payloads = lines.feed(chunk)
                    done = b"[DONE]" in payloads
                    if done:
                        del payloads[payloads.index(b"[DONE]") :]
                    parts: list[Part] = []
                    try:
                        translator.feed(payloads, parts)
                    except UpstreamError:
                        if parts:  # what came before the bad chunk is good
                            yield parts
                        raise
                    if translator.completion_changed:
                        translator.completion_changed = False
                        yield Completion(translator.completion)
                    if parts:
                        yield parts
                    if done or translator.ended:
                        break
        except UpstreamError:
            raise
        except Exception as exc:
            if translator.finished() is None:
                raise classify(exc) from exc
            # The answer is whole; only the trailing usage chunk or [DONE] was lost.
        finished = translator.finished()
        if finished is not None:
            yield finished


class _DataLines:
    """The ``data:`` payloads of an SSE byte stream, fed as it arrives in pieces."""

    def __init__(self) -> None:
        self._partial = b""

    def feed(self, received: bytes) -> list[bytes]:
        lines = (self._partial + received).split(b"\n")
        self._partial = lines.pop()
        # blank separators, comments and "event:" lines carry no data
        return [line[5:].strip() for line in lines if line.startswith(b"data:")]


def classify(exc: BaseException) -> UpstreamError:
    """The SPEC error code for an exception raised while talking to the upstream."""
    code, retryable = StreamErrorCode.UPSTREAM_ERROR, True
    headers = exc.response.headers if isinstance(exc, openai.APIStatusError) else {}
    if isinstance(exc, openai.RateLimitError):
        code = StreamErrorCode.RATE_LIMIT_EXCEEDED
        # a quota that ran out (billing) does not come back for waiting
        retryable = exc.code != "insufficient_quota"
    elif isinstance(exc, openai.APIStatusError):
        if exc.status_code < 500:
            code, retryable = StreamErrorCode.UPSTREAM_REJECTED, False
    elif isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
        code = StreamErrorCode.UPSTREAM_TIMEOUT
    elif not isinstance(exc, openai.APIConnectionError | httpx2.HTTPError):
        code, retryable = StreamErrorCode.INTERNAL, False
    if "x-should-retry" in headers:  # the upstream's own word, which OpenAI's SDK obeys too
        retryable = headers["x-should-retry"] == "true"
    wait = retry_after_s(headers)
    answered: dict[str, Any] | None = None
    if isinstance(exc, openai.APIStatusError):
        answered = {"status": exc.status_code}
        if isinstance(exc.body, dict):
            answered["error"] = exc.body
        if wait is not None:
            answered["retry_after_s"] = wait
    return UpstreamError(
        code, _describe(exc, wait), retryable=retryable, retry_after_s=wait, upstream=answered
    )


def _describe(exc: BaseException, retry_after: float | None) -> str:
    if isinstance(exc, openai.APIStatusError):
        asked = "" if retry_after is None else f" (it asked to retry after {retry_after:g} s)"
        return f"upstream answered {exc.status_code}: {exc.message}{asked}"
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
        return "the upstream sent nothing for longer than the upstream timeout"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def build_client(
    *,
    api_key: str,
    base_url: str | None,
    timeout_s: float,
    connect_timeout_s: float,
) -> openai.AsyncOpenAI:
    """The SDK client; its read timeout is the longest silence allowed between chunks.

    It does not retry by itself: ``Upstream`` does (``UpstreamRetries``). It speaks HTTP
    through aiohttp (``producer.upstream_http``).
    """
    timeout = httpx2.Timeout(timeout_s, connect=connect_timeout_s)
    return openai.AsyncOpenAI(
        api_key=api_key,
        base_url=base_url,
        max_retries=0,
        timeout=timeout,
        http_client=http_client(timeout),
    )


@asynccontextmanager
async def open_upstream(settings: Settings) -> AsyncIterator[Upstream]:
    """The upstream the environment names: OpenAI (``OPENAI_API_KEY``, ``OPENAI_BASE_URL``)
    or, without a key, the built-in mock model started in this process."""

    def client(api_key: str, base_url: str | None) -> openai.AsyncOpenAI:
        return build_client(
            api_key=api_key,
            base_url=base_url,
            timeout_s=settings.upstream_timeout_s,
            connect_timeout_s=settings.upstream_connect_timeout_s,
        )

    def upstream(client: openai.AsyncOpenAI, name: str) -> Upstream:
        return Upstream(
            client,
            name,
            max_retries=settings.upstream_max_retries,
            max_retry_wait_s=settings.upstream_max_retry_wait_s,
        )

    api_key = os.environ.get("OPENAI_API_KEY")
    if api_key:
        # an empty OPENAI_BASE_URL (as Compose passes an unset one) means the default
        async with client(api_key, os.environ.get("OPENAI_BASE_URL") or None) as real:
            yield upstream(real, str(real.base_url).rstrip("/"))
        return
    async with MockModel() as mock:
        log.warning(
            "OPENAI_API_KEY is not set: generating with the BUILT-IN MOCK MODEL at %s "
            "(set OPENAI_API_KEY, and OPENAI_BASE_URL for another provider, to use a real one)",
            mock.base_url,
        )
        async with client("mock", mock.base_url) as mocked:
            yield upstream(mocked, f"mock:{mock.base_url}")
