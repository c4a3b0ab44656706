"""``POST /demo/agent`` (demo mode only): starts the demo's agent (``tokenrelay.agent_demo``)
on a question, in a durable stream of its own, and answers where to read it.

The agent is application code: it runs in this process but talks to the gateway over HTTP,
at the address the request arrived at, with the first configured API key (no key: 503). Each
start counts as one stream created by its caller (``Quotas``: in demo mode an address may
start ``TOKENRELAY_DEMO_CREATES_PER_MINUTE`` a minute); the agent's two generations count
against that API key. A run's stream lives ``TOKENRELAY_RETENTION_S`` after its last write.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Annotated

import httpx2
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from gateway.api import api_client
from gateway.auth import Principal
from gateway.context import gateway_of
from gateway.errors import error_response
from shared.client import GatewayError
from shared.durable_client import DurableStreamWriter
from tokenrelay.agent_demo import run_agent

log = logging.getLogger("tokenrelay.gateway")

router = APIRouter(include_in_schema=False)

PATH_PREFIX = "demo/agent-"


class AgentQuestion(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")

    question: str = Field(min_length=1, max_length=2000)


RUNS: set[asyncio.Task[None]] = set()
"""The runs going on: a task nobody refers to may be collected before it ends."""


def _ended(task: asyncio.Task[None]) -> None:
    RUNS.discard(task)
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("the demo agent's run %s failed", task.get_name(), exc_info=error)


def own_base_url(request: Request) -> str:
    """This gateway as the process itself reaches it: the local address the request came
    in at (behind a proxy, the request's own URL would name the proxy)."""
    server = request.scope.get("server")
    if not server or server[1] is None:
        return str(request.base_url).rstrip("/")
    host, port = server
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@router.post("/demo/agent", status_code=201)
async def start_agent(
    body: AgentQuestion,
    request: Request,
    principal: Annotated[Principal, Depends(api_client)],
) -> JSONResponse:
    """Start an agent run; answers ``{path, read_token}`` (read it at ``/v1/ds/<path>``)."""
    gw = gateway_of(request)
    if not gw.settings.api_keys:
        return error_response(
            503,
            "demo_agent_unavailable",
            "the agent demo writes with an API key and none is configured: set TOKENRELAY_API_KEYS",
        )
    name = secrets.token_hex(8)
    await gw.quotas.admit(principal, f"demo-agent-{name}")
    path = PATH_PREFIX + name
    base, key, ttl_s = own_base_url(request), gw.settings.api_keys[0], gw.settings.retention_s
    try:
        async with DurableStreamWriter(base, path, api_key=key) as stream:
            await stream.create(ttl_s=ttl_s)  # here, so that the answer carries its read token
            token = stream.read_token
    except (httpx2.HTTPError, GatewayError) as error:
        log.error("the demo agent could not create %s at %s: %s", path, base, error)
        return error_response(
            503, "demo_agent_unavailable", f"could not create the run's stream: {error}"
        )
    run = asyncio.create_task(
        run_agent(base, path, key, body.question, gw.settings.demo_model, ttl_s=ttl_s),
        name=path,
    )
    RUNS.add(run)
    run.add_done_callback(_ended)
    log.info("path=%s step=demo-agent model=%s", path, gw.settings.demo_model)
    return JSONResponse({"path": path, "read_token": token}, status_code=201)
