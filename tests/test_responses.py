"""OpenAI's Responses API with background mode through tokenrelay, as the official Python SDK
sees it: recorded real Responses streams (tests/recordings/responses/) replayed by a test
upstream, read through the gateway; resume from a sequence number; the Response object;
cancel that really stops; background polling; a worker lost mid-response."""

from __future__ import annotations

import functools
import json
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.processes import API_KEY, Stack
from tests.replay_upstream import (
    fetch_requests,
    recorded_response_events,
    replaying_stack,
    responses_recordings,
)

ENDINGS = ("response.completed", "response.incomplete", "response.failed", "error")


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """(upstream, gateway, another gateway) base URLs: two gateways and a worker on one
    Redis, the worker's upstream replaying recordings."""
    with replaying_stack(tmp_path_factory.mktemp("responses"), gateways=2) as (upstream, bases, _):
        yield upstream, bases[0], bases[1]


@pytest.fixture
def relay(replicas: tuple[str, str, str]) -> tuple[str, str]:
    """(upstream, gateway) base URLs."""
    return replicas[0], replicas[1]


@functools.cache  # one client per base URL: none is left to the garbage collector mid-test
def sdk(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key=API_KEY, max_retries=0, timeout=30)


def dumped(event: Any) -> dict[str, Any]:
    data: dict[str, Any] = event.model_dump()
    return data


def as_relayed(upstream_event: dict[str, Any], response_id: str) -> dict[str, Any]:
    """What tokenrelay's client must get for an upstream event: the id mapped, background
    as asked, no obfuscation."""
    event = json.loads(json.dumps(upstream_event))
    event.pop("obfuscation", None)
    if isinstance(event.get("response"), dict):
        event["response"]["id"] = response_id
        event["response"]["background"] = True
    return event


def completed(name: str) -> bool:
    return recorded_response_events(name)[-1]["type"] == "response.completed"


@pytest.mark.parametrize("name", [n for n in responses_recordings() if completed(n)])
def test_background_stream_yields_the_upstreams_events_and_resumes(
    relay: tuple[str, str], name: str
) -> None:
    upstream, gateway = relay
    model = f"replay:{name}"
    direct = [
        dumped(e) for e in sdk(upstream).responses.create(model=model, input="hi", stream=True)
    ]
    relayed = [
        dumped(e)
        for e in sdk(gateway).responses.create(
            model=model, input="hi", stream=True, background=True
        )
    ]
    response_id = relayed[0]["response"]["id"]
    assert response_id.startswith("resp_") and response_id != direct[0]["response"]["id"]
    assert [e["sequence_number"] for e in relayed] == list(range(len(relayed)))
    assert relayed == [as_relayed(e, response_id) for e in direct]

    # from the middle: exactly the rest
    middle = len(relayed) // 2
    rest = [
        dumped(e)
        for e in sdk(gateway).responses.retrieve(response_id, stream=True, starting_after=middle)
    ]
    assert rest == relayed[middle + 1 :]

    # the Response object: the final one, completed
    final = sdk(gateway).responses.retrieve(response_id)
    assert final.id == response_id and final.status == "completed"
    assert final.model_dump() == {**relayed[-1]["response"]}
    # the upstream's own id is in the stream's status
    status = httpx.get(
        f"{gateway}/v1/streams/{response_id.removeprefix('resp_')}",
        headers={"Authorization": f"Bearer {API_KEY}"},
    ).json()
    assert status["completion"]["id"] == direct[0]["response"]["id"]
    assert status["status"] == "completed"


@pytest.mark.parametrize("name", [n for n in responses_recordings() if not completed(n)])
def test_the_upstreams_own_failure_or_incomplete_passes_through(
    relay: tuple[str, str], name: str
) -> None:
    _, gateway = relay
    recorded = recorded_response_events(name)
    received: list[dict[str, Any]] = []
    try:
        for event in sdk(gateway).responses.create(
            model=f"replay:{name}", input="hi", stream=True, background=True
        ):
            received.append(dumped(event))
    except openai.APIError:  # the SDK raises at an `error` event
        assert any(e["type"] == "error" for e in recorded)
    types = [e["type"] for e in received]
    assert types == [e["type"] for e in recorded][: len(types)]
    if recorded[-1]["type"] == "response.incomplete":
        assert types[-1] == "response.incomplete"
        assert (
            received[-1]["response"]["incomplete_details"]
            == (recorded[-1]["response"]["incomplete_details"])
        )


def test_a_reader_resumes_through_another_replica_exactly_once(
    replicas: tuple[str, str, str],
) -> None:
    _, gateway, other = replicas
    model = "replay:openai-function-call?delay_ms=15"
    stream = sdk(gateway).responses.create(model=model, input="hi", stream=True, background=True)
    head = []
    for event in stream:
        head.append(dumped(event))
        if len(head) == 4:
            break
    stream.close()
    response_id = head[0]["response"]["id"]
    rest = [
        dumped(e) for e in sdk(other).responses.retrieve(response_id, stream=True, starting_after=3)
    ]
    whole = [dumped(e) for e in sdk(gateway).responses.retrieve(response_id, stream=True)]
    assert head + rest == whole
    assert [e["sequence_number"] for e in whole] == list(range(len(whole)))
    assert whole[-1]["type"] == "response.completed"


def test_background_without_stream_answers_queued_then_polling_completes(
    relay: tuple[str, str],
) -> None:
    _, gateway = relay
    client = sdk(gateway)
    created = client.responses.create(
        model="replay:openai-text?delay_ms=100", input="hi", background=True
    )
    assert created.status in ("queued", "in_progress")
    assert created.background is True
    deadline = time.monotonic() + 20
    seen = {created.status}
    while time.monotonic() < deadline:
        now = client.responses.retrieve(created.id)
        seen.add(now.status)
        if now.status == "completed":
            break
        time.sleep(0.05)
    assert now.status == "completed" and now.output_text
    assert "in_progress" in seen


def test_cancel_during_a_silent_upstream_stops_it_within_a_second(
    relay: tuple[str, str],
) -> None:
    upstream, gateway = relay
    client = sdk(gateway)
    created = client.responses.create(
        model="replay:openai-text?silent=1", input="hi", background=True
    )
    stream_id = created.id.removeprefix("resp_")
    deadline = time.monotonic() + 10
    while not of_stream(fetch_requests(upstream), stream_id):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    reader = client.responses.retrieve(created.id, stream=True)
    started, asked_at = time.monotonic(), time.time()
    cancelled = client.responses.cancel(created.id)
    took = time.monotonic() - started
    assert cancelled.status == "cancelled" and took < 1.5
    [record] = of_stream(fetch_requests(upstream), stream_id)
    assert record["client_closed"]
    # the upstream saw its connection closed within a second of the cancel (its record: the
    # request's wall-clock start and the seconds until the client closed)
    closed_at = record["started_at"] + record["client_closed_after_s"]
    assert 0 < closed_at - asked_at < 1.0, closed_at - asked_at
    events = list(reader)  # the reader's stream ended, with a parseable cancelled response
    assert [e.type for e in events] == ["response.created", "response.incomplete"]
    assert events[-1].response.status == "cancelled"  # type: ignore[union-attr]
    assert client.responses.cancel(created.id).status == "cancelled"  # idempotent


def of_stream(records: list[dict[str, Any]], stream_id: str) -> list[dict[str, Any]]:
    """The upstream's records of the requests the worker made for a stream."""
    return [r for r in records if r["headers"].get("x-tokenrelay-stream") == stream_id]


def test_an_upstream_refusal_is_the_sdks_own_error(relay: tuple[str, str]) -> None:
    _, gateway = relay
    with pytest.raises(openai.RateLimitError) as raised:
        sdk(gateway).responses.create(
            model="replay:openai-text?status=429&retry_after=3", input="hi", stream=True
        )
    assert raised.value.response.headers["retry-after"] == "3"
    with pytest.raises(openai.BadRequestError):
        sdk(gateway).responses.create(model="replay:openai-text?status=400", input="hi")


def test_unknown_response_is_404_in_openais_shape(relay: tuple[str, str]) -> None:
    _, gateway = relay
    with pytest.raises(openai.NotFoundError):
        sdk(gateway).responses.retrieve("resp_" + "A" * 22)
    chat = sdk(gateway).chat.completions.with_raw_response.create(
        model="replay:openai-text", messages=[{"role": "user", "content": "hi"}]
    )
    chat_id = "resp_" + chat.headers["x-tokenrelay-stream-id"]
    with pytest.raises(openai.NotFoundError):  # a chat completion is no response
        sdk(gateway).responses.retrieve(chat_id)
    with pytest.raises(openai.NotFoundError):
        sdk(gateway).responses.cancel(chat_id)
    with pytest.raises(openai.NotFoundError):
        sdk(gateway).responses.retrieve("msg_123")


def test_worker_sigkilled_mid_response_ends_readers_with_producer_lost(
    stack: Stack,
) -> None:
    stack.extra_env.update({"TOKENRELAY_LEASE_S": "3", "TOKENRELAY_JOB_TIMEOUT_S": "3"})
    _, gateway = stack.gateway()
    worker = stack.worker()
    client = sdk(gateway)
    stream = client.responses.create(
        model="mock?tokens=400&rate=20", input="long", stream=True, background=True
    )
    events = []
    for event in stream:
        events.append(event)
        if len(events) == 8:
            worker.popen.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
            killed = time.monotonic()
            break
    stream.close()  # this reader leaves; another one resumes
    rest = list(client.responses.retrieve(events[0].response.id, stream=True, starting_after=7))  # type: ignore[union-attr]
    assert time.monotonic() - killed < 3 + 5
    last = rest[-1]
    assert last.type == "response.failed"
    assert last.response.status == "failed"  # type: ignore[union-attr]
    assert last.response.error.code == "producer_lost"  # type: ignore[union-attr]
    status = client.responses.retrieve(events[0].response.id)  # type: ignore[union-attr]
    assert status.status == "failed" and status.error and status.error.code == "producer_lost"


def test_the_metrics_count_responses_events(relay: tuple[str, str]) -> None:
    _, gateway = relay

    def delivered() -> float:
        for line in httpx.get(f"{gateway}/metrics").text.splitlines():
            if line.startswith('tokenrelay_events_delivered_total{format="responses"}'):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = delivered()
    events = list(
        sdk(gateway).responses.create(model="replay:openai-text", input="hi", stream=True)
    )
    assert delivered() - before == len(events) + 1  # and the stream's terminal event
