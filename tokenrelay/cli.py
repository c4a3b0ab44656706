"""``tokenrelay gateway | worker | dev | mock-model`` — uvicorn's habits, ``--help`` on each."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

import uvicorn


def _gateway(args: argparse.Namespace) -> None:
    from gateway.app import create_app
    from shared.settings import Settings

    settings = Settings()
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
        proxy_headers=True,
    )


def _worker(args: argparse.Namespace) -> None:
    from producer.arq_worker import run_worker
    from shared.settings import Settings

    asyncio.run(run_worker(Settings()))


def _dev(args: argparse.Namespace) -> None:
    from tokenrelay.dev import run_dev

    asyncio.run(run_dev(args.host, args.port))


def _mock_model(args: argparse.Namespace) -> None:
    from producer.mockmodel import serve

    asyncio.run(serve(args.host, args.port))


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
