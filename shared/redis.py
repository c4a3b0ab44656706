"""Redis clients, made in one place so pools are sized and closed consistently."""

from __future__ import annotations

import os

from redis.asyncio import BlockingConnectionPool, Redis


def client_name(role: str) -> str:
    """``tokenrelay-<role>:<pid>``: in ``CLIENT LIST``, which process holds a connection."""
    return f"tokenrelay-{role}:{os.getpid()}"


def shared_client(url: str, *, max_connections: int, role: str) -> Redis:
    """A client whose pool never holds more than ``max_connections`` connections.

    Callers beyond that wait for a free connection instead of opening another one, which
    is what keeps a gateway's Redis connections constant however many clients it serves.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=10,
        decode_responses=True,
        client_name=client_name(role),
        health_check_interval=30,
        socket_connect_timeout=5,
    )
    client: Redis = Redis.from_pool(pool)  # closing the client closes its pool
    return client


def single_client(url: str, *, role: str) -> Redis:
    """A client for one long-lived connection (pub/sub)."""
    client: Redis = Redis.from_url(
        url,
        decode_responses=True,
        client_name=client_name(role),
        health_check_interval=30,
        socket_connect_timeout=5,
    )
    return client
