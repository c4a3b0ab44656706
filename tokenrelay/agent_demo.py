"""The demo's agent: application code that writes one agent run into one durable stream,
with nothing but ``shared.durable_client`` (what any application would use).

The run, as its readers see it, in order::

    {"type": "user", "text": <the question>}
    <generation 1: the model asked, with a get_weather function tool; it calls the tool>
    {"type": "tool_result", "tool_call_id", "name", "content"}   (one per call)
    <generation 2: the model asked again, with the call and its result>
    {"type": "status", "text": "done"}                             (then the stream closes)

A run that fails on the way ends with ``{"type": "status", "text": "failed", "detail"}`` and
is closed all the same, so that its readers end too.

The tool is a deterministic fake: every city is 18 °C and sunny.

With the mock model (the demo's default), generation 1 is ``mock?tools=1``: one call of
``get_weather`` whose arguments the mock builds from the tool's schema (a string argument is
the question's first words). The mock cannot read a tool result, so generation 2 is
``mock?echo=1``: the run adds a last user message, a sentence it wrote from the result, and
the mock streams that sentence back word by word. It stands in for the summary a real model
would write; the run with a real model sends no such message.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from shared.durable_client import DurableStreamWriter

log = logging.getLogger("tokenrelay.agent_demo")

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city's name."}},
            "required": ["city"],
        },
    },
}

SYSTEM = "You are a helpful assistant. Use the get_weather tool for questions about the weather."

MOCK_TOOLS = "mock?tools=1&rate=20"
"""Generation 1 with the mock: one tool call, streamed slowly enough to watch."""
MOCK_ECHO = "mock?echo=1&rate=15"
"""Generation 2 with the mock: the run's own sentence, echoed a word at a time."""


def is_mock(model: str) -> bool:
    return model == "mock" or model.startswith("mock?")


def get_weather(arguments: str) -> dict[str, Any]:
    """The fake tool: the city the call names (as given), 18 °C and sunny."""
    try:
        parsed = json.loads(arguments)
    except ValueError:
        parsed = None
    city = parsed.get("city") if isinstance(parsed, dict) else None
    return {
        "city": city if isinstance(city, str) else "unknown",
        "temperature_c": 18,
        "sky": "sunny",
    }


def mock_summary(results: list[dict[str, Any]]) -> str:
    """What the echoing mock says in place of a model's summary of ``results``."""
    said = " ".join(
        f"The weather tool reports {r['temperature_c']} °C and {r['sky']} skies for “{r['city']}”."
        for r in results
    )
    return f"{said} Enjoy the sunshine, and take a hat if you go out at noon."


async def run_agent(
    base_url: str,
    path: str,
    api_key: str | None,
    question: str,
    model: str,
    *,
    ttl_s: int | None = None,
) -> None:
    """Run the agent on ``question`` into the durable stream at ``path`` (created here, or
    confirmed if it exists with the same ``ttl_s``), through the gateway at ``base_url``."""
    async with DurableStreamWriter(base_url, path, api_key=api_key) as run:
        await run.create(ttl_s=ttl_s)
        try:
            await _steps(run, question, model)
        except Exception as error:
            log.warning("agent run %s failed: %s", path, error)
            await run.append({"type": "status", "text": "failed", "detail": str(error)[:500]})
            await run.close()
            raise
        await run.close()


async def _steps(run: DurableStreamWriter, question: str, model: str) -> None:
    mock = is_mock(model)
    await run.append({"type": "user", "text": question})
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": question},
    ]
    first = await run.generate(messages, model=MOCK_TOOLS if mock else model, tools=[WEATHER_TOOL])
    calls = first.choice(0).tool_calls
    if not calls:  # the model answered without the tool: that is the run
        await run.append({"type": "status", "text": "done"})
        return
    messages.append(first.choice(0).as_message())
    results = []
    for call in calls:
        name = call.get("function", {}).get("name", "")
        if name == "get_weather":
            result = get_weather(call.get("function", {}).get("arguments", ""))
            results.append(result)
            content = json.dumps(result, ensure_ascii=False)
        else:
            content = json.dumps({"error": f"no tool named {name!r}"})
        await run.append(
            {
                "type": "tool_result",
                "tool_call_id": call.get("id"),
                "name": name,
                "content": content,
            }
        )
        messages.append({"role": "tool", "tool_call_id": call.get("id"), "content": content})
    if mock:  # the mock cannot read the results: it echoes the run's sentence about them
        messages.append({"role": "user", "content": mock_summary(results)})
    await run.generate(messages, model=MOCK_ECHO if mock else model, tools=[WEATHER_TOOL])
    await run.append({"type": "status", "text": "done"})
