"""Shared fixtures: real Redis (the machine's, under a per-run key prefix), real processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.client import Relay
from tests.processes import API_KEY, REDIS_URL, Process, Stack, mock_model_process


@pytest.fixture(scope="session")
def mock_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A mock model process shared by the run; its base URL (without ``/v1``)."""
    with mock_model_process(tmp_path_factory.mktemp("mock")) as (_, url):
        yield url


def _delete_prefix(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.delete(key)
    finally:
        client.close()


@pytest.fixture
def stack(tmp_path: Path, mock_model: str, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """Gateways and workers this test starts; stopped (and their keys deleted) after it."""
    running = Stack(tmp=tmp_path, mock_url=f"{mock_model}/v1")
    yield running
    running.stop_all()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(running.logs())
    _delete_prefix(running.prefix)


@pytest.fixture(scope="module")
def shared_stack(
    tmp_path_factory: pytest.TempPathFactory, mock_model: str, request: pytest.FixtureRequest
) -> Iterator[tuple[Stack, str]]:
    """One gateway and one worker for the tests of a module, with the module's
    ``STACK_ENV`` (settings for both processes) if it has one."""
    running = Stack(
        tmp=tmp_path_factory.mktemp("stack"),
        mock_url=f"{mock_model}/v1",
        extra_env=getattr(request.module, "STACK_ENV", {}),
    )
    try:
        _, base = running.gateway()
        running.worker()
        yield running, base
    except BaseException:
        print(running.logs())
        raise
    finally:
        running.stop_all()
        _delete_prefix(running.prefix)


@pytest.fixture
async def relay(shared_stack: tuple[Stack, str]) -> AsyncIterator[Relay]:
    _, base = shared_stack
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        yield Relay(
            http, mock_model_url=shared_stack[0].mock_url.removesuffix("/v1"), api_key=API_KEY
        )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


__all__ = ["Process"]
