"""``tokenrelay dev``: gateway, worker and mock model in one process, no setup needed."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import sys
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager

import uvicorn
from pydantic import SecretStr

from gateway.app import create_app
from gateway.server import GatewayServer, listening_socket
from producer.arq_worker import run_worker
from shared.settings import Settings
from tokenrelay.private_redis import private_redis, reachable

log = logging.getLogger("tokenrelay.dev")


class _DevServer(GatewayServer):
    """uvicorn, minus re-raising the stopping signal once it has shut down: that would end
    the process before dev mode stops its worker and its private Redis."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


DEV_API_KEY = "dev"
"""The API key dev mode accepts unless TOKENRELAY_API_KEYS names others: the OpenAI SDKs
always send one."""


async def run_dev(host: str, port: int) -> None:
    async with AsyncExitStack() as stack:
        given = os.environ.get("TOKENRELAY_REDIS_URL")
        if given and await reachable(given):
            url, where = given, f"{given} (TOKENRELAY_REDIS_URL)"
        else:
            if given:
                log.warning(
                    "TOKENRELAY_REDIS_URL=%s is not reachable; starting a private Redis", given
                )
            url, kind = await stack.enter_async_context(private_redis())
            where = f"{url} (a private {kind}, gone when dev mode stops)"
        admin_token = os.environ.get("TOKENRELAY_ADMIN_TOKEN") or secrets.token_urlsafe(16)
        settings = Settings(
            redis_url=url,
            queue_redis_url=None,
            demo=True,
            ds_open=True,
            demo_model=os.environ.get("TOKENRELAY_DEMO_MODEL")
            or ("gpt-4o-mini" if os.environ.get("OPENAI_API_KEY") else "mock"),
            admin_token=SecretStr(admin_token),
            signing_key=SecretStr(
                os.environ.get("TOKENRELAY_SIGNING_KEY") or secrets.token_urlsafe(32)
            ),
        )
        if not settings.api_keys:
            settings = settings.model_copy(update={"api_keys": [DEV_API_KEY]})
        server = _DevServer(
            uvicorn.Config(
                create_app(settings),
                host=host,
                port=port,
                log_level="warning",
                timeout_graceful_shutdown=int(settings.shutdown_grace_s),
            )
        )
        worker = asyncio.create_task(run_worker(settings, handle_signals=False))
        worker.add_done_callback(lambda _: _stop_if_failed(worker, server))
        _banner(host, port, where, admin_token)
        try:
            await server.serve(sockets=[listening_socket(host, port, settings)])
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)


def _stop_if_failed(worker: asyncio.Task[None], server: uvicorn.Server) -> None:
    if not worker.cancelled() and worker.exception() is not None:
        log.error("the worker stopped; stopping dev mode", exc_info=worker.exception())
        server.should_exit = True


def _banner(host: str, port: int, where: str, admin_token: str) -> None:
    base = f"http://{host}:{port}"
    upstream = (
        "OpenAI (OPENAI_API_KEY is set)"
        if os.environ.get("OPENAI_API_KEY")
        else "the built-in MOCK MODEL (no OPENAI_API_KEY)"
    )
    print(
        f"""
tokenrelay dev — gateway, worker and model in one process
  gateway   {base}   (bound to {host}; auth off: demo mode lets anyone here create streams)
  redis     {where}
  model     {upstream}
  demo page {base}/
  agent run {base}/agent   (model text, a tool call, its result: one resumable stream)
  admin     {base}/admin   (admin token: {admin_token})
  API docs  {base}/docs

Try it:
  curl -s {base}/v1/streams -H 'content-type: application/json' \\
       -d '{{"model":"mock","messages":[{{"role":"user","content":"Hello"}}]}}'
  curl -N '{base}<events_url from the answer>'
  OpenAI SDKs: base_url="{base}/v1", api_key="{DEV_API_KEY}", model "mock?reasoning=20&tools=2"
""",
        file=sys.stderr,
        flush=True,
    )
