"""The agent page in real headless Chromium against a real gateway (demo on, durable streams
behind API keys and read tokens), worker and mock model: a run started from the page shows
the question, the model's tool call, the application's tool result, the model's answer and
"done", each once and exactly as the durable stream holds them, though the page was reloaded
in the middle of the second generation; after the reload it read on from the offset it had
kept, not from the start. And ``POST /demo/agent`` itself: no API key configured is a clear
503, each start counts against the demo's per-address quota."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.async_api import Page, Request

from shared.completion import CompletionSoFar
from shared.durable_client import DurableStreamReader
from tests.browser import ARTIFACTS, chromium
from tests.processes import Stack
from tokenrelay.agent_demo import get_weather, mock_summary

pytestmark = pytest.mark.timeout(90)

QUESTION = "What is the weather in Zürich?"
KEPT = "JSON.parse(sessionStorage.getItem('tokenrelay.agent.' + {path}) || 'null')"


def _pretty(text: str) -> str:
    """JSON text as the page shows it whole: two-space indent."""
    return json.dumps(json.loads(text), indent=2, ensure_ascii=False)


def _generations(messages: list[dict[str, Any]]) -> dict[str, CompletionSoFar]:
    """Each generation's answer, rebuilt from the stream's messages alone, in order."""
    answers: dict[str, CompletionSoFar] = {}
    for message in messages:
        if "generation" in message:
            data = {k: v for k, v in message.items() if k not in ("type", "generation")}
            answers.setdefault(message["generation"], CompletionSoFar()).add(message["type"], data)
    return answers


async def _kept(page: Page, path: str) -> dict[str, Any]:
    kept: dict[str, Any] = await page.evaluate(KEPT.format(path=json.dumps(path)))
    return kept


async def _timeline(page: Page) -> list[dict[str, Any]]:
    """Every item of the timeline as shown (textContent: no styling in the way)."""
    items: list[dict[str, Any]] = await page.eval_on_selector_all(
        "#timeline > .event",
        """items => items.map(item => {
            const text = selector => item.querySelector(selector)?.textContent ?? null;
            const kind = item.classList[1];
            if (kind === 'generation') return {
                kind, id: item.dataset.generation, ended: item.dataset.ended,
                text: text('.agent-text'),
                calls: [...item.querySelectorAll('.tool-call')].map(card => ({
                    kind: card.querySelector('.tool-kind').innerText,
                    name: card.querySelector('.tool-name').textContent,
                    id: card.querySelector('.tool-id').textContent,
                    arguments: card.querySelector('.tool-args').textContent,
                    complete: card.dataset.complete,
                })),
            };
            if (kind === 'tool-result') return {
                kind, label: item.querySelector('.tool-kind').innerText,
                name: text('.tool-name'), id: text('.tool-id'), content: text('.tool-content'),
            };
            if (kind === 'status') return {kind, text: text('.status-text')};
            return {kind, text: text('.question')};
        })""",
    )
    return items


async def test_an_agent_run_reloaded_mid_answer_shows_each_part_once_exactly(
    stack: Stack,
) -> None:
    _, base = stack.gateway(TOKENRELAY_DEMO="true")
    stack.worker()
    reads: list[str] = []

    def record(request: Request) -> None:
        if "/v1/ds/" in request.url:
            reads.append(request.url)

    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 900, "height": 1100})
        page.on("request", record)
        await page.goto(base + "/agent")
        await page.fill("#question", QUESTION)
        await page.click("#run")
        await page.wait_for_url("**/agent?run=*")
        path = parse_qs(urlsplit(page.url).query)["run"][0]
        # the second generation has begun to stream: reload in its middle
        await page.wait_for_function(
            """() => {
                const second = document.querySelectorAll('#timeline .generation')[1];
                const text = second && second.querySelector('.agent-text').textContent;
                return text && text.split(' ').length >= 3;
            }"""
        )
        before = await _kept(page, path)
        reads_before, shown_before = len(reads), await _timeline(page)
        await page.reload()
        await page.wait_for_selector("#timeline .status[data-status='done']", timeout=30_000)
        await page.wait_for_selector("#state[data-state='done']")
        shown = await _timeline(page)
        after = await _kept(page, path)
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=ARTIFACTS / "agent-run.png", full_page=True)

    token = after["token"]
    url = f"{base}/v1/ds/{path}"
    async with httpx.AsyncClient() as http:
        stored = (await http.get(url, params={"offset": "-1", "token": token})).json()
        resumed_from = parse_qs(urlsplit(reads[reads_before]).query)["offset"][0]
        read_on = (await http.get(url, params={"offset": resumed_from, "token": token})).json()

    # what the durable stream holds: the run, generations rebuilt from it alone
    own = [m for m in stored if "generation" not in m]
    assert [m["type"] for m in own] == ["user", "tool_result", "status"]
    first_id, second_id = _generations(stored)
    first, second = _generations(stored).values()
    (call,) = first.choice(0).tool_calls
    result = own[1]
    assert call["function"]["name"] == "get_weather" == result["name"]
    assert result["tool_call_id"] == call["id"]
    arguments = json.loads(call["function"]["arguments"])
    weather = {"city": arguments["city"], "temperature_c": 18, "sky": "sunny"}
    assert get_weather(call["function"]["arguments"]) == weather == json.loads(result["content"])
    assert second.text == mock_summary([weather])

    # the page shows each part once, exactly as stored
    assert shown == [
        {"kind": "user", "text": QUESTION},
        {
            "kind": "generation",
            "id": first_id,
            "ended": "true",
            "text": "",
            "calls": [
                {
                    "kind": "TOOL CALL",
                    "name": "get_weather",
                    "id": call["id"],
                    "arguments": _pretty(call["function"]["arguments"]),
                    "complete": "true",
                }
            ],
        },
        {
            "kind": "tool-result",
            "label": "TOOL RESULT",
            "name": "get_weather",
            "id": call["id"],
            "content": _pretty(result["content"]),
        },
        {"kind": "generation", "id": second_id, "ended": "true", "text": second.text, "calls": []},
        {"kind": "status", "text": "done"},
    ]

    # the reload came in the middle of the second generation...
    assert shown_before[:3] == shown[:3]
    before_text = shown_before[3]["text"]
    assert before_text and second.text.startswith(before_text) and before_text != second.text
    # ...and the page read on from the offset it had kept: not from the start, nothing twice
    assert parse_qs(urlsplit(reads[0]).query)["offset"] == ["-1"]
    assert resumed_from not in ("-1", "now") and resumed_from >= before["offset"]
    assert read_on[0].get("generation") == second_id
    assert stored[-len(read_on) :] == read_on and len(read_on) < len(stored)
    assert after["messages"] == stored and after["closed"] is True
    assert all("token=" in read for read in reads)


async def test_starting_a_run_takes_an_api_key_and_counts_against_the_demo_quota(
    stack: Stack,
) -> None:
    _, keyless = stack.gateway(TOKENRELAY_DEMO="true", TOKENRELAY_API_KEYS="")
    _, limited = stack.gateway(TOKENRELAY_DEMO="true", TOKENRELAY_DEMO_CREATES_PER_MINUTE="1")
    stack.worker()
    async with httpx.AsyncClient() as http:
        no_key = await http.post(f"{keyless}/demo/agent", json={"question": QUESTION})
        empty = await http.post(f"{limited}/demo/agent", json={"question": "  "})
        started = await http.post(f"{limited}/demo/agent", json={"question": QUESTION})
        again = await http.post(f"{limited}/demo/agent", json={"question": QUESTION})
    assert no_key.status_code == 503
    assert no_key.json()["error"]["code"] == "demo_agent_unavailable"
    assert "TOKENRELAY_API_KEYS" in no_key.json()["error"]["message"]
    assert empty.status_code == 422
    assert started.status_code == 201, started.text
    assert again.status_code == 429 and again.headers["Retry-After"]
    # the run that started goes to its end: a reader with its token sees it whole
    run = started.json()
    assert run["path"].startswith("demo/agent-")
    reader = DurableStreamReader(limited, run["path"], token=run["read_token"])
    try:
        messages = [message async for _, message in reader.follow()]
    finally:
        await reader.aclose()
    assert [m["type"] for m in messages if "generation" not in m] == [
        "user",
        "tool_result",
        "status",
    ]
    assert [m["finish_reason"] for m in messages if m["type"] == "done"] == ["tool_calls", "stop"]
