"""Redis clients, made in one place so pools are sized and closed consistently, for the three
kinds of Redis a URL can name:

* ``redis://host:port/db`` (or ``rediss://``, ``unix://``): one server;
* ``redis+sentinel://host:26379,host2:26379/<service>[/db]``: the master that Redis Sentinel
  names for ``<service>``, followed through failovers;
* ``redis+cluster://host:port,host2:port``: Redis Cluster, for the stream data only (every
  key of a stream shares its ``{id}`` hash tag, so each stream lives on one slot). The job
  queue cannot be on a cluster (arq): give it its own ``TOKENRELAY_QUEUE_REDIS_URL``.

A process's shared client never holds more than its ``max_connections`` connections per
Redis server; callers beyond that wait for a free one instead of opening another.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

SENTINEL_SCHEME = "redis+sentinel"
CLUSTER_SCHEME = "redis+cluster"

_COMMON: dict[str, Any] = {"health_check_interval": 30, "socket_connect_timeout": 5}


def client_name(role: str) -> str:
    """``tokenrelay-<role>:<pid>``: in ``CLIENT LIST``, which process holds a connection."""
    return f"tokenrelay-{role}:{os.getpid()}"


@dataclass(frozen=True)
class Servers:
    """A ``redis+sentinel://`` or ``redis+cluster://`` URL, taken apart: its hosts, the
    parts of its path (a Sentinel service and db), its password."""

    hosts: list[tuple[str, int]]
    path: list[str]
    password: str | None

    @classmethod
    def parse(cls, url: str, default_port: int) -> Servers:
        parts = urlsplit(url)
        userinfo, _, hostlist = parts.netloc.rpartition("@")
        hosts = []
        for item in hostlist.split(","):
            host, _, port = item.rpartition(":") if ":" in item else (item, "", "")
            hosts.append((host, int(port) if port else default_port))
        password = unquote(userinfo.partition(":")[2]) if userinfo else None
        return cls(hosts, [p for p in parts.path.split("/") if p], password or None)


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """The Sentinel-managed pool, waiting for a free connection like ``BlockingConnectionPool``."""


def _sentinel_pool(url: str, *, max_connections: int | None, **kwargs: Any) -> ConnectionPool:
    servers = Servers.parse(url, default_port=26379)
    if not servers.path:
        raise ValueError(f"{url}: name the Sentinel service: redis+sentinel://host:26379/<name>")
    service, db = servers.path[0], int(servers.path[1]) if len(servers.path) > 1 else 0
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        servers.hosts, socket_connect_timeout=5, password=servers.password
    )
    pool_class = _BlockingSentinelPool if max_connections else SentinelConnectionPool
    options = {"max_connections": max_connections, "timeout": 10} if max_connections else {}
    if max_connections and "socket_timeout" in kwargs:
        options["timeout"] = kwargs["socket_timeout"]
    pool: ConnectionPool = pool_class(  # type: ignore[no-untyped-call]
        service,
        sentinel,
        is_master=True,
        db=db,
        password=servers.password,
        **options,
        **_COMMON,
        **kwargs,
    )
    return pool


def refuse_cluster_for_queue(url: str) -> None:
    """The job queue (and so any bounded pool, which only the queue and single servers use)
    cannot be on Redis Cluster: arq does not support it."""
    if url.startswith(f"{CLUSTER_SCHEME}:"):
        raise ValueError(
            f"{url}: the job queue cannot be on Redis Cluster (arq does not support it); "
            "set TOKENRELAY_QUEUE_REDIS_URL to a separate Redis"
        )


def bounded_pool(
    url: str, *, max_connections: int, timeout_s: float = 10, **kwargs: Any
) -> ConnectionPool:
    """A pool of at most ``max_connections`` for one server or a Sentinel-managed master;
    ``timeout_s`` bounds both a reply and the wait for a free connection."""
    refuse_cluster_for_queue(url)
    if url.startswith(f"{SENTINEL_SCHEME}:"):
        return _sentinel_pool(
            url, max_connections=max_connections, socket_timeout=timeout_s, **kwargs
        )
    pool: ConnectionPool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout_s,
        socket_timeout=timeout_s,
        **_COMMON,
        **kwargs,
    )
    return pool


class _BoundedCluster(RedisCluster):
    """Redis Cluster with at most ``limit`` commands or pipelines in flight per process, so at
    most ``limit`` connections per node, and callers beyond that wait (where RedisCluster
    itself would fail with ``MaxConnectionsError``)."""

    def __init__(self, *args: Any, limit: int, **kwargs: Any) -> None:
        super().__init__(*args, max_connections=limit, **kwargs)
        self._gate = asyncio.Semaphore(limit)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self._gate:
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        pipe = super().pipeline(transaction, shard_hint)
        execute, gate = pipe.execute, self._gate

        async def gated(*args: Any, **kwargs: Any) -> Any:
            async with gate:
                return await execute(*args, **kwargs)

        pipe.execute = gated  # type: ignore[method-assign]
        return pipe


def shared_client(url: str, *, max_connections: int, role: str, timeout_s: float = 10) -> Redis:
    """The process's client for every command: ``max_connections`` per server at most, each
    reply (and the wait for a free connection) bounded by ``timeout_s``."""
    name = client_name(role)
    if url.startswith(f"{CLUSTER_SCHEME}:"):
        servers = Servers.parse(url, default_port=6379)
        cluster = _BoundedCluster(  # type: ignore[abstract]
            startup_nodes=[ClusterNode(host, port) for host, port in servers.hosts],
            limit=max_connections,
            password=servers.password,
            socket_timeout=timeout_s,
            decode_responses=True,
            client_name=name,
            **_COMMON,
        )
        # RedisCluster serves the same commands (scripts and pipelines included) as Redis
        return cast(Redis, cluster)
    pool = bounded_pool(
        url,
        max_connections=max_connections,
        timeout_s=timeout_s,
        decode_responses=True,
        client_name=name,
    )
    client: Redis = Redis.from_pool(pool)  # closing the client closes its pool
    return client


def single_client(url: str, *, role: str) -> Redis:
    """A client for one long-lived connection (pub/sub).

    On Redis Cluster, a connection to the first node named: PUBLISH reaches every node's
    subscribers, wherever the script that published ran.
    """
    name = client_name(role)
    if url.startswith(f"{CLUSTER_SCHEME}:"):
        servers = Servers.parse(url, default_port=6379)
        (host, port), password = servers.hosts[0], servers.password
        return Redis(
            host=host,
            port=port,
            password=password,
            decode_responses=True,
            client_name=name,
            **_COMMON,
        )
    if url.startswith(f"{SENTINEL_SCHEME}:"):
        pool = _sentinel_pool(url, max_connections=None, decode_responses=True, client_name=name)
        sentinel_client: Redis = Redis.from_pool(pool)
        return sentinel_client
    client: Redis = Redis.from_url(url, decode_responses=True, client_name=name, **_COMMON)
    return client
