"""Every upstream fault ends the stream with its SPEC error code, keeping the text so far."""

from __future__ import annotations

import pytest

from tests.client import Relay

STACK_ENV = {"TOKENRELAY_UPSTREAM_TIMEOUT_S": "1", "TOKENRELAY_MAX_STREAM_EVENTS": "20"}


@pytest.mark.parametrize(
    ("fault", "code", "retryable"),
    [
        ("429", "rate_limit_exceeded", True),
        ("500", "upstream_error", True),
        ("400", "upstream_rejected", False),
    ],
)
async def test_http_error_before_the_first_token(
    relay: Relay, fault: str, code: str, retryable: bool
) -> None:
    created = await relay.create(f"fault {fault}", model=f"mock?fault={fault}&retry_after=0")
    read = await relay.read_sse(created["id"])
    assert read.text == ""
    assert read.terminal.type == "error"
    assert read.terminal.data["code"] == code
    assert read.terminal.data["retryable"] is retryable
    assert fault in read.terminal.data["message"]
    status = await relay.status(created["id"])
    assert status["status"] == "failed"
    assert status["error"]["code"] == code


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ("disconnect", "upstream_error"),
        ("malformed", "upstream_error"),
        # the stream simply stops: [DONE] but never a finish_reason
        ("no_finish", "upstream_error"),
        # silent for longer than TOKENRELAY_UPSTREAM_TIMEOUT_S (1 s here)
        ("stall", "upstream_timeout"),
    ],
)
async def test_fault_mid_stream_keeps_the_text_so_far(relay: Relay, fault: str, code: str) -> None:
    created = await relay.create(
        f"fault {fault}", model=f"mock?tokens=30&rate=200&fault={fault}&after=6"
    )
    read = await relay.read_sse(created["id"])
    record = await relay.mock_record(created["id"])
    assert record["tokens_sent"] == 6
    assert read.text == record["sent_text"] != ""
    assert read.terminal.type == "error", read.terminal
    assert read.terminal.data["code"] == code
    assert [e.type for e in read.events].count("error") == 1
    assert (await relay.status(created["id"]))["status"] == "failed"


async def test_token_limit_is_done_with_length(relay: Relay) -> None:
    created = await relay.create("limit", model="mock?tokens=30&rate=0", max_tokens=7)
    read = await relay.read_sse(created["id"])
    record = await relay.mock_record(created["id"])
    assert record["tokens_sent"] == 7
    assert read.text == record["sent_text"]
    assert read.terminal.type == "done"
    assert read.terminal.data["finish_reason"] == "length"
    status = await relay.status(created["id"])
    assert (status["status"], status["finish_reason"]) == ("completed", "length")


async def test_hard_length_cap_ends_the_stream_with_length(relay: Relay) -> None:
    # TOKENRELAY_MAX_STREAM_EVENTS=20: 19 token events, then the terminal one
    created = await relay.create("long", model="mock?tokens=400&rate=100")
    read = await relay.read_sse(created["id"])
    record = await relay.mock_record(created["id"])
    assert len(read.events) == 20
    assert read.terminal.type == "done"
    assert read.terminal.data["finish_reason"] == "length"
    assert record["sent_text"].startswith(read.text)
    assert record["tokens_sent"] < 400
    assert record["closed_by_client_at"] is not None  # the worker hung up the upstream
