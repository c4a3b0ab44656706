"""The gateway's uvicorn server: shutting down ends every open stream response at once, and
every connection's kernel send buffer is bounded.

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
from shared.settings import Settings


class GatewayServer(uvicorn.Server):
    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        app = self.config.app
        gateway: Gateway | None = (
            getattr(app.state, "gateway", None) if isinstance(app, FastAPI) else None
        )
        if gateway is not None:
            gateway.hub.drain()
        await super().shutdown(sockets)


def listening_socket(host: str, port: int, settings: Settings) -> socket.socket:
    """The gateway's listening socket, with ``TOKENRELAY_SEND_BUFFER_BYTES`` as the kernel send
    buffer of every connection accepted on it (Linux passes it on): with the ~64 KB uvicorn
    buffers before a send waits, that is all a client that stops reading can hold. (Left to
    itself, loopback autotuning lets one connection hold megabytes.)"""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if settings.send_buffer_bytes:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, settings.send_buffer_bytes)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock
