"""Bad input gets its SPEC status and a JSON error; nothing is lost.

Real stack (uvicorn gateway, arq worker, mock model, the machine's Redis). Every refusal is
checked for its exact status AND for the body ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from gateway.auth import ReadTokens
from tests.client import Relay
from tests.processes import SIGNING_KEY

MiB = 1024 * 1024
UNKNOWN_ID = "AAAAAAAAAAAAAAAAAAAAAA"  # well-formed (22 URL-safe chars), never issued


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is ``status`` with a JSON ``{"error": {"code", "message"}}`` body."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers.get("content-type", "").startswith("application/json"), (
        response.headers,
        response.text[:500],
    )
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert isinstance(error.get("code"), str) and error["code"], body
    assert isinstance(error.get("message"), str) and error["message"], body
    if code is not None:
        assert error["code"] == code, body
    return error


def body(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": "mock?tokens=2&rate=0",
        "messages": [{"role": "user", "content": "hi"}],
    }
    base.update(fields)
    return base


def tampered(token: str) -> str:
    """The token with the last character of its signature changed."""
    last = token[-1]
    return token[:-1] + ("A" if last != "A" else "B")


async def finished(relay: Relay) -> dict[str, Any]:
    """A small stream, read to its end."""
    created = await relay.create("bad input", model="mock?tokens=3&rate=0")
    read = await relay.read_sse(created["id"])
    assert read.terminal.type == "done"
    return created


# --- offsets --------------------------------------------------------------------------------

BAD_OFFSETS = [
    "abc",
    "12",
    "1-2-3",
    "-1",
    "1-",
    "-0",
    "1.5-0",
    " 1-0",
    "0x1-0",
    "99999999999999999999-0",  # 20 digits, over 2**64
    "18446744073709551616-0",  # exactly 2**64
    "0-18446744073709551616",
    "123456789012345678901-0",  # 21 digits
    "1" + "0" * 100 + "-0",  # longer than any offset
    "$$",
    "\u0663-\u0660",  # Arabic-Indic digits: digits to Python, not to Redis
    "²-0",
]


@pytest.mark.parametrize("offset", BAD_OFFSETS)
async def test_malformed_after_is_400_invalid_offset(relay: Relay, offset: str) -> None:
    created = await finished(relay)
    response = await relay.http.get(
        f"/v1/streams/{created['id']}/events", params={"after": offset}, headers=relay.auth
    )
    assert_error(response, 400, "invalid_offset")


@pytest.mark.parametrize(
    "offset", ["12", "abc", "1-2-3", "99999999999999999999-0", "1" + "0" * 100 + "-0"]
)
async def test_malformed_last_event_id_is_400_invalid_offset(relay: Relay, offset: str) -> None:
    created = await finished(relay)
    response = await relay.http.get(
        f"/v1/streams/{created['id']}/events", headers={**relay.auth, "Last-Event-ID": offset}
    )
    assert_error(response, 400, "invalid_offset")
    # a malformed Last-Event-ID is not rescued by a good ?after=
    response = await relay.http.get(
        f"/v1/streams/{created['id']}/events",
        params={"after": "0-0"},
        headers={**relay.auth, "Last-Event-ID": offset},
    )
    assert_error(response, 400, "invalid_offset")


async def test_offset_beyond_the_end_of_a_running_stream_is_400(relay: Relay) -> None:
    created = await relay.create("beyond", model="mock?tokens=40&rate=20")
    ahead = f"{int(time.time() * 1000) + 10**9}-0"
    for params, headers in (({"after": ahead}, {}), ({}, {"Last-Event-ID": ahead})):
        response = await relay.http.get(
            f"/v1/streams/{created['id']}/events", params=params, headers={**relay.auth, **headers}
        )
        assert_error(response, 400)
    assert (await relay.status(created["id"]))["status"] in ("queued", "running")
    await relay.http.post(f"/v1/streams/{created['id']}/cancel", headers=relay.auth)


async def test_format_xml_is_400(relay: Relay) -> None:
    created = await finished(relay)
    for fmt in ("xml", "SSE ", "", "x" * 40):
        response = await relay.http.get(
            f"/v1/streams/{created['id']}/events", params={"format": fmt}, headers=relay.auth
        )
        assert_error(response, 400)


# --- stream ids ------------------------------------------------------------------------------

BAD_IDS = [
    UNKNOWN_ID,
    "AAAAAAAAAAAAAAAAAAAAA_",
    quote("../x", safe=""),
    "..%2Fx",
    quote("{x}", safe=""),
    "A" * 23,
    "A" * 21,
    "A" * 300,
    quote("AAAAAAAAAAAAAAAAAAAAA" + "é", safe=""),
    "%00",
    "x",
]


@pytest.mark.parametrize("stream_id", BAD_IDS)
async def test_unknown_or_malformed_stream_id_is_404(relay: Relay, stream_id: str) -> None:
    for method, path in (
        ("GET", f"/v1/streams/{stream_id}"),
        ("GET", f"/v1/streams/{stream_id}/events"),
        ("POST", f"/v1/streams/{stream_id}/cancel"),
    ):
        response = await relay.http.request(method, path, headers=relay.auth)
        assert_error(response, 404)


async def test_unknown_stream_id_with_a_read_token_for_it_is_404(relay: Relay) -> None:
    token = ReadTokens(SIGNING_KEY.encode(), ttl_s=600).issue(UNKNOWN_ID)
    for method, path in (
        ("GET", f"/v1/streams/{UNKNOWN_ID}"),
        ("GET", f"/v1/streams/{UNKNOWN_ID}/events"),
        ("POST", f"/v1/streams/{UNKNOWN_ID}/cancel"),
    ):
        response = await relay.http.request(method, path, params={"token": token})
        assert_error(response, 404, "stream_not_found")


# --- credentials -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dGVzdDp0ZXN0LWFwaS1rZXk="},
        {"Authorization": "test-api-key"},
        {"Authorization": "Token test-api-key"},
    ],
)
async def test_create_without_a_good_api_key_is_401(relay: Relay, headers: dict[str, str]) -> None:
    response = await relay.http.post("/v1/streams", json=body(), headers=headers)
    assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_read_token_cannot_create_streams(relay: Relay) -> None:
    created = await finished(relay)
    for token in (created["read_token"], tampered(created["read_token"])):
        response = await relay.http.post(
            "/v1/streams", json=body(), headers={"Authorization": f"Bearer {token}"}
        )
        assert_error(response, 401, "unauthorized")


def _stream_calls(stream_id: str) -> list[tuple[str, str]]:
    return [
        ("GET", f"/v1/streams/{stream_id}"),
        ("GET", f"/v1/streams/{stream_id}/events"),
        ("POST", f"/v1/streams/{stream_id}/cancel"),
    ]


async def test_reading_without_credentials_is_401(relay: Relay) -> None:
    created = await finished(relay)
    for method, path in _stream_calls(created["id"]):
        assert_error(await relay.http.request(method, path), 401, "unauthorized")
        for auth in ("Bearer wrong-key", "Basic dGVzdDp0ZXN0", "Bearer"):
            response = await relay.http.request(method, path, headers={"Authorization": auth})
            assert_error(response, 401, "unauthorized")


async def test_read_token_of_another_stream_is_403(relay: Relay) -> None:
    mine, other = await finished(relay), await finished(relay)
    for method, path in _stream_calls(mine["id"]):
        response = await relay.http.request(method, path, params={"token": other["read_token"]})
        assert_error(response, 403, "forbidden")
        response = await relay.http.request(
            method, path, headers={"Authorization": f"Bearer {other['read_token']}"}
        )
        assert_error(response, 403, "forbidden")
        # its own token works
        response = await relay.http.request(method, path, params={"token": mine["read_token"]})
        assert response.status_code in (200, 202), response.text


async def test_tampered_expired_or_mangled_read_tokens_are_401(relay: Relay) -> None:
    created = await finished(relay)
    stream_id, token = created["id"], created["read_token"]
    sid, expires, signature = token.split(".")
    expired = ReadTokens(SIGNING_KEY.encode(), ttl_s=-10).issue(stream_id)
    forged = ReadTokens(b"not-the-signing-key", ttl_s=600).issue(stream_id)
    bad_tokens = [
        tampered(token),
        expired,
        forged,
        f"{sid}.{int(expires) + 1000}.{signature}",  # extended expiry, old signature
        f"{sid}.{expires}",
        f"{sid}.{expires}.{signature}.x",
        f"{sid}.-1.{signature}",
        f"{sid}.{'9' * 40}.{signature}",
        f"{sid}.{expires}.{signature[:-1]}é",
        f"{sid}.²³.{signature}",
        f"{sid}.١٢٣٤٥٦٧٨٩٠.{signature}",
        "",
        ".",
        "..",
        "x" * 600,
    ]
    for bad in bad_tokens:
        for method, path in _stream_calls(stream_id):
            response = await relay.http.request(method, path, params={"token": bad})
            assert_error(response, 401, "unauthorized")
    # the same, as a Bearer header (ASCII only: headers are Latin-1 on the wire)
    for bad in (tampered(token), expired, forged):
        for method, path in _stream_calls(stream_id):
            response = await relay.http.request(
                method, path, headers={"Authorization": f"Bearer {bad}"}
            )
            assert_error(response, 401, "unauthorized")


# --- request bodies --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b"{",
        b'{"model": "mock", "messages": [}',
        b"not json",
        b'{"model": "mock",}',
        b"\xff\xfe\x00",
    ],
)
async def test_invalid_json_is_400_invalid_json(relay: Relay, content: bytes) -> None:
    response = await relay.http.post(
        "/v1/streams", content=content, headers={**relay.auth, "Content-Type": "application/json"}
    )
    assert_error(response, 400, "invalid_json")


@pytest.mark.parametrize("payload", [[], [body()], "hello", 5, None, True])
async def test_a_json_body_that_is_not_an_object_is_422(relay: Relay, payload: Any) -> None:
    response = await relay.http.post("/v1/streams", json=payload, headers=relay.auth)
    assert_error(response, 422, "invalid_fields")


async def test_a_body_not_sent_as_json_is_422(relay: Relay) -> None:
    # FastAPI reads a body as JSON only when its Content-Type says so
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {**relay.auth, **({"Content-Type": content_type} if content_type else {})}
        response = await relay.http.post(
            "/v1/streams", content=json.dumps(body()).encode(), headers=headers
        )
        assert_error(response, 422, "invalid_fields")


async def test_an_empty_body_is_422(relay: Relay) -> None:
    response = await relay.http.post(
        "/v1/streams", content=b"", headers={**relay.auth, "Content-Type": "application/json"}
    )
    assert_error(response, 422, "invalid_fields")


def _without(field: str) -> dict[str, Any]:
    payload = body()
    del payload[field]
    return payload


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (_without("messages"), "messages"),
        (_without("model"), "model"),
        (body(messages=[]), "messages"),
        (body(messages="hi"), "messages"),
        (body(messages=[{"content": "hi"}]), "messages.0.role"),
        (body(messages=[{"role": "wizard", "content": "hi"}]), "messages.0.role"),
        (body(messages=[{"role": "user", "content": 5}]), "messages.0.content"),
        (body(model=""), "model"),
        (body(model=5), "model"),
        (body(max_tokens="5"), "max_tokens"),
        (body(max_tokens=0), "max_tokens"),
        (body(max_tokens=2.5), "max_tokens"),
        (body(temperature=7), "temperature"),
        (body(temperature="0.5"), "temperature"),
        (body(metadata={"k": 1}), "metadata.k"),
        (body(metadata={"k": None}), "metadata.k"),
        (body(metadata=["k"]), "metadata"),
        (body(cancel_on_disconnect_s=-1), "cancel_on_disconnect_s"),
    ],
)
async def test_invalid_fields_are_422_naming_the_field(
    relay: Relay, payload: dict[str, Any], field: str
) -> None:
    response = await relay.http.post("/v1/streams", json=payload, headers=relay.auth)
    error = assert_error(response, 422, "invalid_fields")
    assert field in error["message"], error


async def test_a_body_over_the_limit_with_content_length_is_413(relay: Relay) -> None:
    content = b'{"model": "mock", "pad": "' + b"x" * (5 * MiB) + b'"}'
    response = await relay.http.post(
        "/v1/streams", content=content, headers={**relay.auth, "Content-Type": "application/json"}
    )
    assert_error(response, 413, "payload_too_large")


async def test_a_chunked_body_over_the_limit_is_413(relay: Relay) -> None:
    chunk = b"x" * (64 * 1024)

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"model": "mock", "pad": "'
        for _ in range(5 * MiB // len(chunk)):
            yield chunk
        yield b'"}'

    response = await relay.http.post(
        "/v1/streams", content=chunks(), headers={**relay.auth, "Content-Type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "payload_too_large")


# --- routes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nope"),
        ("GET", "/v1"),
        ("GET", "/v1/streams/x/y/z"),
        ("POST", "/v2/streams"),
    ],
)
async def test_unknown_route_is_404_json(relay: Relay, method: str, path: str) -> None:
    response = await relay.http.request(method, path, headers=relay.auth)
    assert_error(response, 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/v1/streams/x"),
        ("DELETE", f"/v1/streams/{UNKNOWN_ID}"),
        ("GET", "/v1/streams"),
        ("PUT", "/v1/streams"),
        ("GET", f"/v1/streams/{UNKNOWN_ID}/cancel"),
        ("POST", f"/v1/streams/{UNKNOWN_ID}/events"),
    ],
)
async def test_wrong_method_is_405_json(relay: Relay, method: str, path: str) -> None:
    response = await relay.http.request(method, path, headers=relay.auth)
    assert_error(response, 405)
    assert "allow" in response.headers


# --- nothing is lost -------------------------------------------------------------------------


async def test_a_burst_of_bad_requests_loses_nothing(relay: Relay) -> None:
    other = await finished(relay)
    created = await relay.create("burst", model="mock?tokens=40&rate=100")
    stream_id = created["id"]
    events = f"/v1/streams/{stream_id}/events"
    reader = asyncio.create_task(relay.read_sse(stream_id))

    async def expect(status: int, method: str, path: str, **kwargs: Any) -> None:
        assert_error(await relay.http.request(method, path, **kwargs), status)

    auth = relay.auth
    burst = []
    for _ in range(3):
        burst += [
            expect(400, "GET", events, params={"after": "abc"}, headers=auth),
            expect(400, "GET", events, headers={**auth, "Last-Event-ID": "12"}),
            expect(400, "GET", events, params={"after": "99999999999999999999-0"}, headers=auth),
            expect(400, "GET", events, params={"format": "xml"}, headers=auth),
            expect(401, "GET", events),
            expect(401, "GET", events, params={"token": tampered(created["read_token"])}),
            expect(
                401,
                "POST",
                f"/v1/streams/{stream_id}/cancel",
                params={"token": tampered(created["read_token"])},
            ),
            expect(403, "GET", events, params={"token": other["read_token"]}),
            expect(403, "GET", f"/v1/streams/{stream_id}", params={"token": other["read_token"]}),
            expect(
                403,
                "POST",
                f"/v1/streams/{stream_id}/cancel",
                params={"token": other["read_token"]},
            ),
            expect(
                401,
                "POST",
                f"/v1/streams/{stream_id}/cancel",
                headers={"Authorization": "Bearer wrong"},
            ),
            expect(404, "GET", f"/v1/streams/{UNKNOWN_ID}/events", headers=auth),
            expect(405, "DELETE", f"/v1/streams/{stream_id}", headers=auth),
            expect(
                400,
                "POST",
                "/v1/streams",
                content=b"{",
                headers={**auth, "Content-Type": "application/json"},
            ),
            expect(422, "POST", "/v1/streams", json={"messages": []}, headers=auth),
        ]
    try:
        await asyncio.gather(*burst)
    except BaseException:
        reader.cancel()
        raise
    live = await asyncio.wait_for(reader, 10)
    assert live.status_code == 200
    sent = (await relay.mock_record(stream_id))["sent_text"]
    assert live.text == sent
    assert live.terminal.data["finish_reason"] == "stop"
    replay = await relay.read_sse(stream_id)
    assert replay.text == sent
    assert replay.events == live.events
    status = await relay.status(stream_id)
    assert status["status"] == "completed"
    assert status["event_count"] == len(live.events)


# --- fuzz-ish --------------------------------------------------------------------------------

_ALPHABET = "abcXYZ019-_.$~!*'();:@&=+,/?#[] %\"<>\\^`{|}éß中文😀١٢٣²\u200b\u00a0"
_ESCAPES = ["%00", "%0a", "%0d%0a", "%ff", "%2F", "%2e%2e", "%25", "%c3%28", "%F0%9F"]


def _junk(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(1, 6)):
        if rng.random() < 0.3:
            parts.append(rng.choice(_ESCAPES))
        else:
            parts.append("".join(rng.choice(_ALPHABET) for _ in range(rng.randint(1, 12))))
    return "".join(parts)


async def test_junk_input_never_gets_a_5xx(relay: Relay) -> None:
    rng = random.Random(1234)
    created = await finished(relay)
    stream_id, token = created["id"], created["read_token"]
    sid, expires, signature = token.split(".")
    events = f"/v1/streams/{stream_id}/events"
    problems: list[str] = []

    async def probe(method: str, url: str, **kwargs: Any) -> None:
        try:
            response = await relay.http.request(method, url, **kwargs)
        except httpx.LocalProtocolError:
            return  # the client refused to send it; nothing reached the gateway
        if response.status_code >= 500:
            problems.append(f"{method} {url} {kwargs}: {response.status_code} {response.text}")
        elif response.status_code >= 400:
            try:
                assert_error(response, response.status_code)
            except AssertionError as error:
                problems.append(f"{method} {url} {kwargs}: {error}")

    for _ in range(30):
        junk = _junk(rng)
        header_junk = junk.encode("utf-8")  # raw bytes; the gateway sees Latin-1
        raw = junk.replace("#", "%23").replace("?", "%3F").replace(" ", "%20")
        await asyncio.gather(
            # offsets, percent-encoded by httpx and raw (escapes reach the gateway as is)
            probe("GET", events, params={"after": junk}, headers=relay.auth),
            probe("GET", f"{events}?after={raw}", headers=relay.auth),
            probe("GET", events, headers={**relay.auth, "Last-Event-ID": header_junk}),
            # stream ids
            probe("GET", f"/v1/streams/{quote(junk, safe='')}", headers=relay.auth),
            probe("GET", f"/v1/streams/{quote(junk, safe='')}/events", headers=relay.auth),
            probe("POST", f"/v1/streams/{quote(junk, safe='')}/cancel", headers=relay.auth),
            probe("GET", f"/v1/streams/{raw.replace('/', '%2F')}/events", headers=relay.auth),
            # tokens: whole junk, and junk in each of the token's three parts
            probe("GET", events, params={"token": junk}),
            probe("GET", f"{events}?token={raw}"),
            probe("GET", events, params={"token": f"{junk}.{expires}.{signature}"}),
            probe("GET", events, params={"token": f"{sid}.{junk}.{signature}"}),
            probe("GET", events, params={"token": f"{sid}.{expires}.{junk}"}),
            probe("POST", f"/v1/streams/{stream_id}/cancel", params={"token": junk}),
            probe("GET", events, headers={"Authorization": b"Bearer " + header_junk}),
            probe("GET", events, headers={"Authorization": header_junk}),
            probe(
                "POST",
                "/v1/streams",
                headers={"Authorization": b"Bearer " + header_junk},
                json=body(),
            ),
            # formats and bodies
            probe("GET", events, params={"format": junk}, headers=relay.auth),
            probe("GET", events, headers={**relay.auth, "Accept": header_junk}),
            probe("POST", "/v1/streams", headers=relay.auth, content=header_junk),
            probe(
                "POST",
                "/v1/streams",
                headers=relay.auth,
                json=body(
                    model=junk, messages=[{"role": junk, "content": junk}], metadata={junk: junk}
                ),
            ),
            probe(
                "POST",
                "/v1/streams",
                json=body(),
                headers={**relay.auth, "Idempotency-Key": header_junk},
            ),
        )
    assert not problems, "\n".join(problems)
    # the stream is untouched by all that
    assert (await relay.status(stream_id))["status"] == "completed"
