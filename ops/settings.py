"""The one settings class of a driftrec process (environment prefix ``DRIFTREC_``).

``Settings`` is ``driftrec.core.DriftrecConfig`` read from the environment, plus what
only ``ops/`` needs (the local broker, the admin token). Lower layers receive it as a
``DriftrecConfig`` argument and never read the environment themselves. CLI flags fall
back to these values; every field is documented because ``driftrec config`` prints them.
"""

from __future__ import annotations

from functools import lru_cache

from driftrec.core import DriftrecConfig
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings"]


class Settings(BaseSettings, DriftrecConfig):
    """Everything a driftrec process is configured with."""

    model_config = SettingsConfigDict(env_prefix="DRIFTREC_", frozen=True, extra="forbid")

    kafka_version: str = Field(
        "3.9.1", description="Apache Kafka broker version `driftrec up` fetches."
    )
    kafka_heap: str = Field("768m", description="Java heap of the local Kafka broker (at most 1g).")
    serve_port: int = Field(
        8000, ge=1, le=65535, description="Port of `driftrec serve` and of the demo's API."
    )
    max_request_bytes: int = Field(
        1 << 20,
        ge=1024,
        description="Largest HTTP request body the API reads; larger ones get 413 unread.",
    )
    scoring_threads: int = Field(
        1,
        ge=1,
        le=64,
        description="Requests one API process scores at once; the rest queue. Scoring is "
        "mostly Python under the GIL: more threads thrash it (measured: 40 threads cost "
        "1.9x the CPU per request of one). Raise it only when Redis round trips dominate.",
    )
    redis_timeout_s: float = Field(
        1.0,
        gt=0,
        description="Socket timeout of the API's Redis calls: a hung Redis gets a 503 "
        "after this long instead of holding the request.",
    )
    admin_token: SecretStr | None = Field(
        None,
        description="Bearer token for admin endpoints (promote, rollback); unset = admin disabled.",
    )
    metrics_port: int = Field(
        9465,
        ge=0,
        le=65535,
        description="Port of the worker's Prometheus /metrics (0 = off; one worker per port).",
    )
    metrics_host: str = Field(
        "127.0.0.1", description="Address the worker's /metrics listens on (0.0.0.0 in Docker)."
    )
    heartbeat_timeout_s: float = Field(
        15.0,
        gt=0,
        description="A worker whose last status is older than this is shown as gone "
        "(`watch`, dashboard).",
    )
    rate_window_s: float = Field(
        10.0, gt=0, description="Events/s and examples/s are averaged over this sliding window."
    )
    freshness_target_s: float = Field(
        5.0, gt=0, description="Freshness p95 above this is shown as behind (`watch`, dashboard)."
    )
    lag_target: int = Field(
        10_000, ge=0, description="Total consumer lag above this is shown as behind."
    )
    reference_window_s: float = Field(
        60.0,
        gt=0,
        description="Dashboard: the reference band covers this many seconds before the "
        "active version's promotion.",
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment once."""
    return Settings()
