"""The React example (``examples/react-chat/``: ``useChat`` from ``@ai-sdk/react`` with a
``DefaultChatTransport`` on ``/v1/chats``, built by ``make example``) in real headless
Chromium against a real gateway, worker and mock model: a turn streams in, a reload mid-answer
shows the earlier turns and resumes the answer, a second tab follows it, an answer that ends
between the page's two requests shows whole, Stop stops the generation, reasoning and tool
calls show, and a plain static server serves it for a gateway on another origin."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from playwright.async_api import BrowserContext, Page, Response, Route

from tests.browser import ARTIFACTS, chromium
from tests.processes import API_KEY, REPO, Process, Stack, free_port, wait_http

pytestmark = pytest.mark.timeout(60)

DIST = REPO / "examples" / "react-chat" / "dist"
STATIC_PORT = free_port()
"""Where a plain static server serves ``dist/``, an origin the gateway allows."""
STACK_ENV = {
    "TOKENRELAY_DEMO": "true",
    "TOKENRELAY_CORS_ORIGINS": f"http://127.0.0.1:{STATIC_PORT}",
}

# Every text the page's last answer shows, in order, as the user would see it change.
WATCH_ANSWER = """
window.answersSeen = [];
new MutationObserver(() => {
  const last = [...document.querySelectorAll(".message[data-role=assistant]")].at(-1);
  if (!last) return;
  const text = [...last.querySelectorAll("[data-part=text]")].map((e) => e.textContent).join("");
  const seen = window.answersSeen.at(-1);
  if (seen?.id !== last.dataset.messageId || seen?.text !== text) {
    window.answersSeen.push({ id: last.dataset.messageId, text });
  }
}).observe(document, { subtree: true, childList: true, characterData: true });
"""


class Example:
    """The built example served by a demo-mode gateway, and what the mock model recorded."""

    def __init__(self, stack: Stack, base: str) -> None:
        self.base = base
        self.mock = stack.mock_url.removesuffix("/v1")

    def url(self, **params: str) -> str:
        return f"{self.base}/examples/react-chat/" + (f"?{urlencode(params)}" if params else "")

    async def chat_token(self, chat_id: str) -> str:
        """What the application's backend does with its API key."""
        async with httpx.AsyncClient() as http:
            minted = await http.post(
                f"{self.base}/v1/chats/{chat_id}/token",
                headers={"Authorization": f"Bearer {API_KEY}"},
            )
        assert minted.status_code == 201, minted.text
        return str(minted.json()["token"])

    async def record(self, stream_id: str) -> dict[str, Any]:
        async with httpx.AsyncClient() as http:
            (record,) = (
                await http.get(f"{self.mock}/_mock/requests", params={"stream": stream_id})
            ).json()
        assert isinstance(record, dict)
        return record

    async def finished(self, stream_id: str, timeout_s: float = 20) -> dict[str, Any]:
        """The mock's record of that stream once it has sent all it had to send."""
        deadline = time.monotonic() + timeout_s
        while True:
            async with httpx.AsyncClient() as http:
                records = (
                    await http.get(f"{self.mock}/_mock/requests", params={"stream": stream_id})
                ).json()
            if records and records[0]["completed"]:
                record: dict[str, Any] = records[0]
                return record
            assert time.monotonic() < deadline, f"the mock has not finished {stream_id}"
            await asyncio.sleep(0.1)

    async def ended(self, stream_id: str, timeout_s: float = 20) -> None:
        """Until the stream has its terminal event."""
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient() as http:
            while (
                await http.get(
                    f"{self.base}/v1/streams/{stream_id}",
                    headers={"Authorization": f"Bearer {API_KEY}"},
                )
            ).json()["status"] in ("queued", "running"):
                assert time.monotonic() < deadline, f"{stream_id} has not ended"
                await asyncio.sleep(0.05)

    async def generations_asked(self, prompt: str) -> int:
        """How many requests the mock got whose last message is this prompt."""
        async with httpx.AsyncClient() as http:
            records = (await http.get(f"{self.mock}/_mock/requests")).json()
        return sum(1 for record in records if (record["messages"] or [{}])[-1] == user(prompt))


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


@pytest.fixture
async def example(shared_stack: tuple[Stack, str]) -> AsyncIterator[Example]:
    assert (DIST / "index.html").is_file(), f"{DIST} is not built: run `make example`"
    yield Example(*shared_stack)


async def messages(page: Page) -> list[dict[str, str]]:
    """The conversation as the page shows it: role, message id, text."""
    shown: list[dict[str, str]] = await page.eval_on_selector_all(
        ".message",
        """messages => messages.map(m => ({
            role: m.dataset.role,
            id: m.dataset.messageId,
            text: [...m.querySelectorAll("[data-part=text]")].map(e => e.textContent).join(""),
        }))""",
    )
    return shown


async def last_answer(page: Page) -> str:
    return (await messages(page))[-1]["text"]


async def wait_answer(page: Page, text: str, timeout_s: float = 20) -> None:
    """Until the page's last answer is exactly ``text`` and the page is ready for more."""
    await page.wait_for_function(
        """text => {
            const answers = document.querySelectorAll(".message[data-role=assistant]");
            const last = answers[answers.length - 1];
            return last && [...last.querySelectorAll("[data-part=text]")]
                .map(e => e.textContent).join("") === text
              && document.querySelector("#status").dataset.status === "ready";
        }""",
        arg=text,
        timeout=timeout_s * 1000,
    )


async def wait_growing(page: Page, min_chars: int) -> str:
    await page.wait_for_function(
        """min => {
            const answers = document.querySelectorAll(".message[data-role=assistant]");
            const last = answers[answers.length - 1];
            return last && last.textContent.length >= min
              && document.querySelector("#status").dataset.status === "streaming";
        }""",
        arg=min_chars,
    )
    return await last_answer(page)


async def send(page: Page, prompt: str, model: str) -> Response:
    """Type a prompt and send it; the answer's response (its stream id in a header)."""
    await page.fill("#model", model)
    await page.fill("#prompt", prompt)
    async with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith("/v1/chats")
    ) as answer:
        await page.click("#send")
    return await answer.value


async def open_chat(context: BrowserContext, url: str) -> tuple[Page, str | None]:
    """A tab on the chat; the stream its resume found (None: nothing to resume)."""
    page = await context.new_page()
    async with page.expect_response(lambda r: r.url.endswith("/stream")) as resumed:
        await page.goto(url)
    return page, (await resumed.value).headers.get("x-tokenrelay-stream-id")


async def test_two_turns_a_reload_mid_answer_and_a_second_tab(example: Example) -> None:
    chat_id = f"react-{time.monotonic_ns()}"
    token = await example.chat_token(chat_id)
    url = example.url(chat=chat_id, token=token)
    first_prompt, second_prompt = "Tell me a short story", "And a longer one, slowly"
    async with chromium() as browser:
        context = await browser.new_context(viewport={"width": 900, "height": 900})
        await context.add_init_script(WATCH_ANSWER)
        page, resumed = await open_chat(context, url)
        assert resumed is None  # a new chat: nothing in progress (204)
        await page.wait_for_selector("#status[data-status=ready]")

        # One whole turn: the answer grows, then ends with what the model sent.
        answer = await send(page, first_prompt, "mock?tokens=40&rate=40")
        first_stream = answer.headers["x-tokenrelay-stream-id"]
        assert (await answer.request.all_headers())["authorization"] == f"Bearer {token}"
        partial = await wait_growing(page, 10)
        first = (await example.finished(first_stream))["sent_text"]
        await wait_answer(page, first)
        assert len(partial) < len(first) and first.startswith(partial)

        # The second turn, slowly; reloaded mid-answer and followed in a second tab.
        answer = await send(page, second_prompt, "mock?tokens=180&rate=30")
        second_stream = answer.headers["x-tokenrelay-stream-id"]
        await wait_growing(page, 20)
        answer_id = (await messages(page))[-1]["id"]
        other, other_resumed = await open_chat(context, page.url)
        before_reload = await last_answer(page)
        async with page.expect_response(lambda r: r.url.endswith("/stream")) as resume:
            await page.reload()
        assert (await resume.value).headers["x-tokenrelay-stream-id"] == second_stream
        assert other_resumed == second_stream
        assert not (await example.record(second_stream))["completed"]  # still mid-answer
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=ARTIFACTS / "react-chat-resumed.png")
        second = (await example.finished(second_stream))["sent_text"]
        await asyncio.gather(wait_answer(page, second), wait_answer(other, second))
        shown = [await messages(tab) for tab in (page, other)]
        seen = [await tab.evaluate("window.answersSeen") for tab in (page, other)]
        await page.screenshot(path=ARTIFACTS / "react-chat.png", full_page=True)

    assert len(before_reload) >= 20
    conversation = [
        ("user", first_prompt),
        ("assistant", first),
        ("user", second_prompt),
        ("assistant", second),
    ]
    for tab in shown:
        assert [(m["role"], m["text"]) for m in tab] == conversation
        assert tab[-1]["id"] == answer_id  # the resumed answer replaced the one shown
    assert shown[0] == shown[1]
    # While it resumed, each tab's answer only ever showed a beginning of the model's text:
    # nothing twice, nothing else.
    for tab_seen in seen:
        resumed_texts = [s["text"] for s in tab_seen if s["id"] == answer_id]
        assert resumed_texts[-1] == second
        assert all(second.startswith(text) for text in resumed_texts)
    assert await example.generations_asked(second_prompt) == 1  # the reload asked for no other


async def test_an_answer_that_ends_between_the_read_and_the_resume_shows_whole(
    example: Example,
) -> None:
    """The page reads the conversation (the answer unfinished), then asks for the answer in
    progress: if it ended in between, the resume finds none (204); the page reads again."""
    chat_id = f"react-{time.monotonic_ns()}"
    async with chromium() as browser:
        page = await browser.new_page()
        await page.goto(example.url(chat=chat_id))
        await page.wait_for_selector("#status[data-status=ready]")
        # long enough that a second page opens while it streams, even on a busy machine
        answer = await send(page, "Finish while I look away", "mock?tokens=200&rate=40")
        stream_id = answer.headers["x-tokenrelay-stream-id"]
        await wait_growing(page, 10)

        async def resume_late(route: Route) -> None:
            await example.ended(stream_id)
            await route.continue_()

        late = await browser.new_page()
        await late.route("**/stream", resume_late)
        async with (
            late.expect_response(lambda r: r.url.endswith(f"/v1/chats/{chat_id}")) as read,
            late.expect_response(lambda r: r.url.endswith("/stream")) as resume,
        ):
            await late.goto(example.url(chat=chat_id))
        unfinished = (await (await read.value).json())["messages"][-1]
        assert (await resume.value).status == 204
        sent = (await example.finished(stream_id))["sent_text"]
        await wait_answer(late, sent, timeout_s=5)
    assert unfinished["parts"][-1]["state"] == "streaming"
    assert (
        sent.startswith(unfinished["parts"][-1]["text"]) and unfinished["parts"][-1]["text"] != sent
    )


async def test_stop_ends_the_generation(example: Example) -> None:
    async with chromium() as browser:
        page = await browser.new_page()
        # no chat id, no token (demo mode): a new chat, its id put in the URL
        await page.goto(example.url())
        await page.wait_for_selector("#status[data-status=ready]")
        (chat_id,) = parse_qs(urlsplit(page.url).query)["chat"]
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,128}", chat_id)
        answer = await send(page, "Go on and on", "mock?tokens=400&rate=25")
        stream_id = answer.headers["x-tokenrelay-stream-id"]
        await wait_growing(page, 15)
        async with page.expect_response(lambda r: r.url.endswith("/stop")) as stopped:
            await page.click("#stop")
        assert (await stopped.value).status == 202
        assert await (await stopped.value).json() == {"id": chat_id, "stopped": True}
        await page.wait_for_selector("#status[data-status=ready]")
        assert await page.is_enabled("#send")
        assert await page.is_disabled("#stop")
        record = await example.record(stream_id)
        for _ in range(30):  # the worker closes the upstream within a second
            if record["closed_by_client_at"] is not None:
                break
            await asyncio.sleep(0.1)
            record = await example.record(stream_id)
        assert record["closed_by_client_at"] is not None
        assert record["tokens_sent"] < 400

        # After a reload, the answer as far as it went, not resumed; "New chat" leaves it.
        await example.ended(stream_id)
        async with page.expect_response(lambda r: r.url.endswith("/stream")) as resume:
            await page.reload()
        assert (await resume.value).status == 204
        await page.wait_for_selector(".message[data-role=assistant]")
        kept = await last_answer(page)
        await page.click("#new-chat")
        await page.wait_for_selector("#status[data-status=ready]")
        (new_chat_id,) = parse_qs(urlsplit(page.url).query)["chat"]
        assert new_chat_id != chat_id
        assert await page.locator(".message").count() == 0
    assert kept and record["sent_text"].startswith(kept)


async def test_reasoning_and_tool_calls_show(example: Example) -> None:
    async with chromium() as browser:
        page = await browser.new_page()
        await page.goto(example.url(chat=f"react-{time.monotonic_ns()}"))
        await page.wait_for_selector("#status[data-status=ready]")
        answer = await send(page, "Weather in Lyon?", "mock?reasoning=20&tools=1&rate=0")
        record = await example.finished(answer.headers["x-tokenrelay-stream-id"])
        await page.wait_for_selector(".tool-call[data-state=input-available]")
        reasoning = await page.eval_on_selector(".reasoning .text", "e => e.textContent")
        folded = await page.eval_on_selector(".reasoning", "e => !e.open")
        calls = await page.eval_on_selector_all(
            ".tool-call",
            """calls => calls.map(c => ({
                id: c.dataset.toolCallId,
                name: c.querySelector(".tool-name").textContent,
                input: JSON.parse(c.querySelector(".tool-input").textContent),
            }))""",
        )
    (sent,) = record["choices"]
    assert reasoning == sent["reasoning"] != ""
    assert folded  # once the model has thought
    assert calls == [
        {"id": call["id"], "name": call["name"], "input": json.loads(call["arguments"])}
        for call in sent["tool_calls"]
    ]


async def test_any_static_server_serves_it_for_a_gateway_elsewhere(
    example: Example, tmp_path: Path
) -> None:
    static = Process(
        "static",
        [sys.executable, "-m", "http.server", str(STATIC_PORT), "--bind", "127.0.0.1"],
        {"PATH": "/usr/bin:/bin"},
        tmp_path / "static.log",
    )
    static.start()
    try:
        page_url = f"http://127.0.0.1:{STATIC_PORT}/examples/react-chat/dist/"
        wait_http(page_url, static)
        async with chromium() as browser:
            page = await browser.new_page()
            chat_id = f"react-{time.monotonic_ns()}"
            await page.goto(f"{page_url}?{urlencode({'chat': chat_id, 'gateway': example.base})}")
            await page.wait_for_selector("#status[data-status=ready]")
            answer = await send(page, "From elsewhere", "mock?tokens=10&rate=0")
            sent = (await example.finished(answer.headers["x-tokenrelay-stream-id"]))["sent_text"]
            await wait_answer(page, sent)
            assert answer.url == f"{example.base}/v1/chats"
    finally:
        static.stop()
