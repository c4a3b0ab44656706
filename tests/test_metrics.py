"""``/metrics`` of a gateway and of a worker parse as Prometheus text and move as we stream."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.client import Relay
from tests.processes import API_KEY, Stack, free_port


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    scrape: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return scrape.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_gateway_and_worker_metrics_move_as_we_stream(stack: Stack) -> None:
    worker_port = free_port()
    _, base = stack.gateway()
    stack.worker(TOKENRELAY_WORKER_METRICS_PORT=str(worker_port))
    worker_metrics = f"http://127.0.0.1:{worker_port}/metrics"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        relay = Relay(http, stack.mock_url.removesuffix("/v1"), API_KEY)

        async def scrape() -> tuple[dict, dict]:  # type: ignore[type-arg]
            gateway = await http.get("/metrics")
            assert gateway.headers["content-type"].startswith("text/plain")
            worker = await http.get(worker_metrics)
            return samples(gateway.text), samples(worker.text)

        gateway_before, worker_before = await scrape()
        ok = await relay.create("metrics", model="mock?tokens=20&rate=200")
        read = await relay.read_sse(ok["id"])
        failing = await relay.create("metrics fault", model="mock?fault=500")
        await relay.read_sse(failing["id"])
        await relay.read_text(ok["id"])
        gateway_after, worker_after = await scrape()

    def moved(before: dict, after: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved(gateway_before, gateway_after, "tokenrelay_streams_created_total") == 2
    assert (
        moved(gateway_before, gateway_after, "tokenrelay_events_delivered_total", format="sse")
        == len(read.events) + 1
    )
    assert moved(
        gateway_before, gateway_after, "tokenrelay_events_delivered_total", format="text"
    ) == len(read.events)
    assert moved(gateway_before, gateway_after, "tokenrelay_delivery_lag_seconds_count") > 0
    assert value(gateway_after, "tokenrelay_active_readers") == 0
    assert (
        moved(
            gateway_before,
            gateway_after,
            "tokenrelay_redis_command_seconds_count",
            operation="read",
        )
        > 0
    )

    assert moved(worker_before, worker_after, "tokenrelay_tokens_appended_total") == 20
    assert moved(worker_before, worker_after, "tokenrelay_token_events_appended_total") == (
        len(read.events) - 1
    )
    assert (
        moved(worker_before, worker_after, "tokenrelay_streams_finished_total", status="completed")
        == 1
    )
    assert (
        moved(worker_before, worker_after, "tokenrelay_streams_finished_total", status="failed")
        == 1
    )
    assert (
        moved(
            worker_before, worker_after, "tokenrelay_upstream_errors_total", code="upstream_error"
        )
        == 1
    )
    assert moved(worker_before, worker_after, "tokenrelay_time_to_first_token_seconds_count") == 1
    assert moved(worker_before, worker_after, "tokenrelay_stream_duration_seconds_count") == 2
    # one append call per network read: the chunks of one read (say the opening delta and the
    # first token) go to Redis together, so there are at most as many calls as events
    appends = moved(
        worker_before, worker_after, "tokenrelay_redis_command_seconds_count", operation="append"
    )
    assert 1 <= appends <= len(read.events) - 1


def test_grafana_dashboard_queries_only_metrics_that_exist() -> None:
    import json
    import re
    from pathlib import Path

    from prometheus_client import REGISTRY

    import shared.metrics  # noqa: F401  (registers every metric)

    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "gauge": [""]}
    exported = {
        family.name + suffix
        for family in REGISTRY.collect()
        for suffix in suffixes.get(family.type, [""])
    }
    path = Path(__file__).resolve().parents[1] / "deploy/grafana/tokenrelay-dashboard.json"
    dashboard = json.loads(path.read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"tokenrelay_[a-z_]+", target["expr"])
    }
    assert len(dashboard["panels"]) >= 8
    assert queried and queried <= exported, queried - exported
