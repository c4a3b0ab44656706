"""What one gateway process holds for its whole life, opened and closed in one place."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from redis.exceptions import RedisError
from starlette.requests import Request

from gateway.auth import Authenticator, ReadTokens
from gateway.durable.store import DurableStore
from gateway.hub import Hub
from gateway.index_sweep import IndexSweep
from gateway.quotas import Quotas
from gateway.reader_caps import ReaderCaps
from gateway.registry import ReaderRegistry
from gateway.streaming import StuckSends
from gateway.watchdog import Watchdog
from shared.looplag import measuring_loop_lag
from shared.presence import process_id
from shared.queue import JobQueue
from shared.redis import shared_client, single_client
from shared.settings import Settings
from shared.store import StreamStore

log = logging.getLogger("tokenrelay.gateway")


@dataclass(frozen=True, slots=True)
class Gateway:
    settings: Settings
    store: StreamStore
    hub: Hub
    queue: JobQueue
    auth: Authenticator
    registry: ReaderRegistry
    quotas: Quotas
    stuck_sends: StuckSends
    reader_caps: ReaderCaps
    durable: DurableStore


def gateway_of(request: Request) -> Gateway:
    """The gateway serving ``request``."""
    gateway: Gateway = request.app.state.gateway
    return gateway


@asynccontextmanager
async def open_gateway(settings: Settings) -> AsyncIterator[Gateway]:
    """Connections for the process, whatever its number of clients: a pool of at most
    ``reader_pool_size`` for every command, one pub/sub connection for the hub, at most
    two for enqueuing jobs."""
    auth = Authenticator(
        settings.api_keys,
        ReadTokens(
            settings.require_signing_key(),
            settings.read_token_ttl_s,
            previous_keys=[settings.signing_key_previous.get_secret_value().encode()]
            if settings.signing_key_previous
            else [],
        ),
        demo=settings.demo,
        admin_token=settings.admin_token.get_secret_value() if settings.admin_token else None,
    )
    redis = shared_client(
        settings.redis_url,
        max_connections=settings.reader_pool_size,
        role="gateway",
        timeout_s=settings.redis_timeout_s,
    )
    notifications = single_client(settings.redis_url, role="gateway-hub")
    store = StreamStore(redis, settings)
    durable = DurableStore(redis, settings, store.batcher)
    hub = Hub(notifications, store.keys)
    queue = JobQueue.connect(
        settings.effective_queue_redis_url,
        store.keys.queue,
        role="gateway-queue",
    )
    try:
        await store.load_scripts()
        await durable.load_scripts()
    except RedisError as exc:  # not fatal: Redis may come up later, scripts load on use
        log.warning("could not preload scripts: %s", exc)
    registry = ReaderRegistry(
        redis, store.keys, process_id(), ttl_s=settings.retention_s + settings.job_timeout_s
    )
    watchdog = Watchdog(hub, store, settings.ping_interval_s)
    index_sweep = IndexSweep(store)
    await hub.start()
    await registry.start()
    await watchdog.start()
    await index_sweep.start()
    stuck_sends = StuckSends(settings.send_timeout_s)
    await stuck_sends.start()
    try:
        async with measuring_loop_lag():
            yield Gateway(
                settings=settings,
                store=store,
                hub=hub,
                queue=queue,
                auth=auth,
                registry=registry,
                quotas=Quotas(store, settings),
                stuck_sends=stuck_sends,
                reader_caps=ReaderCaps(
                    settings.max_readers_per_stream, settings.max_readers_per_address
                ),
                durable=durable,
            )
    finally:
        await stuck_sends.stop()
        await index_sweep.stop()
        await watchdog.stop()
        await registry.stop()
        await hub.stop()
        await queue.close()
        await notifications.aclose()
        await redis.aclose()
