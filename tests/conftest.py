"""Shared fixtures: settings that point at the real Kafka and Redis `make test` started.

Each integration test gets fresh topic names and a fresh Redis key prefix, so tests
never see each other's data (CONVENTIONS point 7).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis as redis_module
from driftrec.ops.settings import Settings


@pytest.fixture(scope="session")
def live_settings() -> Settings:
    """Settings for the running services; fails loudly when they are not up."""
    settings = Settings()
    from driftrec.ops.infra.kafka import KafkaBroker
    from driftrec.ops.infra.redis import RedisServer

    down = [
        f"{s.process.name} at {s.address}"
        for s in (KafkaBroker(settings), RedisServer(settings))
        if not s.healthy()
    ]
    if down:
        pytest.fail(
            f"integration tests need {', '.join(down)}: run `make test` (which starts them) "
            "or `driftrec up` first",
            pytrace=False,
        )
    return settings


@pytest.fixture
def isolated(live_settings: Settings) -> Iterator[Settings]:
    """Settings with topic names unique to this test."""
    tag = uuid.uuid4().hex[:10]
    yield live_settings.model_copy(
        update={
            "topic_events": f"t{tag}.events",
            "topic_items": f"t{tag}.items",
            "topic_examples": f"t{tag}.examples",
            "topic_metrics": f"t{tag}.metrics",
            "topic_deadletter": f"t{tag}.deadletter",
        }
    )


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A Redis key prefix unique to this test; its keys are deleted afterwards."""
    prefix = f"test:{uuid.uuid4().hex[:10]}:"
    yield prefix
    import redis

    try:
        client = redis.Redis.from_url(Settings().redis_url, socket_connect_timeout=1)
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()
    except redis.ConnectionError:
        pass  # a unit test that never reached Redis left nothing behind


@pytest.fixture
def redis_client(live_settings: Settings) -> Iterator[redis_module.Redis]:
    client = redis_module.Redis.from_url(live_settings.redis_url)
    yield client
    client.close()


@pytest.fixture(autouse=True)
def _offline_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing may download weights at run time."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


os.environ.setdefault("HF_HUB_OFFLINE", "1")
