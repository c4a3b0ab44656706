"""``tokenrelay dev`` as a new user starts it: no Redis of theirs, no OpenAI key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from tests.processes import REPO, Process, free_port, wait_http


def start_dev(tmp_path: Path, *, path: str) -> tuple[Process, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENRELAY_", "OPENAI_"))}
    # a Redis URL nothing listens on: dev mode must fall back to a private Redis
    env.update(
        PATH=path, PYTHONUNBUFFERED="1", TOKENRELAY_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"
    )
    process = Process(
        "dev",
        [sys.executable, "-m", "tokenrelay.cli", "dev", "--port", str(port)],
        env,
        tmp_path / "dev.log",
    ).start()
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/healthz", process, timeout=30)
    return process, base


def curl(*args: str) -> str:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "20", *args], check=True, capture_output=True, text=True
    ).stdout


@pytest.mark.parametrize("redis", ["redis-server", "fakeredis"])
def test_dev_streams_an_answer_to_curl(tmp_path: Path, redis: str) -> None:
    path = os.environ["PATH"] if redis == "redis-server" else str(tmp_path)  # no redis-server
    process, base = start_dev(tmp_path, path=path)
    try:
        created = json.loads(
            curl(
                f"{base}/v1/streams",
                "-H",
                "content-type: application/json",
                "-d",
                '{"model":"mock?tokens=25&rate=100",'
                '"messages":[{"role":"user","content":"Hello"}]}',
            )
        )
        assert created["status"] == "queued"
        sse = curl("-N", base + created["events_url"])
        text = curl("-N", base + created["events_url"] + "&format=text")
        # the OpenAI SDK with the key the banner names: a tool call and reasoning, no key
        sdk = openai.OpenAI(base_url=f"{base}/v1", api_key="dev", max_retries=0)
        answer = sdk.chat.completions.create(
            model="mock?reasoning=5&tools=1&rate=0",
            messages=[{"role": "user", "content": "Weather?"}],
        )
        # docs/RESPONSES.md's example, as written, against this dev server
        example = (REPO / "docs" / "RESPONSES.md").read_text().split("```python\n")[1]
        scope: dict[str, object] = {}
        exec(example.split("```")[0].replace("http://127.0.0.1:8000", base), scope)
        resumed = scope["client"].responses.retrieve(scope["response_id"])  # type: ignore[attr-defined]
        log = process.log_text()
    finally:
        process.stop()

    assert sse.startswith("retry: 1000\n\n")
    events = [block for block in sse.split("\n\n") if block.startswith("id: ")]
    assert events[-1].splitlines()[1] == "event: done"
    data = [json.loads(block.splitlines()[2].removeprefix("data: ")) for block in events[:-1]]
    tokens = [part.get("text", part.get("content")) or "" for part in data]
    assert "".join(tokens) == text and len(text) > 25
    [call] = answer.choices[0].message.tool_calls or []
    assert call.type == "function" and json.loads(call.function.arguments)
    assert answer.choices[0].finish_reason == "tool_calls"
    assert 'api_key="dev"' in log
    assert resumed.status in ("cancelled", "completed") and scope["last"] == 10
    assert f"a private {redis}" in log
    assert "BUILT-IN MOCK MODEL" in log
    assert "auth off" in log and "bound to 127.0.0.1" in log
    assert process.popen is not None and process.popen.returncode == 0
