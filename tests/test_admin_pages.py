"""The admin pages in real headless Chromium against a real gateway, worker and mock model:
sign in, see a running stream in the list, watch its text and raw events grow, cancel it,
purge another, see a stream's tool calls, reasoning and refusal (a Responses stream's too),
and see the workers and gateways of the system."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright.async_api import Page

from tests.browser import ARTIFACTS, chromium
from tests.processes import API_KEY, Process, Stack, free_port

pytestmark = pytest.mark.timeout(90)

ADMIN_TOKEN = "test-admin"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@dataclass
class Admin:
    stack: Stack
    port: int
    gateway: Process | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_gateway(self) -> None:
        self.gateway, _ = self.stack.gateway(port=self.port, TOKENRELAY_ADMIN_TOKEN=ADMIN_TOKEN)

    async def mock_record(self, stream_id: str) -> dict[str, Any]:
        async with httpx.AsyncClient() as http:
            response = await http.get(
                self.stack.mock_url.removesuffix("/v1") + "/_mock/requests",
                params={"stream": stream_id},
            )
        (record,) = response.json()
        assert isinstance(record, dict)
        return record

    async def sent_text(self, stream_id: str) -> str:
        return str((await self.mock_record(stream_id))["sent_text"])

    async def create(self, model: str) -> str:
        body = {"model": model, "messages": [{"role": "user", "content": "Admin me"}]}
        async with httpx.AsyncClient(base_url=self.base, timeout=10) as http:
            response = await http.post("/v1/streams", json=body, headers=AUTH)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def create_response(self, model: str) -> str:
        """A background Response (``POST /v1/responses``); its stream's id."""
        body = {"model": model, "input": "Weather?", "background": True}
        async with httpx.AsyncClient(base_url=self.base, timeout=10) as http:
            response = await http.post("/v1/responses", json=body, headers=AUTH)
        assert response.status_code == 200, response.text
        response_id = str(response.json()["id"])
        assert response_id.startswith("resp_")
        return response_id.removeprefix("resp_")  # tokenrelay's id: resp_ and the stream's

    async def status(self, stream_id: str) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.base, timeout=10) as http:
            return await http.get(f"/v1/streams/{stream_id}", headers=AUTH)

    async def wait_status(self, stream_id: str, status: str, timeout_s: float = 20) -> None:
        async with asyncio.timeout(timeout_s):
            while (await self.status(stream_id)).json()["status"] != status:
                await asyncio.sleep(0.05)


@pytest.fixture
async def admin(stack: Stack) -> AsyncIterator[Admin]:
    running = Admin(stack, free_port())
    running.start_gateway()
    stack.worker()
    yield running


async def sign_in(page: Page, admin: Admin, token: str = ADMIN_TOKEN, path: str = "") -> None:
    await page.goto(f"{admin.base}/admin{path}")
    await page.fill("#admin-token", token)
    await page.click("#admin-login")


async def stream_text(page: Page) -> str:
    return str(await page.eval_on_selector("#stream-text", "e => e.textContent"))


async def wait_text(page: Page, min_chars: int, timeout_s: float = 20) -> str:
    await page.wait_for_function(
        f"() => document.querySelector('#stream-text').textContent.length >= {min_chars}",
        timeout=timeout_s * 1000,
    )
    return await stream_text(page)


def row(stream_id: str) -> str:
    return f'#streams tr[data-stream-id="{stream_id}"]'


async def test_watch_a_running_stream_and_cancel_it(admin: Admin) -> None:
    stream_id = await admin.create("mock?tokens=300&rate=20")
    await admin.wait_status(stream_id, "running")
    errors: list[Any] = []
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 1200, "height": 1000})
        page.on("pageerror", lambda error: errors.append(error))
        await sign_in(page, admin)

        # The list shows the stream as running.
        await page.wait_for_selector(f"{row(stream_id)} .badge[data-status='running']")
        assert await page.is_hidden("#login")
        assert (
            await page.inner_text(f"{row(stream_id)} td:nth-child(3)") == "mock?tokens=300&rate=20"
        )
        assert await page.evaluate("sessionStorage.getItem('tokenrelay.admin')") == ADMIN_TOKEN
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=ARTIFACTS / "admin-streams.png")

        # Its page: the status, the text growing live, raw events appended.
        await page.click(f"{row(stream_id)} td:nth-child(2)")
        await page.wait_for_selector("#view-stream:not([hidden])")
        assert page.url.endswith(f"/admin#/streams/{stream_id}")
        await page.wait_for_selector("#stream-status[data-status='running']")
        assert await page.inner_text("#stream-id") == stream_id
        first = await wait_text(page, 10)
        await asyncio.sleep(1.2)
        second = await stream_text(page)
        assert len(second) > len(first)
        assert second.startswith(first)
        rows = await page.locator("#raw-events tbody tr").count()
        assert rows >= 10
        # the choice's opening delta (its role), then its text in token events
        first_row = "#raw-events tbody tr:first-child"
        assert await page.inner_text(f"{first_row} td:nth-child(2)") == "delta"
        assert 'role: "assistant"' in await page.inner_text(f"{first_row} td:nth-child(3)")
        assert await page.locator("#raw-events tr[data-type='token']").count() >= 5
        await page.wait_for_selector("#stream-meta dd")
        assert "mock" in await page.inner_text("#stream-meta")

        # Cancel, confirming the dialog: the stream ends as cancelled.
        dialogs: list[str] = []

        async def accept(dialog: Any) -> None:
            dialogs.append(dialog.message)
            await dialog.accept()

        page.once("dialog", accept)
        await page.click("#cancel")
        await page.wait_for_selector("#stream-status[data-status='cancelled']", timeout=15_000)
        await page.wait_for_selector("#raw-events tr[data-type='done']", timeout=15_000)
        assert dialogs and stream_id in dialogs[0]
        assert await page.is_disabled("#cancel")
        done = await page.inner_text("#raw-events tr[data-type='done'] td:nth-child(3)")
        assert "cancelled" in done
        await page.screenshot(path=ARTIFACTS / "admin-stream.png", full_page=True)

        # The system: at least this gateway and this worker.
        await page.click("#nav a[data-nav='system']")
        await page.wait_for_selector("#workers tbody tr", timeout=15_000)
        await page.wait_for_selector("#gateways tbody tr", timeout=15_000)
        assert await page.locator("#workers tbody tr").count() >= 1
        assert await page.locator("#gateways tbody tr").count() >= 1
        assert await page.inner_text("#redis-version") not in ("", "—")
        await page.screenshot(path=ARTIFACTS / "admin-system.png", full_page=True)
    assert (await admin.status(stream_id)).json()["status"] == "cancelled"
    assert errors == []


async def test_tail_reconnects_from_its_offset_after_the_gateway_dies(admin: Admin) -> None:
    stream_id = await admin.create("mock?tokens=80&rate=20")
    async with chromium() as browser:
        page = await browser.new_page()
        await sign_in(page, admin, path=f"#/streams/{stream_id}")
        before = await wait_text(page, 10)
        assert admin.gateway is not None
        admin.gateway.kill()
        await page.wait_for_selector("#tail-state[data-state='reconnecting']", timeout=10_000)
        await asyncio.sleep(1)  # the page keeps trying while nothing listens
        admin.start_gateway()
        await page.wait_for_selector("#raw-events tr[data-type='done']", timeout=30_000)
        await page.wait_for_selector("#stream-status[data-status='completed']")
        final = await stream_text(page)
        offsets = await page.eval_on_selector_all(
            "#raw-events tbody tr td:first-child", "cells => cells.map(c => c.textContent)"
        )
        assert await page.is_visible("#view-stream")  # still signed in
    assert final.startswith(before)
    assert final == await admin.sent_text(stream_id)
    status = (await admin.status(stream_id)).json()
    assert len(offsets) == len(set(offsets)) == status["event_count"]  # every event, once


async def test_purge_goes_back_to_the_list_and_the_stream_is_gone(admin: Admin) -> None:
    stream_id = await admin.create("mock?tokens=5&rate=200")
    await admin.wait_status(stream_id, "completed")
    async with chromium() as browser:
        page = await browser.new_page()
        await sign_in(page, admin, path=f"#/streams/{stream_id}")
        # The finished stream's whole text and its terminal event, read from the start.
        await page.wait_for_selector("#stream-status[data-status='completed']")
        await page.wait_for_selector("#raw-events tr[data-type='done']")
        assert await page.locator("#raw-events tr[data-type='token']").count() >= 1
        assert await stream_text(page)
        assert await page.is_disabled("#cancel")

        page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await page.click("#purge")
        await page.wait_for_selector("#view-streams:not([hidden])")
        assert page.url.endswith("/admin#/")
        assert stream_id in await page.inner_text("#flash")
        await page.wait_for_selector("#streams-state:empty", state="attached")
        await asyncio.sleep(1.2)  # a refresh or two
        assert await page.locator(row(stream_id)).count() == 0
    assert (await admin.status(stream_id)).status_code == 404


async def test_status_filter_lists_only_that_status(admin: Admin) -> None:
    done = await admin.create("mock?tokens=3&rate=200")
    await admin.wait_status(done, "completed")
    running = await admin.create("mock?tokens=300&rate=20")
    await admin.wait_status(running, "running")
    async with chromium() as browser:
        page = await browser.new_page()
        await sign_in(page, admin)
        await page.wait_for_selector(row(done))
        await page.wait_for_selector(row(running))
        await page.select_option("#status-filter", "completed")
        await page.wait_for_selector(row(running), state="detached")
        assert await page.locator(row(done)).count() == 1
    async with httpx.AsyncClient(base_url=admin.base) as http:
        await http.post(f"/v1/streams/{running}/cancel", headers=AUTH)


async def test_wrong_token_shows_an_error_and_stays_on_the_login_form(admin: Admin) -> None:
    async with chromium() as browser:
        page = await browser.new_page()
        await sign_in(page, admin, token="not-the-admin-token")
        await page.wait_for_function("() => document.querySelector('#login-error').textContent")
        assert await page.is_visible("#login")
        assert await page.is_visible("#admin-token")
        assert await page.is_hidden("#view-streams")
        assert await page.is_hidden("#nav")
        assert await page.evaluate("sessionStorage.getItem('tokenrelay.admin')") is None
        assert await page.inner_text("#login-error")

        # An API key is a credential, but not the admin one: refused too.
        await page.fill("#admin-token", API_KEY)
        await page.evaluate("document.querySelector('#login-error').textContent = ''")
        await page.click("#admin-login")
        await page.wait_for_function("() => document.querySelector('#login-error').textContent")
        assert await page.is_visible("#login")

        # A token that stops working mid-session (kept from before) sends back to the form.
        await page.evaluate("sessionStorage.setItem('tokenrelay.admin', 'stale')")
        await page.evaluate("document.querySelector('#login-error').textContent = ''")
        await page.goto(f"{admin.base}/admin#/system")  # a hash change: the page asks again
        await page.wait_for_function("() => document.querySelector('#login-error').textContent")
        assert await page.is_visible("#login")
        assert await page.evaluate("sessionStorage.getItem('tokenrelay.admin')") is None

        # The right token then opens the page the address asked for.
        await page.fill("#admin-token", ADMIN_TOKEN)
        await page.click("#admin-login")
        await page.wait_for_selector("#view-system:not([hidden])")
        assert await page.is_hidden("#login")


async def test_a_tool_calling_stream_shows_its_calls_reasoning_and_events(admin: Admin) -> None:
    tools = await admin.create("mock?reasoning=12&tools=2&rate=200")
    refused = await admin.create("mock?refusal=1&rate=200")
    await admin.wait_status(tools, "completed")
    await admin.wait_status(refused, "completed")
    errors: list[Any] = []
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 1200, "height": 1000})
        page.on("pageerror", lambda error: errors.append(error))
        await sign_in(page, admin, path=f"#/streams/{tools}")
        await page.wait_for_selector("#raw-events tr[data-type='done']")
        cards = await page.eval_on_selector_all(
            "#stream-tool-calls .tool-call",
            """cards => cards.map(card => [
                card.querySelector('.tool-name').textContent,
                card.querySelector('.tool-id').textContent,
                card.querySelector('.tool-args').textContent,
            ])""",
        )
        reasoning = await page.eval_on_selector("#stream-reasoning", "e => e.textContent")
        events = await page.eval_on_selector_all(
            "#raw-events tr[data-type='delta'] td:nth-child(3)",
            "cells => cells.map(cell => cell.textContent)",
        )
        assert await page.is_hidden("#stream-refusal")
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=ARTIFACTS / "admin-tool-calls.png", full_page=True)

        await page.goto(f"{admin.base}/admin#/streams/{refused}")
        await page.wait_for_selector("#raw-events tr[data-type='done']")
        await page.wait_for_selector("#stream-refusal:not([hidden])")
        refusal = await page.inner_text("#stream-refusal .refusal-text")
    (sent,) = (await admin.mock_record(tools))["choices"]
    assert [tuple(card) for card in cards] == [
        (call["name"], call["id"], call["arguments"]) for call in sent["tool_calls"]
    ]
    assert len(cards) == 2
    assert reasoning == sent["reasoning"] != ""
    # each call's first fragment, readably, in the raw events
    for index, call in enumerate(sent["tool_calls"]):
        head = f"tool_calls[{index}] · id {call['id']} · type function · name {call['name']}"
        assert any(head in event for event in events), (head, events)
    assert any(event.startswith("choice 0reasoning_content: ") for event in events)
    (refused_choice,) = (await admin.mock_record(refused))["choices"]
    assert refusal == refused_choice["refusal"] != ""
    assert errors == []


async def test_a_responses_stream_shows_its_text_function_call_and_reasoning(admin: Admin) -> None:
    stream_id = await admin.create_response("mock?tools=1&reasoning=5&tokens=10&text=1&rate=50")
    errors: list[Any] = []
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 1200, "height": 1000})
        page.on("pageerror", lambda error: errors.append(error))
        await sign_in(page, admin, path=f"#/streams/{stream_id}")
        await page.wait_for_selector("#raw-events tr[data-type='done']", timeout=20_000)
        await page.wait_for_selector("#stream-status[data-status='completed']")
        text = await stream_text(page)
        reasoning = await page.eval_on_selector("#stream-reasoning", "e => e.textContent")
        cards = await page.eval_on_selector_all(
            "#stream-tool-calls .tool-call",
            """cards => cards.map(card => [
                card.querySelector('.tool-name').textContent,
                card.querySelector('.tool-id').textContent,
                card.querySelector('.tool-args').textContent,
                card.dataset.complete,
            ])""",
        )
        rows = await page.eval_on_selector_all(
            "#raw-events tbody tr",
            """rows => rows.map(row => [
                row.dataset.type,
                row.cells[1].textContent,
                row.cells[2].textContent,
            ])""",
        )
        assert await page.is_visible("#stream-thinking")
        assert await page.is_hidden("#stream-refusal")
        assert await page.is_hidden("#stream-choices")
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=ARTIFACTS / "admin-responses.png", full_page=True)
    (sent,) = (await admin.mock_record(stream_id))["choices"]
    assert text == sent["content"] != ""
    assert reasoning == sent["reasoning"] != ""
    (call,) = sent["tool_calls"]
    assert [tuple(card) for card in cards] == [
        (call["name"], call["id"], call["arguments"], "true")
    ]

    # every event, the response events under their own type, readably
    status = (await admin.status(stream_id)).json()
    assert len(rows) == status["event_count"]
    assert [kind for kind, _, _ in rows] == ["response"] * (len(rows) - 1) + ["done"]
    types = [shown for _, shown, _ in rows]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-2:] == ["response.completed", "done"]
    texts = [data for _, shown, data in rows if shown == "response.output_text.delta"]
    summaries = [data for _, shown, data in rows if shown.endswith("reasoning_summary_text.delta")]
    arguments = [data for _, shown, data in rows if shown.endswith("function_call_arguments.delta")]
    assert texts and summaries and arguments
    assert all("delta: " in data for data in texts + summaries + arguments)
    assert texts[0].startswith("#") and " · output " in texts[0].splitlines()[0]
    added = [data for _, shown, data in rows if shown == "response.output_item.added"]
    assert any(
        "item: function_call · id fc_" in data
        and f"call_id {call['id']} · name {call['name']}" in data
        for data in added
    ), added
    completed = next(data for _, shown, data in rows if shown == "response.completed")
    assert "status completed" in completed and "usage " in completed
    assert errors == []


async def test_a_durable_stream_shows_its_path_fields_and_messages_until_closed(
    admin: Admin,
) -> None:
    """A durable stream (``/v1/ds``): its URL in the list, its own fields, its messages as
    they come (JSON values, bytes that are no UTF-8 by their size), no cancel, and the tail
    ends when it is closed."""
    async with httpx.AsyncClient(base_url=admin.base, timeout=10) as http:
        created = await http.put(
            "/v1/ds/admin/page",
            content=b'[{"step":1},"two"]',
            headers={**AUTH, "Content-Type": "application/json"},
        )
        assert created.status_code == 201, created.text
        stream_id = created.headers["X-TokenRelay-Stream-Id"]
        binary = await http.put(
            "/v1/ds/admin/bytes",
            content=b"\xff\xfe\x00",
            headers={**AUTH, "Content-Type": "application/octet-stream"},
        )
        async with chromium() as browser:
            page = await browser.new_page()
            await sign_in(page, admin)
            await page.wait_for_selector(row(stream_id))
            cells = await page.eval_on_selector_all(
                f"{row(stream_id)} td", "cells => cells.map(c => c.textContent)"
            )
            assert cells[1:3] == ["open", "/v1/ds/admin/page"]
            assert cells[4] == "2"
            await page.select_option("#status-filter", "open")
            await page.wait_for_selector(row(stream_id))

            await page.goto(f"{admin.base}/admin#/streams/{stream_id}")
            await page.wait_for_selector("#stream-status[data-status='open']")
            await page.wait_for_selector("#raw-events tr[data-type='message'] >> nth=1")
            fields = await page.eval_on_selector_all(
                "#stream-meta dt, #stream-meta dd", "nodes => nodes.map(n => n.textContent)"
            )
            shown = dict(zip(fields[::2], fields[1::2], strict=True))
            assert shown["Kind"] == "durable stream"
            assert shown["Path"] == "admin/page"
            assert shown["URL"] == "/v1/ds/admin/page"
            assert shown["Content type"] == "application/json"
            assert shown["Messages"] == "2"
            assert await page.is_hidden("#cancel")
            assert await page.inner_text("#text-heading") == "Messages"

            appended = await http.post(
                "/v1/ds/admin/page",
                content=b'{"step":3}',
                headers={**AUTH, "Content-Type": "application/json"},
            )
            assert appended.status_code == 204
            await page.wait_for_selector("#raw-events tr[data-type='message'] >> nth=2")
            closed = await http.post("/v1/ds/admin/page", headers={**AUTH, "Stream-Closed": "true"})
            assert closed.status_code == 204
            await page.wait_for_selector("#tail-state[data-state='done']")
            assert await page.inner_text("#tail-state") == "Closed"
            await page.wait_for_selector("#stream-status[data-status='completed']")
            assert await stream_text(page) == '{"step":1}\n"two"\n{"step":3}\n'
            data = await page.eval_on_selector_all(
                "#raw-events tbody tr td:nth-child(3)", "cells => cells.map(c => c.textContent)"
            )
            assert data == [
                'json · 10 bytes{"step":1}',
                'json · 5 bytes"two"',
                'json · 10 bytes{"step":3}',
            ]

            await page.goto(
                f"{admin.base}/admin#/streams/{binary.headers['X-TokenRelay-Stream-Id']}"
            )
            await page.wait_for_selector("#raw-events tr[data-type='message']")
            assert await stream_text(page) == "[3 bytes]\n"
            cell = await page.eval_on_selector(
                "#raw-events tbody tr td:nth-child(3)", "cell => cell.textContent"
            )
            assert cell == "base64 · 3 bytes//4A"
