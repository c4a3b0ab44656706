"""``tokenrelay gateway | worker | dev | mock-model`` — uvicorn's habits, ``--help`` on each."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Coroutine
from typing import Any

import uvicorn

try:
    import uvloop
except ImportError:  # pragma: no cover - not on Linux
    uvloop = None  # type: ignore[assignment]


def _serve(main: Coroutine[Any, Any, None]) -> None:
    """Run a long-lived process on uvloop where it is installed (it is, on Linux)."""
    if uvloop is not None:
        uvloop.run(main)
    else:
        asyncio.run(main)


def _gateway(args: argparse.Namespace) -> None:
    from gateway.app import create_app
    from gateway.server import GatewayServer, listening_socket
    from shared.settings import Settings

    settings = Settings()
    config = uvicorn.Config(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
        proxy_headers=True,
        access_log=args.access_log,
        loop="uvloop" if uvloop is not None else "asyncio",
        http="httptools",
    )
    GatewayServer(config).run(sockets=[listening_socket(args.host, args.port, settings)])


def _worker(args: argparse.Namespace) -> None:
    from producer.arq_worker import run_worker
    from shared.settings import Settings

    _serve(run_worker(Settings()))


def _dev(args: argparse.Namespace) -> None:
    from tokenrelay.dev import run_dev

    _serve(run_dev(args.host, args.port))


def _mock_model(args: argparse.Namespace) -> None:
    from producer.mockmodel import serve

    _serve(serve(args.host, args.port, args.defaults))


def _run(args: argparse.Namespace) -> None:
    from tokenrelay.run import run

    try:
        code = asyncio.run(
            run(
                args.prompt,
                url=args.url,
                model=args.model,
                api_key=args.api_key,
                max_tokens=args.max_tokens,
            )
        )
    except KeyboardInterrupt:
        code = 130  # the generation was cancelled
    sys.exit(code)


def _admin(args: argparse.Namespace) -> None:
    from tokenrelay.admin_cli import main as admin_main

    try:
        code = admin_main(args)
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


def _add_gateway_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """``--url`` and ``--token`` of ``tokenrelay admin``: with their defaults on ``admin``
    itself, without them (``SUPPRESS``) on each subcommand, so that either place works and
    a value given after the subcommand wins."""

    def default(value: str | None) -> str | None:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--url",
        default=default("http://127.0.0.1:8000"),
        help="the gateway; default: http://127.0.0.1:8000",
    )
    parser.add_argument(
        "--token",
        default=default(os.environ.get("TOKENRELAY_ADMIN_TOKEN")),
        help="default: $TOKENRELAY_ADMIN_TOKEN (prefer it: arguments show in `ps`)",
    )


def _add_admin(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from shared.status import Status

    admin = commands.add_parser("admin", help="inspect and manage streams through the admin API")
    _add_gateway_options(admin, defaults=True)
    admin.set_defaults(run=_admin)
    gateway_options = argparse.ArgumentParser(add_help=False)
    _add_gateway_options(gateway_options, defaults=False)
    actions = admin.add_subparsers(dest="admin_command", required=True)

    def action(name: str, help: str) -> argparse.ArgumentParser:
        return actions.add_parser(name, help=help, parents=[gateway_options])

    ls = action("ls", help="list streams, newest first")
    ls.add_argument("--status", choices=[status.value for status in Status])
    ls.add_argument("--limit", type=int, help="streams per page (1-500; the gateway's default 50)")
    ls.add_argument("--all", action="store_true", help="every page, not just the first")

    show = action("show", help="a stream's status, timings, size and readers")
    show.add_argument("id")

    tail = action(
        "tail", help="print a stream as it is generated (text, reasoning, tool calls, refusals)"
    )
    tail.add_argument("id")
    tail.add_argument("--after", help="start after this offset (default: from the start)")

    cancel = action("cancel", help="stop a stream's generation")
    cancel.add_argument("id")

    purge = action("purge", help="delete every key of a stream")
    purge.add_argument("id")
    purge.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    action("stats", help="queue, workers, gateways and Redis")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="tokenrelay",
        description="Stream LLM output to browsers through Redis Streams. "
        "Settings come from TOKENRELAY_* environment variables.",
    )
    root.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    commands = root.add_subparsers(dest="command", required=True)

    gateway = commands.add_parser("gateway", help="serve the HTTP API (FastAPI on uvicorn)")
    gateway.add_argument("--host", default="127.0.0.1")
    gateway.add_argument("--port", type=int, default=8000)
    gateway.add_argument(
        "--access-log", action="store_true", help="log every request (off: streams log their steps)"
    )
    gateway.set_defaults(run=_gateway)

    worker = commands.add_parser("worker", help="run generation jobs (arq)")
    worker.set_defaults(run=_worker)

    dev = commands.add_parser(
        "dev", help="gateway + worker + mock model in one process; no key, no setup"
    )
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    dev.set_defaults(run=_dev)

    mock = commands.add_parser("mock-model", help="serve the OpenAI-compatible mock model")
    mock.add_argument("--host", default="127.0.0.1")
    mock.add_argument("--port", type=int, default=9000)
    mock.add_argument(
        "--defaults",
        default="",
        help="options for requests whose model name leaves them out, e.g. 'rate=0'",
    )
    mock.set_defaults(run=_mock_model)

    run = commands.add_parser(
        "run", help="create a stream and print its answer as it arrives (Ctrl-C cancels it)"
    )
    run.add_argument("prompt")
    run.add_argument("--url", default="http://127.0.0.1:8000")
    run.add_argument("--model", default="mock")
    run.add_argument(
        "--api-key",
        default=os.environ.get("TOKENRELAY_API_KEY"),
        help="default: $TOKENRELAY_API_KEY; none is needed against `tokenrelay dev`",
    )
    run.add_argument("--max-tokens", type=int)
    run.set_defaults(run=_run)

    _add_admin(commands)
    return root


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    try:
        args.run(args)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
