"""Every tunable of tokenrelay: one pydantic-settings class read from ``TOKENRELAY_*``."""

from __future__ import annotations

from functools import cached_property
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CommaList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """Settings shared by the gateway, the worker and the CLI.

    List settings are comma-separated (``TOKENRELAY_API_KEYS=key1,key2``). Secrets have no
    usable default: outside dev mode a missing signing key fails at start-up.
    """

    model_config = SettingsConfigDict(env_prefix="TOKENRELAY_", extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    queue_redis_url: str | None = Field(
        default=None, description="Redis for the arq job queue; defaults to redis_url."
    )
    key_prefix: str = "tokenrelay"

    api_keys: CommaList = Field(default_factory=list)
    admin_token: SecretStr | None = None
    signing_key: SecretStr | None = None
    signing_key_previous: SecretStr | None = None
    """A rotated-out signing key: its read tokens stay valid (until they expire) while every
    replica moves to the new one. Remove it once READ_TOKEN_TTL_S has passed."""
    cors_origins: CommaList = Field(default_factory=list)
    """Browser origins allowed to call the API from other sites (``*`` for any)."""
    read_token_ttl_s: int = 24 * 3600
    demo: bool = False
    demo_creates_per_minute: int = 30
    creates_per_minute: int = 600
    """Streams one API key may create per minute, across all replicas (0: no limit)."""
    max_active_generations: int = 200
    """Generations of one API key (or demo address) queued or running at once (0: no limit)."""
    demo_model: str = "mock"
    ds_open: bool = False
    """Durable streams (``/v1/ds``) without credentials: anyone may create, write, read and
    delete them (for the protocol's conformance suite; on under ``tokenrelay dev``)."""
    ds_long_poll_s: float = 20.0
    """How long a durable stream's long-poll read waits for data before its 204."""
    ds_sse_s: float = 60.0
    """How long a durable stream's SSE response lasts before the client reconnects (the
    protocol asks for about a minute, so that CDNs can collapse readers)."""

    retention_s: int = 3600
    queued_ttl_s: int = 24 * 3600
    max_stream_events: int = 100_000
    max_indexed_streams: int = 1_000_000
    max_body_bytes: int = 4 * 1024 * 1024
    idempotency_ttl_s: int = 24 * 3600

    upstream_timeout_s: float = 60.0
    upstream_connect_timeout_s: float = 10.0
    upstream_max_retries: int = 2
    """Times a generation asks the upstream again after it failed before the first token
    (429, 5xx, timeouts, broken connections), waiting as its ``Retry-After`` says."""
    upstream_max_retry_wait_s: float = 30.0
    """Longest a generation waits in all for those retries: an upstream that asks for a
    longer wait ends it at once with ``rate_limit_exceeded`` (retryable)."""
    lease_s: float = 15.0
    cancel_poll_s: float = 0.25
    coalesce_max_chars: int = 4096
    coalesce_linger_ms: float = 0.0
    job_timeout_s: int = 3600
    max_jobs: int = 200
    worker_poll_s: float = 0.05
    worker_pool_size: int = 32
    worker_metrics_port: int = 0
    worker_metrics_host: str = "127.0.0.1"
    redis_retry_s: float = 30.0
    """How long a worker retries Redis (a restart, a failover) before failing a generation."""
    worker_drain_s: int = 10
    """On SIGTERM a worker takes no new jobs and lets running generations finish for this
    long; the rest end with ``producer_lost`` (retryable). 0: end them at once."""

    ping_interval_s: float = 15.0
    max_readers_per_stream: int = 10_000
    """Readers of one stream a gateway process serves at once (0: no cap)."""
    max_readers_per_address: int = 1_000
    """Open reads from one client address a gateway process serves at once (0: no cap)."""
    send_buffer_bytes: int = 262_144
    """Kernel send buffer of each gateway connection (0: the kernel's autotuning)."""
    send_timeout_s: float = 30.0
    """A stream response whose client has read nothing for this long is cut (it resumes if
    it is still there): a frozen or half-open connection holds nothing for long."""
    sse_retry_ms: int = 1000
    read_batch: int = 512
    reader_pool_size: int = 5
    redis_timeout_s: float = 3.0
    """Longest wait for a Redis reply, or for a free pooled connection: past it, a gateway
    answers 503 instead of letting requests pile up behind a slow or stopped Redis."""
    shutdown_grace_s: float = 5.0

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @cached_property
    def effective_queue_redis_url(self) -> str:
        return self.queue_redis_url or self.redis_url

    @property
    def lease_ttl_s(self) -> float:
        """How long a lease lives unrenewed.

        A worker renews its lease every ``cancel_poll_s``; a lease left to expire is declared
        lost by the next liveness check (at most one second later), so the whole of
        ``lease_s`` bounds how long readers wait on a dead worker.
        """
        return max(self.lease_s - 2.0, 1.0)

    def require_signing_key(self) -> bytes:
        if self.signing_key is None or not self.signing_key.get_secret_value():
            raise RuntimeError(
                "TOKENRELAY_SIGNING_KEY is not set: the gateway needs it to sign read tokens "
                "(any long random string, the same on every gateway replica)"
            )
        return self.signing_key.get_secret_value().encode()
