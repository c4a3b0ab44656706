"""An upstream that fails before the first token is asked again, as its Retry-After says.

Nothing is in the stream before the first token, so the retried generation's text appears
exactly once; a wait longer than the generation may wait ends it at once; a cancel during
the wait ends it at once and asks the upstream nothing more.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from email.utils import formatdate

import httpx2
import openai
import pytest

from producer.retries import UpstreamRetries, retry_after_s
from producer.upstream import classify
from shared.errors import StreamErrorCode, UpstreamError
from tests.client import Relay

# the suite's other stacks ask the upstream once; this one as deployments do
STACK_ENV = {"TOKENRELAY_UPSTREAM_MAX_RETRIES": "2", "TOKENRELAY_UPSTREAM_MAX_RETRY_WAIT_S": "30"}


def rate_limited(retry_after: float | None) -> UpstreamError:
    return UpstreamError(
        StreamErrorCode.RATE_LIMIT_EXCEEDED, "429", retryable=True, retry_after_s=retry_after
    )


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),
        ({"retry-after": "-4"}, 0.0),
        ({"retry-after": "later"}, None),
        ({}, None),
    ],
)
def test_retry_after_header(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_s(headers) == expected


def test_retry_after_as_an_http_date() -> None:
    wait = retry_after_s({"retry-after": formatdate(time.time() + 60, usegmt=True)})
    assert wait is not None and 58 <= wait <= 60
    assert retry_after_s({"retry-after": formatdate(time.time() - 60, usegmt=True)}) == 0.0


def test_retries_wait_as_asked_until_the_count_or_the_total_wait_runs_out() -> None:
    retries = UpstreamRetries(max_retries=3, max_wait_s=10)
    assert retries.wait_before_retry(rate_limited(4)) == 4
    assert retries.wait_before_retry(rate_limited(5)) == 5
    assert retries.wait_before_retry(rate_limited(2)) is None  # 11 s in all > 10 s
    retries = UpstreamRetries(max_retries=2, max_wait_s=100)
    assert retries.wait_before_retry(rate_limited(1)) == 1
    assert retries.wait_before_retry(rate_limited(1)) == 1
    assert retries.wait_before_retry(rate_limited(1)) is None  # a third retry


def test_without_retry_after_the_wait_doubles_with_jitter() -> None:
    retries = UpstreamRetries(max_retries=4, max_wait_s=100, base_s=1)
    server_error = UpstreamError(StreamErrorCode.UPSTREAM_ERROR, "500", retryable=True)
    waits = [retries.wait_before_retry(server_error) for _ in range(4)]
    for n, wait in enumerate(waits):
        assert wait is not None and 2**n / 2 <= wait <= 2**n


@pytest.mark.parametrize(
    "error",
    [
        UpstreamError(StreamErrorCode.UPSTREAM_REJECTED, "400", retryable=False),
        UpstreamError(StreamErrorCode.INTERNAL, "bug", retryable=False),
    ],
)
def test_refusals_and_bugs_are_not_retried(error: UpstreamError) -> None:
    assert UpstreamRetries(max_retries=5, max_wait_s=100).wait_before_retry(error) is None


def sdk_error(status: int, headers: dict[str, str], code: str) -> openai.APIStatusError:
    """The SDK's own exception for an answer of ``status`` (as it raises it)."""
    request = httpx2.Request("POST", "https://upstream.example/v1/chat/completions")
    response = httpx2.Response(status, headers=headers, request=request)
    client = openai.OpenAI(api_key="k", base_url="https://upstream.example/v1")
    error = client._make_status_error("refused", body={"code": code}, response=response)
    client.close()
    return error


@pytest.mark.parametrize(
    ("status", "headers", "code", "expected"),
    [
        (429, {"retry-after": "2"}, "rate_limit_exceeded", ("rate_limit_exceeded", True, 2.0)),
        (429, {}, "insufficient_quota", ("rate_limit_exceeded", False, None)),
        (
            429,
            {"x-should-retry": "false"},
            "rate_limit_exceeded",
            ("rate_limit_exceeded", False, None),
        ),
        (503, {"retry-after-ms": "250"}, "overloaded", ("upstream_error", True, 0.25)),
        (409, {"x-should-retry": "true"}, "conflict", ("upstream_rejected", True, None)),
        (400, {}, "invalid_request", ("upstream_rejected", False, None)),
    ],
)
def test_what_an_upstream_refusal_means(
    status: int, headers: dict[str, str], code: str, expected: tuple[str, bool, float | None]
) -> None:
    error = classify(sdk_error(status, headers, code))
    assert (error.code, error.retryable, error.retry_after_s) == expected
    assert str(status) in error.message


async def test_429_twice_then_the_exact_text_once(relay: Relay) -> None:
    created = await relay.create(
        "back off", model="mock?tokens=25&rate=500&fault=429&retry_after=1&times=2"
    )
    read = await relay.read_sse(created["id"])
    records = await relay.mock_records(created["id"])
    assert [r["options"]["fault"] for r in records] == ["429", "429", "none"]
    waits = [b["started_at"] - a["started_at"] for a, b in itertools.pairwise(records)]
    assert all(1.0 <= wait < 2.5 for wait in waits), waits  # as Retry-After said
    print(f"asked again after {', '.join(f'{wait:.3f}' for wait in waits)} s (Retry-After: 1)")
    assert read.terminal.type == "done"
    assert read.terminal.data["finish_reason"] == "stop"
    assert read.text == records[-1]["sent_text"] != ""
    assert records[-1]["tokens_sent"] == 25
    offsets = [tuple(map(int, (e.offset or "").split("-"))) for e in read.events]
    assert offsets == sorted(set(offsets))
    assert (await relay.status(created["id"]))["status"] == "completed"


async def test_server_error_then_the_text(relay: Relay) -> None:
    created = await relay.create("back off 500", model="mock?tokens=10&rate=0&fault=500&times=1")
    read = await relay.read_sse(created["id"])
    records = await relay.mock_records(created["id"])
    assert [r["options"]["fault"] for r in records] == ["500", "none"]
    assert read.terminal.type == "done"
    assert read.text == records[-1]["sent_text"] != ""


async def test_a_longer_wait_than_allowed_fails_at_once(relay: Relay) -> None:
    started = time.monotonic()
    created = await relay.create("back off long", model="mock?fault=429&retry_after=90")
    read = await relay.read_sse(created["id"])
    assert time.monotonic() - started < 5
    assert read.text == ""
    assert read.terminal.type == "error"
    assert read.terminal.data["code"] == "rate_limit_exceeded"
    assert read.terminal.data["retryable"] is True
    assert "retry after 90 s" in read.terminal.data["message"]
    assert len(await relay.mock_records(created["id"])) == 1


async def test_cancel_while_backing_off(relay: Relay) -> None:
    created = await relay.create(
        "back off cancel", model="mock?tokens=10&fault=429&retry_after=20&times=1"
    )
    deadline = time.monotonic() + 5
    while not await relay.mock_records(created["id"]):
        assert time.monotonic() < deadline, "the worker never asked the upstream"
        await asyncio.sleep(0.05)
    cancelled = time.monotonic()
    response = await relay.http.post(f"/v1/streams/{created['id']}/cancel", headers=relay.auth)
    assert response.status_code == 202, response.text
    read = await relay.read_sse(created["id"])
    assert time.monotonic() - cancelled < 3
    assert read.text == ""
    assert read.terminal.type == "done"
    assert read.terminal.data["finish_reason"] == "cancelled"
    await asyncio.sleep(0.5)
    assert len(await relay.mock_records(created["id"])) == 1
