"""Who may do what: API keys, per-stream read tokens, per-chat tokens, the demo allowance.

Tokens are stateless (HMAC-signed with ``TOKENRELAY_SIGNING_KEY``), so any gateway
replica verifies a token another one issued. A token names what it covers and its expiry:
``<subject>.<expiry, unix seconds>.<signature>``, the subject a stream id, or
``chat:<chat id>`` for a chat token (no stream id has a colon, so neither passes for the
other).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from starlette.requests import Request

from shared.errors import AdminDisabled, Forbidden, Unauthorized

CREDENTIAL_CHECKS: set[Callable[[Request], object]] = set()
"""The route dependencies that check a request's credentials (``credential_check``)."""

T = TypeVar("T")


def credential_check(check: Callable[[Request], T]) -> Callable[[Request], T]:
    """Marks a route dependency as the route's credential check. FastAPI runs dependencies
    before it validates a body, but decodes a JSON body before both: the answer to a body
    that is not JSON runs the marked checks first (``gateway.errors``), so that credentials
    come first whatever the body is."""
    CREDENTIAL_CHECKS.add(check)
    return check


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. ``stream_id`` is set for a read token, which covers one stream."""

    name: str
    stream_id: str | None = None
    anonymous: bool = False
    """A demo-mode caller without a key, known only by its address."""
    chat_id: str | None = None
    """Set for a chat token, which covers one AI SDK chat."""

    @property
    def is_api_client(self) -> bool:
        return self.stream_id is None and self.chat_id is None

    def require_stream(self, stream_id: str) -> None:
        if self.stream_id is not None and self.stream_id != stream_id:
            raise Forbidden("this read token is for another stream")

    def require_chat(self, chat_id: str) -> None:
        if self.chat_id is not None and self.chat_id != chat_id:
            raise Forbidden("this chat token is for another chat")


CHAT_SUBJECT = "chat:"
"""What a chat token's subject starts with."""


class ReadTokens:
    """Signs read tokens with ``signing_key``; verifies them with it or with any of
    ``previous_keys`` (a rotated-out key, accepted until its tokens have expired)."""

    def __init__(self, signing_key: bytes, ttl_s: int, previous_keys: Sequence[bytes] = ()) -> None:
        self._key = signing_key
        self._keys = (signing_key, *previous_keys)
        self.ttl_s = ttl_s

    @staticmethod
    def _signature(key: bytes, stream_id: str, expires: int) -> str:
        mac = hmac.new(key, f"{stream_id}.{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def issue(self, stream_id: str, now: float | None = None) -> str:
        expires = int((now if now is not None else time.time()) + self.ttl_s)
        return f"{stream_id}.{expires}.{self._signature(self._key, stream_id, expires)}"

    def verify(self, token: str) -> str:
        """The stream id the token covers; ``Unauthorized`` if forged, mangled or expired."""
        parts = token.split(".")
        # isascii(): str.isdigit() is also true of "²" (which int() rejects) and "٣"
        if len(parts) != 3 or not (parts[1].isascii() and parts[1].isdigit()) or len(parts[1]) > 12:
            raise Unauthorized("malformed read token")
        stream_id, expires = parts[0], int(parts[1])
        # bytes: compare_digest raises TypeError on a str with non-ASCII characters
        presented = parts[2].encode()
        valid = False
        for key in self._keys:  # no early exit: the time taken says nothing
            expected = self._signature(key, stream_id, expires).encode()
            valid |= hmac.compare_digest(presented, expected)
        if not valid:
            raise Unauthorized("invalid read token")
        if expires < time.time():
            raise Unauthorized("read token expired")
        return stream_id


class Authenticator:
    """Turns a request's credentials into a ``Principal``."""

    def __init__(
        self, api_keys: list[str], tokens: ReadTokens, *, demo: bool, admin_token: str | None
    ) -> None:
        self._api_keys = [key.encode() for key in api_keys]
        self.tokens = tokens
        self.demo = demo
        self._admin_token = admin_token.encode() if admin_token else None

    def _api_key_name(self, presented: str) -> str | None:
        candidate = presented.encode()
        found = None
        for key in self._api_keys:  # no early exit: the time taken says nothing
            if hmac.compare_digest(candidate, key):
                found = key
        if found is None:
            return None
        return "key:" + hashlib.sha256(found).hexdigest()[:16]

    def _bearer(self, request: Request) -> str | None:
        header = request.headers.get("authorization")
        if header is None:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("Authorization must be 'Bearer <api key or read token>'")
        return value.strip()

    def api_client(self, request: Request) -> Principal:
        """An API-key holder; in demo mode, also an anonymous caller named by address."""
        bearer = self._bearer(request)
        if bearer is not None:
            name = self._api_key_name(bearer)
            if name is None:
                raise Unauthorized("unknown API key")
            return Principal(name)
        if self.demo:
            client = request.client.host if request.client else "unknown"
            return Principal(f"demo:{client}", anonymous=True)
        raise Unauthorized("an API key is required: 'Authorization: Bearer <api key>'")

    def reader(self, request: Request, stream_id: str) -> Principal:
        """An API-key holder, or a read token (``?token=`` or Bearer) for ``stream_id``."""
        bearer = self._bearer(request)
        token = request.query_params.get("token")
        if bearer is not None:
            name = self._api_key_name(bearer)
            if name is not None:
                return Principal(name)
        presented = token if token is not None else bearer
        if presented is None:
            raise Unauthorized("a read token (?token=) or an API key is required")
        principal = Principal("token", self.tokens.verify(presented))
        principal.require_stream(stream_id)
        return principal

    def chat_client(self, request: Request) -> Principal:
        """An API-key holder, the holder of a chat token (it covers one chat: see
        ``Principal.require_chat``), or in demo mode an anonymous caller."""
        bearer = self._bearer(request)
        if bearer is None and not self.demo:
            raise Unauthorized("an API key or a chat token is required: 'Authorization: Bearer …'")
        if bearer is None or self._api_key_name(bearer) is not None:
            return self.api_client(request)
        subject = self.tokens.verify(bearer)
        if not subject.startswith(CHAT_SUBJECT):
            raise Forbidden("a stream's read token does not cover chats")
        chat_id = subject.removeprefix(CHAT_SUBJECT)
        return Principal(subject, chat_id=chat_id)

    def issue_chat_token(self, chat_id: str) -> tuple[str, int]:
        """A chat token for ``chat_id``, and when it expires (unix seconds)."""
        token = self.tokens.issue(CHAT_SUBJECT + chat_id)
        return token, int(token.split(".")[1])

    def admin(self, request: Request) -> Principal:
        """The holder of ``TOKENRELAY_ADMIN_TOKEN``; valid non-admin credentials are 403."""
        if self._admin_token is None:
            raise AdminDisabled("the admin API is off: set TOKENRELAY_ADMIN_TOKEN to use it")
        bearer = self._bearer(request)
        if bearer is None:
            raise Unauthorized("the admin token is required: 'Authorization: Bearer <token>'")
        if hmac.compare_digest(bearer.encode(), self._admin_token):
            return Principal("admin")
        if self._api_key_name(bearer) is not None or self._is_read_token(bearer):
            raise Forbidden("these credentials do not cover the admin API")
        raise Unauthorized("invalid admin token")

    def _is_read_token(self, presented: str) -> bool:
        try:
            self.tokens.verify(presented)
        except Unauthorized:
            return False
        return True
