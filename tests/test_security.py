"""Who may call what: every endpoint by every kind of credential, tried against a real gateway.

The answers fill the table in docs/SECURITY.md; the test fails if the table there differs
from what the gateway answered (regenerate it with ``TOKENRELAY_WRITE_SECURITY_TABLE=1``).
Also: a rotated-out signing key keeps its tokens valid, CORS answers only allowed origins,
and the upstream key never appears in a response, a log line or the admin API.
"""

from __future__ import annotations

import os

import httpx

from gateway.auth import CHAT_SUBJECT, ReadTokens
from gateway.durable.store import stream_id_of
from tests.client import Relay
from tests.processes import API_KEY, REPO, SIGNING_KEY, Stack

ADMIN_TOKEN = "test-admin-token-security"
PREVIOUS_KEY = "the-signing-key-before-rotation"
ALLOWED_ORIGIN = "https://chat.example.com"
STACK_ENV = {
    "TOKENRELAY_ADMIN_TOKEN": ADMIN_TOKEN,
    "TOKENRELAY_SIGNING_KEY_PREVIOUS": PREVIOUS_KEY,
    "TOKENRELAY_CORS_ORIGINS": ALLOWED_ORIGIN,
}
TABLE = REPO / "docs" / "SECURITY.md"
BEGIN, END = "<!-- table: written by tests/test_security.py -->", "<!-- end of table -->"
OPEN_BEGIN = "<!-- table of TOKENRELAY_DS_OPEN=true: written by tests/test_security.py -->"

CREDENTIALS = [
    "none",
    "wrong",
    "other stream's token",
    "expired token",
    "tampered token",
    "previous key's token",
    "API key",
    "admin token",
]


def credential(name: str, stream_id: str, other_token: str) -> dict[str, str]:
    own = ReadTokens(SIGNING_KEY.encode(), ttl_s=600).issue(stream_id)
    bearer = {
        "none": None,
        "wrong": "not-a-credential",
        "other stream's token": other_token,
        "expired token": ReadTokens(SIGNING_KEY.encode(), ttl_s=-10).issue(stream_id),
        "tampered token": own[:-4] + ("AAAA" if not own.endswith("AAAA") else "BBBB"),
        "previous key's token": ReadTokens(PREVIOUS_KEY.encode(), ttl_s=600).issue(stream_id),
        "API key": API_KEY,
        "admin token": ADMIN_TOKEN,
    }[name]
    return {"Authorization": f"Bearer {bearer}"} if bearer else {}


CHAT_BODY: dict[str, object] = {
    "model": "mock?tokens=3",
    "messages": [{"role": "user", "content": "security"}],
}
RESPONSES_BODY: dict[str, object] = {"model": "mock?tokens=3", "input": "security"}
CHAT_ID = "security-chat"
"""The chat of the ``/v1/chats`` rows; its tokens are chat tokens (subject ``chat:<id>``)."""
CHATS_BODY: dict[str, object] = {
    "id": CHAT_ID,
    "model": "mock?tokens=3",
    "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "security"}]}],
}


def durable_endpoints(path: str) -> list[tuple[str, str, str]]:
    """The ``/v1/ds`` rows: ``path`` names an existing durable stream (a JSON one), which the
    last row deletes; the ``PUT`` creates another one next to it."""
    return [
        ("PUT /v1/ds/{path}", "PUT", f"/v1/ds/{path}/new"),
        ("POST /v1/ds/{path}", "POST", f"/v1/ds/{path}"),
        ("HEAD /v1/ds/{path}", "HEAD", f"/v1/ds/{path}"),
        ("GET /v1/ds/{path}", "GET", f"/v1/ds/{path}"),
        ("DELETE /v1/ds/{path}", "DELETE", f"/v1/ds/{path}"),
    ]


def durable_path(name: str, table: str = "auth") -> str:
    """The durable stream of one credential's rows."""
    return f"security/{table}/{name.replace(' ', '-').replace(chr(39), '')}"


async def create_durable(http: httpx.AsyncClient, path: str) -> str:
    """A JSON durable stream with one message, created with the API key; its id."""
    created = await http.put(
        f"/v1/ds/{path}",
        content=b'{"n":1}',
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
    )
    assert created.status_code == 201, created.text
    return stream_id_of(path)


def endpoints(stream_id: str, response_id: str, durable: str) -> list[tuple[str, str, str]]:
    """(label, method, path); ``{id}`` in the label. ``stream_id`` is a stream created through
    ``/v1/streams``, ``response_id`` (``resp_<stream id>``) one created through
    ``/v1/responses``, ``durable`` the path of a durable stream."""
    admin = f"/admin/api/streams/{stream_id}"
    return [
        ("POST /v1/streams", "POST", "/v1/streams"),
        ("GET /v1/streams/{id}", "GET", f"/v1/streams/{stream_id}"),
        ("GET /v1/streams/{id}/events", "GET", f"/v1/streams/{stream_id}/events"),
        ("POST /v1/streams/{id}/cancel", "POST", f"/v1/streams/{stream_id}/cancel"),
        ("POST /v1/chat/completions", "POST", "/v1/chat/completions"),
        (
            "GET /v1/chat/completions/{id}/stream",
            "GET",
            f"/v1/chat/completions/{stream_id}/stream",
        ),
        ("POST /v1/responses", "POST", "/v1/responses"),
        ("GET /v1/responses/{id}", "GET", f"/v1/responses/{response_id}"),
        ("POST /v1/responses/{id}/cancel", "POST", f"/v1/responses/{response_id}/cancel"),
        ("POST /v1/chats", "POST", "/v1/chats"),
        ("GET /v1/chats/{id}", "GET", f"/v1/chats/{CHAT_ID}"),
        ("GET /v1/chats/{id}/stream", "GET", f"/v1/chats/{CHAT_ID}/stream"),
        ("POST /v1/chats/{id}/stop", "POST", f"/v1/chats/{CHAT_ID}/stop"),
        ("POST /v1/chats/{id}/token", "POST", f"/v1/chats/{CHAT_ID}/token"),
        *durable_endpoints(durable),
        ("GET /admin/api/streams", "GET", "/admin/api/streams"),
        ("GET /admin/api/streams/{id}", "GET", admin),
        ("GET /admin/api/streams/{id}/events", "GET", f"{admin}/events"),
        ("GET /admin/api/streams/{id}/tail", "GET", f"{admin}/tail"),
        ("POST /admin/api/streams/{id}/cancel", "POST", f"{admin}/cancel"),
        ("DELETE /admin/api/streams/{id}", "DELETE", admin),
        ("GET /admin/api/system", "GET", "/admin/api/system"),
    ]


def body_of(method: str, path: str) -> dict[str, object] | None:
    """What a POST sends: a valid request of its API (a cancel ignores it)."""
    if method != "POST":
        return None
    if path.startswith("/v1/chats"):
        return CHATS_BODY
    return RESPONSES_BODY if path.startswith("/v1/responses") else CHAT_BODY


async def finished_response(relay: Relay) -> tuple[str, str]:
    """(response id, stream id) of a response created through ``/v1/responses``, ended."""
    created = await relay.http.post("/v1/responses", json=RESPONSES_BODY, headers=relay.auth)
    assert created.status_code == 200, created.text
    assert created.json()["status"] == "completed", created.text
    stream_id = created.headers["X-TokenRelay-Stream-Id"]
    assert created.json()["id"] == f"resp_{stream_id}"
    return created.json()["id"], stream_id


def cell(response: httpx.Response) -> str:
    """The answer's status, and its error code (a ``HEAD`` answer has no body to tell it)."""
    if response.status_code < 300 or response.request.method == "HEAD":
        return str(response.status_code)
    return f"{response.status_code} {response.json()['error']['code']}"


def markdown(rows: dict[str, list[str]]) -> str:
    return "\n".join(
        [
            "| endpoint | " + " | ".join(CREDENTIALS) + " |",
            "| --- |" + " --- |" * len(CREDENTIALS),
            *(f"| `{label}` | " + " | ".join(cells) + " |" for label, cells in rows.items()),
        ]
    )


def check_table(begin: str, table: str) -> None:
    """``table`` is in docs/SECURITY.md between ``begin`` and the end marker after it (written
    there first with ``TOKENRELAY_WRITE_SECURITY_TABLE``)."""
    document = TABLE.read_text()
    if os.environ.get("TOKENRELAY_WRITE_SECURITY_TABLE"):
        start = document.index(begin) + len(begin)
        end = document.index(END, start)
        TABLE.write_text(document[:start] + "\n" + table + "\n" + document[end:])
        document = TABLE.read_text()
    assert f"{begin}\n{table}\n{END}" in document, f"docs/SECURITY.md is out of date:\n{table}"


async def test_every_endpoint_with_every_credential(relay: Relay) -> None:
    other = await relay.create("the other stream", model="mock?tokens=3")
    rows: dict[str, list[str]] = {}
    # the same credential on what the table does not show: a response read as a stream
    # (?stream=true), and a stream created through /v1/streams asked for as a response
    also: dict[str, list[str]] = {}
    for name in CREDENTIALS:
        # a finished stream and a finished response per credential, each with its own
        # credentials (a purge with the admin token removes the stream)
        stream = await relay.create(f"security {name}", model="mock?tokens=3")
        await relay.read_sse(stream["id"])
        response_id, response_stream = await finished_response(relay)
        durable = durable_path(name)
        durable_id = await create_durable(relay.http, durable)
        # (before the admin token's purge of the stream)
        as_stream = await relay.http.get(
            f"/v1/responses/{response_id}",
            params={"stream": "true"},
            headers=credential(name, response_stream, other["read_token"]),
        )
        also.setdefault("GET /v1/responses/{id}?stream=true", []).append(cell(as_stream))
        as_response = await relay.http.get(
            f"/v1/responses/resp_{stream['id']}",
            headers=credential(name, stream["id"], other["read_token"]),
        )
        also.setdefault("GET /v1/responses/resp_{/v1/streams id}", []).append(cell(as_response))
        for label, method, path in endpoints(stream["id"], response_id, durable):
            own = response_stream if path.startswith("/v1/responses/") else stream["id"]
            if path.startswith("/v1/chats"):
                own = CHAT_SUBJECT + CHAT_ID
            if path.startswith("/v1/ds/"):
                own = durable_id
            response = await relay.http.request(
                method,
                path,
                headers=credential(name, own, other["read_token"]),
                json=body_of(method, path),
            )
            rows.setdefault(label, []).append(cell(response))

    check_table(BEGIN, markdown(rows))

    by = {label: dict(zip(CREDENTIALS, cells, strict=True)) for label, cells in rows.items()}
    for label, answers in by.items():
        unauthorized = "401" if label.startswith("HEAD") else "401 unauthorized"
        assert answers["none"].startswith(("401", "201")), (label, answers)
        assert answers["wrong"].startswith("401"), (label, answers)
        assert answers["expired token"] == unauthorized, (label, answers)
        assert answers["tampered token"] == unauthorized, (label, answers)
        if label.startswith("GET /admin") or label.startswith(("POST /admin", "DELETE /admin")):
            assert answers["admin token"].startswith("20"), (label, answers)
            for name in ("other stream's token", "previous key's token", "API key"):
                assert answers[name] == "403 forbidden", (label, answers)
    readers = ("GET /v1/streams/{id}", "GET /v1/streams/{id}/events")
    for label in (*readers, "GET /v1/chat/completions/{id}/stream"):
        assert by[label]["other stream's token"] == "403 forbidden"
        assert by[label]["previous key's token"] == "200"  # rotation keeps live readers
        assert by[label]["API key"] == "200"
    assert by["POST /v1/streams"]["API key"] == "201"
    assert by["POST /v1/streams"]["none"] == "401 unauthorized"
    assert by["POST /v1/streams"]["previous key's token"] == "401 unauthorized"
    assert by["POST /v1/chat/completions"]["API key"] == "200"
    assert by["POST /v1/chat/completions"]["none"] == "401 unauthorized"
    # the Responses API: the API key creates; the API key or the response's read token reads
    # and cancels it; another stream's token is refused
    assert by["POST /v1/responses"]["API key"] == "200"
    for name in CREDENTIALS:
        if name != "API key":
            assert by["POST /v1/responses"][name] == "401 unauthorized", name
    for label in ("GET /v1/responses/{id}", "POST /v1/responses/{id}/cancel"):
        assert by[label]["none"] == "401 unauthorized", label
        assert by[label]["other stream's token"] == "403 forbidden", label
        assert by[label]["previous key's token"] == "200", label
        assert by[label]["API key"] == "200", label
        assert by[label]["admin token"] == "401 unauthorized", label
    # AI SDK chats: the API key or the chat's token sends, resumes, shows and stops; a
    # stream's read token covers no chat; only the API key mints chat tokens
    for label in ("POST /v1/chats", "GET /v1/chats/{id}", "POST /v1/chats/{id}/stop"):
        assert by[label]["none"] == "401 unauthorized", label
        assert by[label]["other stream's token"] == "403 forbidden", label
        assert by[label]["previous key's token"].startswith("20"), label
        assert by[label]["API key"].startswith("20"), label
    assert by["POST /v1/chats/{id}/token"]["API key"] == "201"
    for name in CREDENTIALS:
        if name != "API key":
            assert by["POST /v1/chats/{id}/token"][name] == "401 unauthorized", name
    # Durable Streams: only the API key writes (a read token is no API key: 401); the API key
    # or the stream's read token reads, another stream's token is 403
    writes = {
        "PUT /v1/ds/{path}": "201",
        "POST /v1/ds/{path}": "204",
        "DELETE /v1/ds/{path}": "204",
    }
    for label, allowed in writes.items():
        assert by[label] == {
            name: allowed if name == "API key" else "401 unauthorized" for name in CREDENTIALS
        }, label
    for label, refused in (
        ("GET /v1/ds/{path}", "401 unauthorized"),
        ("HEAD /v1/ds/{path}", "401"),
    ):
        assert by[label] == {
            "none": refused,
            "wrong": refused,
            "other stream's token": "403 forbidden" if label.startswith("GET") else "403",
            "expired token": refused,
            "tampered token": refused,
            "previous key's token": "200",
            "API key": "200",
            "admin token": refused,
        }, label
    # resp_<id> checks credentials as ever; a stream created by another API is no response:
    # 404 to whoever may look at it
    for label, cells in also.items():
        expected = rows["GET /v1/responses/{id}"]
        if label == "GET /v1/responses/resp_{/v1/streams id}":
            expected = ["404 stream_not_found" if cell == "200" else cell for cell in expected]
        assert cells == expected, (label, cells)


async def test_cors_answers_allowed_origins_only(relay: Relay) -> None:
    stream = await relay.create("cors", model="mock?tokens=3")
    path = f"/v1/streams/{stream['id']}/events"
    for origin, allowed in ((ALLOWED_ORIGIN, True), ("https://evil.example.net", False)):
        preflight = await relay.http.options(
            path,
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization,last-event-id",
            },
        )
        read = await relay.http.get(path, headers={**relay.auth, "Origin": origin})
        assert read.status_code == 200
        if allowed:
            assert preflight.status_code == 200
            assert preflight.headers["access-control-allow-origin"] == origin
            assert "last-event-id" in preflight.headers["access-control-allow-headers"].lower()
            assert read.headers["access-control-allow-origin"] == origin
        else:
            assert preflight.status_code == 400
            assert "access-control-allow-origin" not in read.headers


async def test_the_upstream_key_never_leaves_the_worker(
    relay: Relay, shared_stack: tuple[Stack, str]
) -> None:
    stack, _ = shared_stack
    upstream_key = stack.env()["OPENAI_API_KEY"]
    stream = await relay.create("secrets", model="mock?tokens=5")
    await relay.read_sse(stream["id"])
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    seen = [
        (await relay.http.get(f"/v1/streams/{stream['id']}", headers=relay.auth)).text,
        (await relay.http.get(f"/admin/api/streams/{stream['id']}", headers=admin)).text,
        (await relay.http.get(f"/admin/api/streams/{stream['id']}/events", headers=admin)).text,
        (await relay.http.get("/admin/api/system", headers=admin)).text,
        (await relay.http.get("/metrics")).text,
        (await relay.http.get("/openapi.json")).text,
    ]
    logs = [process.log_text() for process in stack.processes]
    assert len(upstream_key) > 10
    for text in seen + logs:
        assert upstream_key not in text


async def test_ds_open_lets_anyone_write_and_read_durable_streams(stack: Stack) -> None:
    """``TOKENRELAY_DS_OPEN=true`` (what ``tokenrelay dev`` and the conformance suite run
    with): every credential, none included, may create, append, read and delete; the table
    of it is in docs/SECURITY.md too."""
    _, base = stack.gateway(TOKENRELAY_DS_OPEN="true", **STACK_ENV)
    rows: dict[str, list[str]] = {}
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        other = await http.put(
            "/v1/ds/security/open/other", headers={"Authorization": f"Bearer {API_KEY}"}
        )
        other_token = other.headers["X-TokenRelay-Read-Token"]
        for name in CREDENTIALS:
            durable = durable_path(name, "open")
            own = await create_durable(http, durable)
            for label, method, path in durable_endpoints(durable):
                response = await http.request(
                    method,
                    path,
                    headers={
                        **credential(name, own, other_token),
                        "Content-Type": "application/json",
                    },
                    content=b'{"n":2}' if method == "POST" else None,
                )
                rows.setdefault(label, []).append(cell(response))
    check_table(OPEN_BEGIN, markdown(rows))
    expected = {"PUT": "201", "POST": "204", "HEAD": "200", "GET": "200", "DELETE": "204"}
    for label, cells in rows.items():
        assert cells == [expected[label.split()[0]]] * len(CREDENTIALS), (label, cells)
