"""The gateway's ASGI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway import admin, errors, pages
from gateway.api import router
from gateway.body_limit import BodyLimit
from gateway.chat_completions.router import router as chat_completions
from gateway.chats.router import router as chats
from gateway.context import Gateway, open_gateway
from gateway.durable import reads as durable_reads
from gateway.durable import writes as durable_writes
from gateway.durable.access import PREFIX as DURABLE_PREFIX
from gateway.durable.fastpath import DurableStreamRequests
from gateway.durable.protocol import EXPOSED_HEADERS, REQUEST_HEADERS
from gateway.durable.security import SecurityHeaders
from gateway.fastpath import StreamReads
from gateway.models import READ_TOKEN_HEADER, STREAM_ID_HEADER, error_responses
from gateway.responses.router import router as responses
from shared.errors import RedisUnavailable, ShuttingDown
from shared.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """The gateway app; settings from the environment unless given."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_gateway(settings) as gateway:
            app.state.gateway = gateway
            yield

    app = FastAPI(
        title="tokenrelay",
        summary="Resumable streaming of LLM output through Redis Streams.",
        version="0.1.0",
        lifespan=lifespan,
    )
    errors.install(app)
    app.add_middleware(DurableStreamRequests)  # beneath the body limit
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(StreamReads)  # reads skip the layers below
    app.add_middleware(SecurityHeaders, prefix=DURABLE_PREFIX + "/")
    if settings.cors_origins:  # outermost: preflights and headers for stream reads too
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "HEAD", "POST", "PUT", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "Last-Event-ID",
                *REQUEST_HEADERS,
            ],
            # a browser calling /v1/chat/completions learns its stream by these, and a
            # durable stream's reader its offsets
            expose_headers=sorted({STREAM_ID_HEADER, READ_TOKEN_HEADER, *EXPOSED_HEADERS}),
            max_age=600,
        )
    app.include_router(router)
    app.include_router(chat_completions)
    app.include_router(responses)
    app.include_router(chats)
    app.include_router(durable_writes.router)
    app.include_router(durable_reads.router)
    app.include_router(admin.router)
    pages.install(app, settings)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], responses=error_responses(503))
    async def readyz(request: Request) -> JSONResponse:
        """Redis is reachable and this replica is not shutting down: it can serve."""
        gateway: Gateway = request.app.state.gateway
        if gateway.hub.draining:
            return errors.request_error(request, ShuttingDown())
        try:
            await gateway.store.redis.ping()
        except Exception:
            return errors.request_error(request, RedisUnavailable())
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    async def metrics() -> Response:
        """Prometheus metrics of this process."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
