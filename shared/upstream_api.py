"""Which upstream API a generation calls: what the gateway stores with it and the worker
obeys. (Which API a *reader* speaks is the gateway's own business.)"""

from __future__ import annotations

from typing import Final

CHAT_COMPLETIONS: Final = "chat.completions"
"""``POST {base}/chat/completions``: the default, and every stream's before there was another."""

RESPONSES: Final = "responses"
"""``POST {base}/responses``: OpenAI's Responses API, its events kept as sent."""
