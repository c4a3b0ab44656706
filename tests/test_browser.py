"""The demo page in real headless Chromium against a real gateway, worker and mock model:
the answer streams in, survives a killed gateway and a reload, stops, and shows in two tabs;
the whole answer shows: the model's thinking, tool calls, a refusal, several choices; the
page is a conversation: earlier turns stay (on the page, upstream, across a reload), answers
are Markdown, and the model's HTML cannot run."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Page

from tests.browser import ARTIFACTS, chromium
from tests.processes import API_KEY, Process, Stack, free_port, running

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

    async def sent_choices(self, stream_id: str) -> list[dict[str, Any]]:
        """What each choice of the mock's answer carried: content, reasoning, refusal,
        tool_calls ``[{id, name, arguments}]``, finish_reason."""
        (record,) = await self.mock_records(stream_id)
        choices: list[dict[str, Any]] = record["choices"]
        return choices

    async def stream_text(self, stream_id: str) -> str:
        """The text the stream kept, read from its start through the gateway."""
        async with httpx.AsyncClient() as http:
            response = await http.get(
                f"{self.base}/v1/streams/{stream_id}/events",
                params={"format": "text"},
                headers={"Authorization": f"Bearer {API_KEY}"},
            )
        return response.text


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, mock_model: str) -> Iterator[Demo]:
    """A demo gateway and a worker for the module's tests (each test's own browser keeps
    their pages apart; a stack per test cost two seconds each)."""
    with running(Stack(tmp=tmp_path_factory.mktemp("demo"), mock_url=f"{mock_model}/v1")) as stack:
        shared = Demo(stack)
        shared.start_gateway()
        stack.worker()
        yield shared


@pytest.fixture
def own_demo(stack: Stack) -> Demo:
    """A demo gateway and a worker of the test's own, for a test that kills its gateway."""
    running = Demo(stack)
    running.start_gateway()
    stack.worker()
    return running


SAVED_STREAM = "JSON.parse(sessionStorage.getItem('tokenrelay.demo') || 'null')?.streamId ?? null"


async def ask(page: Page, demo: Demo, prompt: str, model: str, preset: str = "") -> str:
    """Open the page and submit a prompt with that model (or that preset of the mock's
    options); returns the id of the stream it created."""
    await page.goto(demo.base + "/")
    await page.locator("#options summary").click()
    if preset:
        await page.select_option("#preset", preset)
    else:
        await page.fill("#model", model)
    assert await page.input_value("#model") == model
    return await send(page, prompt)


async def send(page: Page, prompt: str, model: str | None = None) -> str:
    """Submit a prompt on the page as it is (its conversation so far), with that model if
    given; returns the id of the stream it created."""
    before = await page.evaluate(SAVED_STREAM)
    if model is not None:
        if not await page.is_visible("#model"):
            await page.locator("#options summary").click()
        await page.fill("#model", model)
    await page.fill("#prompt", prompt)
    await page.click("#send")
    await page.wait_for_function(f"before => ({SAVED_STREAM}) !== before", arg=before)
    return str(await page.evaluate(SAVED_STREAM))


async def shown_turns(page: Page) -> list[list[str]]:
    """Every turn on the page, in order: its prompt and its answer (choice 0's) as shown."""
    turns: list[list[str]] = await page.eval_on_selector_all(
        "#conversation > .turn",
        """turns => turns.map(turn => [
            turn.querySelector('.question').innerText,
            turn.querySelector('.answer').innerText,
        ])""",
    )
    return turns


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


async def test_gateway_killed_mid_answer_page_reconnects_and_finishes(own_demo: Demo) -> None:
    demo = own_demo
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


async def tool_cards(page: Page, choice: int = 0) -> list[dict[str, str]]:
    """The tool-call cards of a choice as shown: name, id, arguments text, completeness."""
    cards: list[dict[str, str]] = await page.eval_on_selector_all(
        f"[data-choice='{choice}'] .tool-call",
        """cards => cards.map(card => ({
            name: card.querySelector('.tool-name').textContent,
            id: card.querySelector('.tool-id').textContent,
            arguments: card.querySelector('.tool-args').textContent,
            complete: card.dataset.complete,
        }))""",
    )
    return cards


def shown_arguments(arguments: str) -> str:
    """A complete call's arguments as the page shows them: pretty JSON, two-space indent."""
    return json.dumps(json.loads(arguments), indent=2, ensure_ascii=False)


async def test_thinking_and_parallel_tool_calls_show_exactly_what_the_model_sent(
    demo: Demo,
) -> None:
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 900, "height": 1000})
        stream_id = await ask(
            page, demo, "Weather in Zürich, and the time?", "mock?reasoning=30&tools=2&rate=30"
        )
        # While the model thinks, its thinking is open and growing; no answer yet.
        await page.wait_for_selector("#thinking[open][data-live='true']")
        thought = await page.eval_on_selector("#reasoning", "e => e.textContent")
        assert thought
        # Cards appear while their arguments stream; the thinking folds away then.
        await page.wait_for_selector("#tool-calls .tool-call[data-complete='false']")
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=ARTIFACTS / "demo-tool-calls-streaming.png")
        await page.wait_for_selector("#thinking:not([open])")
        await wait_state(page, "done")
        reasoning = await page.eval_on_selector("#reasoning", "e => e.textContent")
        cards = await tool_cards(page)
        thinking_label = await page.inner_text("#thinking summary")
        assert await page.eval_on_selector("#answer", "e => e.textContent") == ""
        assert await page.is_hidden("#refusal")
        # One click opens it again, for the screenshot.
        await page.click("#thinking summary")
        await page.wait_for_selector("#thinking[open]")
        await page.screenshot(path=ARTIFACTS / "demo-tool-calls.png", full_page=True)
    (sent,) = await demo.sent_choices(stream_id)
    assert thought and sent["reasoning"].startswith(thought)
    assert reasoning == sent["reasoning"] != ""
    assert thinking_label == f"Thinking · {len(sent['reasoning'].split())} words"
    assert sent["finish_reason"] == "tool_calls"
    assert len(sent["tool_calls"]) == 2
    assert cards == [
        {
            "name": call["name"],
            "id": call["id"],
            "arguments": shown_arguments(call["arguments"]),
            "complete": "true",
        }
        for call in sent["tool_calls"]
    ]


async def test_reload_mid_tool_calls_restores_the_whole_answer(demo: Demo) -> None:
    async with chromium() as browser:
        page = await browser.new_page()
        stream_id = await ask(page, demo, "Reload my calls", "mock?reasoning=20&tools=2&rate=20")
        await page.wait_for_selector("#tool-calls .tool-call")
        shown = await tool_cards(page)
        await page.reload()
        # At once from sessionStorage, before any event: the thinking and the cards so far.
        await page.wait_for_selector("#tool-calls .tool-call")
        restored = await tool_cards(page)
        await wait_state(page, "done", timeout_s=30)
        reasoning = await page.eval_on_selector("#reasoning", "e => e.textContent")
        cards = await tool_cards(page)
        saved = json.loads(await page.evaluate("sessionStorage.getItem('tokenrelay.demo')"))
    (sent,) = await demo.sent_choices(stream_id)
    assert len(await demo.mock_records(stream_id)) == 1  # no second generation
    assert restored[0]["name"] == shown[0]["name"]
    assert reasoning == sent["reasoning"]
    assert [(c["name"], c["id"], c["arguments"]) for c in cards] == [
        (call["name"], call["id"], shown_arguments(call["arguments"]))
        for call in sent["tool_calls"]
    ]
    assert saved["ended"] is True
    assert saved["answer"]["finishReason"] == "tool_calls"
    assert [call["arguments"] for call in saved["answer"]["toolCalls"]] == [
        call["arguments"] for call in sent["tool_calls"]
    ]


async def test_refusal_is_shown_as_a_refusal_not_as_an_answer(demo: Demo) -> None:
    async with chromium() as browser:
        page = await browser.new_page()
        stream_id = await ask(page, demo, "Something I must refuse", "mock?refusal=1&rate=40")
        await wait_state(page, "done")
        assert await page.is_visible("#refusal")
        refusal = await page.inner_text("#refusal .refusal-text")
        label = await page.eval_on_selector("#refusal .refusal-label", "e => e.textContent")
        assert await page.get_attribute("#refusal", "role") == "note"
        assert await page.eval_on_selector("#answer", "e => e.textContent") == ""
        assert await page.is_hidden("#thinking")
        assert await page.locator("#tool-calls .tool-call").count() == 0
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=ARTIFACTS / "demo-refusal.png")
    (sent,) = await demo.sent_choices(stream_id)
    assert refusal == sent["refusal"] != ""
    assert label == "Refused"


async def test_several_choices_each_shown_in_its_own_part(demo: Demo) -> None:
    async with chromium() as browser:
        page = await browser.new_page()
        stream_id = await ask(page, demo, "Three ways", "mock?tokens=30&rate=30", "choices")
        assert await page.input_value("#n") == "3"
        await wait_state(page, "done")
        texts = await page.eval_on_selector_all(
            "#choices .choice .answer", "boxes => boxes.map(box => box.innerText)"
        )
        labels = await page.eval_on_selector_all(
            "#choices .choice-label", "labels => labels.map(label => label.textContent)"
        )
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=ARTIFACTS / "demo-choices.png")
        # Asked on, the answer stays whole as an earlier turn; choice 0 carries the chat on.
        next_id = await send(page, "And on?", "mock?tokens=5&rate=100")
        await wait_state(page, "done")
        earlier = await page.eval_on_selector_all(
            "#conversation .turn.earlier .choice",
            "parts => parts.map(p => [p.querySelector('.choice-label').textContent,"
            " p.querySelector('.answer').innerText])",
        )
    sent = await demo.sent_choices(stream_id)
    assert texts == [choice["content"] for choice in sent]
    assert len(set(texts)) == 3
    assert labels == ["Choice 0", "Choice 1", "Choice 2"]
    assert earlier == [[f"Choice {i}", text] for i, text in enumerate(texts)]
    (record,) = await demo.mock_records(next_id)
    assert record["messages"][:2] == [
        {"role": "user", "content": "Three ways"},
        {"role": "assistant", "content": texts[0]},
    ]


async def test_second_prompt_sends_the_conversation_and_both_turns_stay(demo: Demo) -> None:
    async with chromium() as browser:
        page = await browser.new_page()
        first = await ask(page, demo, "What is a relay?", "mock?tokens=12&rate=100")
        await wait_state(page, "done")
        assert await page.input_value("#prompt") == ""
        second = await send(page, "And a stream?")
        await wait_state(page, "done")
        turns = await shown_turns(page)
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=ARTIFACTS / "demo-conversation.png", full_page=True)
    first_text, second_text = await demo.sent_text(first), await demo.sent_text(second)
    (first_record,) = await demo.mock_records(first)
    (second_record,) = await demo.mock_records(second)
    assert first_record["messages"] == [{"role": "user", "content": "What is a relay?"}]
    assert second_record["messages"] == [
        {"role": "user", "content": "What is a relay?"},
        {"role": "assistant", "content": first_text},
        {"role": "user", "content": "And a stream?"},
    ]
    assert turns == [["What is a relay?", first_text], ["And a stream?", second_text]]
    assert first_text != second_text != ""


async def test_new_chat_starts_over(demo: Demo) -> None:
    async with chromium() as browser:
        page = await browser.new_page()
        await ask(page, demo, "Remember me", "mock?tokens=5&rate=100")
        await wait_state(page, "done")
        await send(page, "And me")
        await wait_state(page, "done")
        await page.click("#new-chat")
        assert await shown_turns(page) == [["", "Ask something below; the answer streams in here."]]
        assert await page.is_hidden("#question")
        kept = await page.evaluate("[sessionStorage.length, location.search]")
        await page.reload()
        after_reload = await shown_turns(page)
        fresh = await send(page, "A new start")
        await wait_state(page, "done")
    assert kept == [0, ""]
    assert after_reload == [["", "Ask something below; the answer streams in here."]]
    (record,) = await demo.mock_records(fresh)
    assert record["messages"] == [{"role": "user", "content": "A new start"}]


MARKDOWN = (
    "Some **bold** words, then code:\n\n"
    "```python\nprint('<b>not bold</b>')\n```\n\n"
    "And `inline code`, " + " ".join(["then", "more", "words"] * 12) + "."
)


async def test_answer_is_markdown_rendered_while_it_streams(demo: Demo) -> None:
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 900, "height": 700})
        stream_id = await ask(page, demo, MARKDOWN, "mock?echo=1&rate=20")
        # the code block shows as one while the words after it still stream
        await page.wait_for_selector("#answer pre > code")
        state = await page.get_attribute("#state", "data-state")
        await wait_state(page, "done")
        bold = await page.eval_on_selector_all("#answer strong", "es => es.map(e => e.innerText)")
        code = await page.eval_on_selector_all(
            "#answer pre > code", "es => es.map(e => [e.className, e.textContent])"
        )
        inline = await page.eval_on_selector_all(
            "#answer :not(pre) > code", "es => es.map(e => e.textContent)"
        )
        html_bold = await page.locator("#answer b").count()
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=ARTIFACTS / "demo-markdown.png")
    assert await demo.sent_text(stream_id) == MARKDOWN
    assert state == "streaming"
    assert bold == ["bold"]
    assert code == [["language-python", "print('<b>not bold</b>')\n"]]
    assert inline == ["inline code"]
    assert html_bold == 0  # the code's HTML is shown as text


INJECTION = (
    'An image: <img src="/nowhere.png" onerror="window.injected = \'model\'">, '
    "a script: <script>window.injected = 'model'</script>, "
    "a [link](javascript:window.injected='model') and <a href=\"javascript:void(0)\">another</a>, "
    "an image that would tell a server the conversation: ![x](/leak.png?q=secret) and "
    '<p style="background: url(/leak.png?q=styled)">styled</p>.'
)


async def test_html_in_the_answer_cannot_run(demo: Demo) -> None:
    async with chromium() as browser:
        page = await browser.new_page()
        fetched: list[str] = []
        page.on("request", lambda request: fetched.append(request.url))
        await ask(page, demo, INJECTION, "mock?echo=1&rate=50")
        await wait_state(page, "done")
        await asyncio.sleep(0.5)  # time for anything the answer would load
        injected = await page.evaluate("window.injected ?? null")
        images = await page.locator("#answer img").count()
        styled = await page.locator("#answer [style]").count()
        scripts = await page.locator("#answer script").count()
        hrefs = await page.eval_on_selector_all(
            "#answer a", "links => links.map(a => a.getAttribute('href'))"
        )
        question = await page.inner_text("#question")
        fetched_for_the_answer = list(fetched)
        # The control: the same image, not sanitized, does run its handler on this page.
        await page.evaluate(
            "html => document.body.insertAdjacentHTML('beforeend', html)",
            '<img src="/nowhere.png" onerror="window.injected = \'control\'">',
        )
        await page.wait_for_function("window.injected === 'control'")
    assert injected is None
    assert images == styled == 0  # nothing in an answer makes the page fetch a URL
    assert not [url for url in fetched_for_the_answer if "leak.png" in url or "nowhere" in url]
    assert any(url.endswith("/nowhere.png") for url in fetched)  # the control's, it is seen
    assert scripts == 0
    assert not any(href and href.startswith("javascript:") for href in hrefs)
    assert question == INJECTION  # the prompt is shown as text


async def test_reload_mid_second_answer_shows_the_first_and_resumes_the_second(
    demo: Demo,
) -> None:
    async with chromium() as browser:
        page = await browser.new_page()
        first = await ask(page, demo, "First question", "mock?tokens=10&rate=100")
        await wait_state(page, "done")
        second = await send(page, "Second question", "mock?tokens=100&rate=25")
        before = await wait_for_text(page, 15)
        generations = len(await demo.mock_records())
        await page.reload()
        # At once from sessionStorage: the first turn, and the second as far as it came.
        await page.wait_for_selector("#conversation > .turn.earlier")
        restored = await shown_turns(page)
        await wait_state(page, "done", timeout_s=30)
        turns = await shown_turns(page)
        generations_after = len(await demo.mock_records())
        # and the conversation goes on from both
        third = await send(page, "Third question", "mock?tokens=5&rate=100")
        await wait_state(page, "done")
    first_text, second_text = await demo.sent_text(first), await demo.sent_text(second)
    assert generations_after == generations  # no second generation
    assert restored[0] == ["First question", first_text]
    assert restored[1][0] == "Second question"
    assert turns == [["First question", first_text], ["Second question", second_text]]
    assert second_text.startswith(before)
    (record,) = await demo.mock_records(third)
    assert record["messages"] == [
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": first_text},
        {"role": "user", "content": "Second question"},
        {"role": "assistant", "content": second_text},
        {"role": "user", "content": "Third question"},
    ]
