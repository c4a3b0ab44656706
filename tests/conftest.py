"""Shared fixtures: real Redis (the machine's, under a per-run key prefix), real processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.client import Relay
from tests.processes import API_KEY, Process, Stack, delete_keys, mock_model_process, running


@pytest.fixture(scope="session")
def mock_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A mock model process shared by the run; its base URL (without ``/v1``)."""
    with mock_model_process(tmp_path_factory.mktemp("mock")) as (_, url):
        yield url


@pytest.fixture
def stack(tmp_path: Path, mock_model: str, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """Gateways and workers this test starts; stopped (and their keys deleted) after it."""
    stack = Stack(tmp=tmp_path, mock_url=f"{mock_model}/v1")
    yield stack
    stack.stop_all()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(stack.logs())
    delete_keys(stack.prefix)


@pytest.fixture(scope="module")
def shared_stack(
    tmp_path_factory: pytest.TempPathFactory, mock_model: str, request: pytest.FixtureRequest
) -> Iterator[tuple[Stack, str]]:
    """One gateway and one worker for the tests of a module, with the module's
    ``STACK_ENV`` (settings for both processes) if it has one."""
    with running(
        Stack(
            tmp=tmp_path_factory.mktemp("stack"),
            mock_url=f"{mock_model}/v1",
            extra_env=getattr(request.module, "STACK_ENV", {}),
        )
    ) as stack:
        _, base = stack.gateway()
        stack.worker()
        yield stack, base


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
