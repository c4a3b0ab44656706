"""Redis clients, made in one place so pools are sized and closed consistently."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis


def shared_client(url: str, *, max_connections: int, name: str) -> Redis:
    """A client whose pool never holds more than ``max_connections`` connections.

    Callers beyond that wait for a free connection instead of opening another one, which
    is what keeps a gateway's Redis connections constant however many clients it serves.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=10,
        decode_responses=True,
        client_name=name,
        health_check_interval=30,
        socket_connect_timeout=5,
    )
    return Redis(connection_pool=pool)
