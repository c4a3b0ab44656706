"""The gateway's uvicorn server: shutting down ends every open stream response at once.

On SIGTERM uvicorn stops accepting connections and then waits (up to
``TOKENRELAY_SHUTDOWN_GRACE_S``) for open responses to finish, which a live stream does not do
by itself. So the drain comes first: ``/readyz`` answers 503 ``shutting_down``, every reader
ends its response without a terminal event, new reads get 503 with ``Retry-After``, and each
client reconnects — through the load balancer, to another replica — and resumes from its
last offset, losing nothing.
"""

from __future__ import annotations

import socket

import uvicorn
from fastapi import FastAPI

from gateway.context import Gateway


class GatewayServer(uvicorn.Server):
    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        app = self.config.app
        gateway: Gateway | None = (
            getattr(app.state, "gateway", None) if isinstance(app, FastAPI) else None
        )
        if gateway is not None:
            gateway.hub.drain()
        await super().shutdown(sockets)
