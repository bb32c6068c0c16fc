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
    admin_token: SecretStr | None = Field(
        None,
        description="Bearer token for admin endpoints (promote, rollback); unset = admin disabled.",
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment once."""
    return Settings()
