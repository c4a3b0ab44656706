"""Credentials before the body (issue 16: ``POST /v1/streams`` without credentials and with an
invalid body answered 422, not 401).

On every route of the gateway's own ``/openapi.json`` that needs credentials (it lists a 401)
and takes a JSON body — so a route added later is covered as it appears — each credential of
tests/test_security.py is tried with a valid body, then with invalid ones. Credentials a
valid body gets 401 or 403 for get exactly that with any invalid body: the body plays no part.
Credentials the route accepts get 422 for the same invalid bodies (400 for one that is not
JSON at all).
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from tests import test_security as security
from tests.client import Relay

STACK_ENV = security.STACK_ENV
"""The shared stack's settings: those the security test's credentials are made for."""

REFUSED = {"401 unauthorized", "403 forbidden"}

NO_BODY = object()
NOT_JSON = b'{"model": "m", "messages": ['
"""A body FastAPI cannot even decode (it does so before any dependency runs)."""


def invalid_bodies(openapi: dict[str, Any], operation: dict[str, Any]) -> dict[str, object]:
    """Bodies the operation's schema refuses, by name; JSON values, or ``NO_BODY``."""
    bodies: dict[str, object] = {
        "no body": NO_BODY,
        "null": None,
        "an array": [],
        "a string": "hello",
        "a number": 5,
        "not JSON": NOT_JSON,
    }
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    if "$ref" in schema:
        schema = openapi["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    if schema.get("type") == "object" and schema.get("required"):
        bodies["an empty object"] = {}
    return bodies


def routes_with_a_body(openapi: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) of every operation that needs credentials and takes JSON."""
    return [
        (method.upper(), path, operation)
        for path, operations in openapi["paths"].items()
        for method, operation in operations.items()
        if "401" in operation.get("responses", {})
        and "application/json" in operation.get("requestBody", {}).get("content", {})
    ]


async def send(
    relay: Relay, method: str, path: str, headers: dict[str, str], body: object
) -> httpx.Response:
    if body is NO_BODY:
        return await relay.http.request(method, path, headers=headers)
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {**headers, "Content-Type": "application/json"}
    return await relay.http.request(method, path, headers=headers, content=content)


async def test_credentials_are_checked_before_the_body(relay: Relay) -> None:
    openapi = (await relay.http.get("/openapi.json")).json()
    routes = routes_with_a_body(openapi)
    assert ("POST", "/v1/streams") in {(method, path) for method, path, _ in routes}
    stream = await relay.create("auth before body", model="mock?tokens=3&rate=0")
    other = await relay.create("another stream", model="mock?tokens=3&rate=0")

    wrong: list[str] = []
    refusals: set[str] = set()
    for method, template, operation in routes:
        path = re.sub(r"\{[^}]+\}", stream["id"], template)
        for name in security.CREDENTIALS:
            headers = security.credential(name, stream["id"], other["read_token"])
            valid = security.body_of(method, path)
            expected = security.cell(await send(relay, method, path, headers, valid))
            if name in ("none", "wrong"):
                assert expected == "401 unauthorized", (method, template, name, expected)
            if expected in REFUSED:
                refusals.add(expected)
            for label, body in invalid_bodies(openapi, operation).items():
                if expected in REFUSED:
                    judged = expected
                else:  # credentials it accepts: the body is judged
                    judged = "400 invalid_json" if body is NOT_JSON else "422 invalid_fields"
                answer = security.cell(await send(relay, method, path, headers, body))
                if answer != judged:
                    wrong.append(f"{method} {template}, {name}, {label}: {answer}, not {judged}")
    assert not wrong, "\n".join(wrong)
    assert refusals == REFUSED  # both tried (a stream's read token on /v1/chats is 403)
