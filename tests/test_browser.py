"""The demo page in real headless Chromium against a real gateway, worker and mock model:
the answer streams in, survives a killed gateway and a reload, stops, and shows in two tabs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Page

from tests.browser import ARTIFACTS, chromium
from tests.processes import API_KEY, Process, Stack, free_port

pytestmark = pytest.mark.timeout(90)


class Demo:
    """A gateway in demo mode with a worker, and what the mock model recorded."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.gateway: Process | None = None

    def start_gateway(self) -> None:
        self.gateway, _ = self.stack.gateway(port=self.port, TOKENRELAY_DEMO="true")

    async def mock_records(self, stream_id: str | None = None) -> list[dict[str, Any]]:
        params = {"stream": stream_id} if stream_id else {}
        async with httpx.AsyncClient() as http:
            response = await http.get(
                self.stack.mock_url.removesuffix("/v1") + "/_mock/requests", params=params
            )
        records: list[dict[str, Any]] = response.json()
        return records

    async def sent_text(self, stream_id: str) -> str:
        (record,) = await self.mock_records(stream_id)
        return str(record["sent_text"])

    async def stream_text(self, stream_id: str) -> str:
        """The text the stream kept, read from its start through the gateway."""
        async with httpx.AsyncClient() as http:
            response = await http.get(
                f"{self.base}/v1/streams/{stream_id}/events",
                params={"format": "text"},
                headers={"Authorization": f"Bearer {API_KEY}"},
            )
        return response.text


@pytest.fixture
async def demo(stack: Stack) -> AsyncIterator[Demo]:
    running = Demo(stack)
    running.start_gateway()
    stack.worker()
    yield running


async def ask(page: Page, demo: Demo, prompt: str, model: str) -> str:
    """Submit a prompt on the page; returns the id of the stream it created."""
    await page.goto(demo.base + "/")
    await page.fill("#prompt", prompt)
    await page.locator("details summary").click()
    await page.fill("#model", model)
    await page.click("#send")
    await page.wait_for_function(
        "() => JSON.parse(sessionStorage.getItem('tokenrelay.demo') || 'null')?.streamId"
    )
    saved = json.loads(await page.evaluate("sessionStorage.getItem('tokenrelay.demo')"))
    return str(saved["streamId"])


async def answer(page: Page) -> str:
    return await page.inner_text("#answer")


async def wait_state(page: Page, state: str, timeout_s: float = 20) -> None:
    await page.wait_for_selector(f"#state[data-state='{state}']", timeout=timeout_s * 1000)


async def wait_for_text(page: Page, min_chars: int) -> str:
    await page.wait_for_function(
        f"() => document.querySelector('#answer').innerText.length >= {min_chars}"
        " && !document.querySelector('#answer .placeholder')"
    )
    return await answer(page)


async def test_answer_streams_in_progressively_and_ends_exact(demo: Demo) -> None:
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 900, "height": 700})
        stream_id = await ask(page, demo, "Stream me something", "mock?tokens=80&rate=25")
        partial = await wait_for_text(page, 20)
        await wait_state(page, "streaming")
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=ARTIFACTS / "demo-mid-answer.png")
        await wait_state(page, "done")
        final = await answer(page)
    sent = await demo.sent_text(stream_id)
    assert 20 <= len(partial) < len(final)
    assert final.startswith(partial)
    assert final == sent


async def test_gateway_killed_mid_answer_page_reconnects_and_finishes(demo: Demo) -> None:
    async with chromium() as browser:
        page = await browser.new_page()
        stream_id = await ask(page, demo, "Survive a crash", "mock?tokens=100&rate=25")
        await wait_for_text(page, 15)
        assert demo.gateway is not None
        demo.gateway.kill()
        await wait_state(page, "reconnecting", timeout_s=10)
        shown_while_down = await answer(page)
        await asyncio.sleep(1)  # the page keeps trying while nothing listens
        demo.start_gateway()
        await wait_state(page, "done", timeout_s=30)
        final = await answer(page)
    sent = await demo.sent_text(stream_id)
    assert final.startswith(shown_while_down)
    assert final == sent


async def test_reload_mid_answer_resumes_the_same_stream(demo: Demo) -> None:
    async with chromium() as browser:
        page = await browser.new_page()
        stream_id = await ask(page, demo, "Reload me", "mock?tokens=100&rate=25")
        before = await wait_for_text(page, 15)
        generations = len(await demo.mock_records())
        await page.reload()
        await wait_state(page, "done", timeout_s=30)
        final = await answer(page)
        saved = json.loads(await page.evaluate("sessionStorage.getItem('tokenrelay.demo')"))
    assert saved["streamId"] == stream_id
    assert len(await demo.mock_records()) == generations  # no second generation
    assert final.startswith(before)
    assert final == await demo.sent_text(stream_id)


async def test_stop_mid_answer_closes_the_upstream(demo: Demo) -> None:
    async with chromium() as browser:
        page = await browser.new_page()
        stream_id = await ask(page, demo, "Stop me", "mock?tokens=400&rate=25")
        await wait_for_text(page, 15)
        await page.click("#stop")
        await wait_state(page, "stopped", timeout_s=10)
        shown = await answer(page)
        assert await page.inner_text("#state") == "Stopped"
        assert await page.is_disabled("#stop")
        assert await page.is_enabled("#send")
    (record,) = await demo.mock_records(stream_id)
    assert record["closed_by_client_at"] is not None
    assert record["tokens_sent"] < 400
    # the page shows exactly what the stream kept; that is what the model sent, but for the
    # tokens still on the wire when the worker closed the upstream
    kept = await demo.stream_text(stream_id)
    assert shown == kept != ""
    assert record["sent_text"].startswith(kept)
    assert len(record["sent_text"]) - len(kept) <= 40, "more than a few tokens were dropped"


async def test_two_tabs_on_one_stream_both_finish_exact(demo: Demo) -> None:
    async with chromium() as browser:
        first = await browser.new_page()
        stream_id = await ask(first, demo, "Two tabs", "mock?tokens=80&rate=25")
        await wait_for_text(first, 5)
        link = await first.get_attribute("#share", "href")
        assert link is not None
        second = await browser.new_page()
        await second.goto(demo.base + link)
        await asyncio.gather(wait_state(first, "done"), wait_state(second, "done"))
        texts = [await answer(first), await answer(second)]
    sent = await demo.sent_text(stream_id)
    assert texts == [sent, sent]
