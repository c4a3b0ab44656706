"""The Redis URLs tokenrelay understands, and the clear refusal of a queue on Redis Cluster."""

from __future__ import annotations

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import SentinelConnectionPool

from shared.queue import queue_redis
from shared.redis import bounded_pool, shared_client, single_client


async def test_a_sentinel_url_names_the_sentinels_the_service_and_the_db() -> None:
    queue = queue_redis(
        "redis+sentinel://10.0.0.1:26379,10.0.0.2/cache/3", "q", role="t", max_connections=3
    )
    pool = queue.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    sentinels = [c.connection_pool.connection_kwargs for c in pool.sentinel_manager.sentinels]
    assert [(s["host"], s["port"]) for s in sentinels] == [("10.0.0.1", 26379), ("10.0.0.2", 26379)]
    assert (pool.service_name, pool.connection_kwargs["db"], pool.max_connections) == (
        "cache",
        3,
        3,
    )
    assert queue.default_queue_name == "q"
    await queue.aclose()
    pool = bounded_pool("redis+sentinel://:secret@10.0.0.1:26379/cache/3", max_connections=4)
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "cache" and pool.max_connections == 4
    assert pool.connection_kwargs["db"] == 3 and pool.connection_kwargs["password"] == "secret"


def test_a_sentinel_url_without_a_service_is_refused() -> None:
    with pytest.raises(ValueError, match="name the Sentinel service"):
        bounded_pool("redis+sentinel://10.0.0.1:26379", max_connections=2)


def test_the_job_queue_cannot_be_on_a_cluster() -> None:
    with pytest.raises(ValueError, match="TOKENRELAY_QUEUE_REDIS_URL"):
        queue_redis("redis+cluster://10.0.0.1:7000", "q", role="t", max_connections=2)


async def test_a_cluster_url_makes_a_cluster_client_and_a_hub_on_its_first_node() -> None:
    client = shared_client(
        "redis+cluster://10.0.0.1:7000,10.0.0.2:7001", max_connections=5, role="t"
    )
    hub = single_client("redis+cluster://10.0.0.1:7000,10.0.0.2:7001", role="t")
    try:
        assert isinstance(client, RedisCluster)
        assert sorted(node.port for node in client.nodes_manager.startup_nodes.values()) == [
            7000,
            7001,
        ]
        kwargs = hub.connection_pool.connection_kwargs
        assert (kwargs["host"], kwargs["port"]) == ("10.0.0.1", 7000)
    finally:
        await hub.aclose()
        await client.aclose()
