"""The ``ai`` npm package (the Vercel AI SDK) drives ``/v1/chats`` as a browser's ``useChat``
would, and shows what the model said (``tests/node/chats/chats.test.mjs``, run with
``node --test`` against the mock model, a gateway with API keys and a worker).

Every test takes the documented browser path: a ``DefaultChatTransport`` with a chat token
minted with the API key in its ``headers`` and ``model`` in its ``body``. The node tests show:

- a: an answer read in part, then aborted (a closed tab), is resumed by
  ``reconnectToStream`` from its ``start`` (the same ``messageId``, the chunks already read
  again), and ``readUIMessageStream`` makes it a message of that id whose text is exactly the
  mock's; the abort did not stop the generation (the upstream completed, never closed early).
- b: the same for a tool call, with ``tools`` in the body in OpenAI's format: a
  ``tool-lookup_order`` part, ``input-available``, the upstream's call id and its parsed
  arguments; ``finishReason`` ``tool-calls``.
- c: the same with reasoning: a ``reasoning`` part with the mock's reasoning, then the text.
- d: ``reconnectToStream`` is ``null`` (204) for a chat whose answer has finished and for a
  chat id never used.
- e: ``POST /v1/chats/{id}/stop`` (202, ``stopped: true``) closes the upstream within a second;
  the original stream and one resumed before the stop both get the same chunks, ending with
  ``finish-step``, ``abort``, ``[DONE]``, and close; nothing is left to resume; a second stop
  answers ``stopped: false``.
- f: a chat token is refused (403 ``forbidden``) for another chat's send, resume and stop, and
  opens its own; no credentials is 401 ``unauthorized``.

Every chunk received is checked against the fields AI SDK 5's strict schema allows for its
type (AI SDK 7, pinned in ``tests/node/package.json``, accepts extra fields; an AI SDK 5 page
would reject the stream). ``ai`` 7 declares ``node >= 22`` but runs these tests on node 20.
``npm ci --prefix tests/node`` installs it (``make test`` does).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.node_tests import gateway_on, node_with, run_node_tests
from tests.processes import API_KEY, REPO, Stack, mock_model_process

CHATS_TESTS = REPO / "tests" / "node" / "chats" / "chats.test.mjs"
NODE_TESTS_WRITTEN = 8
"""The tests in chats.test.mjs: a, b, c, d1, d2, e, f1, f2."""


@pytest.fixture
def chats_stack(tmp_path: Path) -> Iterator[tuple[str, str, Stack]]:
    """(mock, gateway, stack): base URLs without ``/v1``; the gateway takes API keys and chat
    tokens (no demo mode)."""
    with mock_model_process(tmp_path) as (_, mock), gateway_on(mock, tmp_path) as (gateway, stack):
        yield mock, gateway, stack


@pytest.mark.timeout(90)
def test_the_ai_sdk_chat_transport_sends_resumes_and_stops_chats_through_tokenrelay(
    request: pytest.FixtureRequest,
) -> None:
    node = node_with("ai")  # before starting anything
    mock, gateway, stack = request.getfixturevalue("chats_stack")
    env = {
        "TOKENRELAY_GATEWAY_URL": gateway,
        "TOKENRELAY_MOCK_URL": mock,
        "TOKENRELAY_API_KEY": API_KEY,
    }
    counts = run_node_tests(node, [CHATS_TESTS], env, stack, timeout=75)
    assert counts == {
        "tests": NODE_TESTS_WRITTEN,
        "pass": NODE_TESTS_WRITTEN,
        "fail": 0,
        "cancelled": 0,
        "skipped": 0,
        "todo": 0,
    }, counts
