"""Which durable stream a URL names, and who may do what to it."""

from __future__ import annotations

from fastapi import Request

from gateway.auth import Principal
from gateway.context import Gateway, gateway_of
from gateway.durable import protocol
from gateway.durable.protocol import CLOSED
from gateway.durable.store import DurableStore, stream_id_of
from shared.errors import Conflict, InvalidInput, Unauthorized

PREFIX = "/v1/ds"
"""Where durable streams are mounted: a protocol client's base URL is ``http://<gateway>/v1/ds``."""
MAX_PATH = 1024


def stream_path(path: str) -> str:
    """The stream's path, as the URL names it below ``/v1/ds/``."""
    if not path or len(path) > MAX_PATH or not path.isprintable():
        raise InvalidInput(f"a stream path is 1 to {MAX_PATH} printable characters")
    return path


def writer(request: Request) -> Principal:
    """Who may create, append, close and delete: an API key's holder (not a demo caller),
    or anyone where ``TOKENRELAY_DS_OPEN`` is on. Called first thing by each handler, which
    reads its body itself afterwards: credentials come before the body. (Not a FastAPI
    dependency: a plain ``def`` one runs in a worker thread, a third of an append's CPU.)"""
    gw = gateway_of(request)
    if gw.settings.ds_open:
        return Principal("open")
    principal = gw.auth.api_client(request)
    if principal.anonymous:
        raise Unauthorized("writing a durable stream takes an API key: 'Authorization: Bearer'")
    return principal


async def agent_run(gw: Gateway, principal: Principal, path: str) -> str:
    """The id of the durable stream at ``path`` (``/v1/ds/`` optional) that a generation
    started by ``principal`` is to write into: it must be open and hold JSON."""
    if principal.anonymous and not gw.settings.ds_open:
        raise Unauthorized("writing a durable stream takes an API key: 'Authorization: Bearer'")
    path = stream_path(path.removeprefix(PREFIX + "/").lstrip("/"))
    snapshot = await gw.durable.look(path, None, touch=False)
    if snapshot.closed:
        raise Conflict(f"the durable stream {path[:64]!r} is closed", {CLOSED: "true"})
    if not protocol.is_json(snapshot.config.content_type):
        raise Conflict(f"the durable stream {path[:64]!r} does not hold JSON")
    return stream_id_of(path)


def reader(request: Request, path: str) -> Principal:
    """Who may read: an API key's holder or the stream's read token, or anyone where
    ``TOKENRELAY_DS_OPEN`` is on."""
    gw = gateway_of(request)
    if gw.settings.ds_open:
        return Principal("open")
    return gw.auth.reader(request, stream_id_of(stream_path(path)))


def store_of(request: Request) -> DurableStore:
    return gateway_of(request).durable


# -- create -------------------------------------------------------------------------------
