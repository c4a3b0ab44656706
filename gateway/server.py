"""The gateway's uvicorn server: shutting down ends every open stream response at once,
every connection's kernel send buffer is bounded and a connection whose peer vanished is
closed by the kernel.

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
    """The gateway's listening socket. Every connection accepted on it inherits (on Linux):

    - ``TOKENRELAY_SEND_BUFFER_BYTES`` as its kernel send buffer: with the ~64 KB uvicorn
      buffers before a send waits, that is all a client that stops reading can hold. (Left
      to itself, loopback autotuning lets one connection hold megabytes.)
    - dead-peer detection after ``TOKENRELAY_SEND_TIMEOUT_S`` (see ``_reap_vanished_peers``).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if settings.send_buffer_bytes:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, settings.send_buffer_bytes)
    if settings.send_timeout_s:
        _reap_vanished_peers(sock, settings.send_timeout_s)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def _reap_vanished_peers(sock: socket.socket, after_s: float) -> None:
    """A peer that vanished without a FIN or RST (a phone that lost its network, a crashed
    NAT) leaves a half-open connection that would live for ~15 minutes of retransmissions,
    or for ever while idle. The kernel closes it instead, and its response ends:

    - ``TCP_USER_TIMEOUT``: data (a ping, an event) left unacknowledged for ``after_s``;
    - TCP keep-alive: an idle connection probed after ``after_s`` of silence, three times.
    """
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_USER_TIMEOUT"):  # Linux only, as are the keep-alive timings
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(after_s * 1000))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(1, round(after_s)))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, round(after_s / 3)))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
