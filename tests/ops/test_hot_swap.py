"""Hot swap under load against the real Redis, and the model holder's swap rules.

The load test runs the app in an in-process uvicorn on a free port and hits it with
concurrent httpx clients while versions are promoted and one is rolled back.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import uvicorn
from driftrec.online_update.embeddings.vector_store import RedisVectorStore
from driftrec.online_update.registry.versions import ModelRegistry
from driftrec.ops.bench.serve_world import TINY_MODEL as TINY
from driftrec.ops.bench.serve_world import World, drop_prefix, seed_world
from driftrec.ops.serving import LoadedModel, ModelHolder, create_app
from driftrec.ops.settings import Settings
from pydantic import SecretStr

pytestmark = pytest.mark.integration


@pytest.fixture
def world(live_settings: Settings, redis_prefix: str, tmp_path: Path) -> Iterator[World]:
    settings = live_settings.model_copy(
        update={"redis_prefix": redis_prefix, "data_dir": tmp_path, "admin_token": SecretStr("t")}
    )
    yield seed_world(settings, items=60, users=10, events=500, versions=5, model=TINY)
    drop_prefix(settings)


@pytest.fixture
def registry(world: World) -> Iterator[ModelRegistry]:
    client = redis.Redis.from_url(world.settings.redis_url)
    prefix = world.settings.redis_prefix
    yield ModelRegistry(client, world.settings.data_dir / "registry", prefix=f"{prefix}registry:")
    client.close()


def holder_for(registry: ModelRegistry, world: World, **options: Any) -> ModelHolder:
    vectors = RedisVectorStore(registry.redis, f"{world.settings.redis_prefix}emb:")
    return ModelHolder(registry, vectors, **options)


@pytest.fixture
def server(world: World) -> Iterator[str]:
    """The app on uvicorn in a thread; yields its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(world.settings, poll_s=0.5)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert uv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(30)


def number(version: str) -> int:
    return int(version.lstrip("v"))


def test_hot_swap_under_load(server: str, world: World, registry: ModelRegistry) -> None:
    v = world.versions
    stop = threading.Event()
    seen: list[list[str]] = [[] for _ in range(6)]
    failures: list[str] = []

    def client(k: int) -> None:
        body = {"user_id": f"user{k}", "item_ids": world.items[:30], "k": 5}
        with httpx.Client(base_url=server, timeout=10) as http:
            while not stop.is_set():
                try:
                    r = http.post("/recommend", json=body)
                except httpx.HTTPError as error:
                    failures.append(repr(error))
                    continue
                if r.status_code != 200:
                    failures.append(f"{r.status_code} {r.text}")
                else:
                    seen[k].append(r.json()["model_version"])

    def serving_is(version: str) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if httpx.get(f"{server}/healthz").json()["serving"] == version:
                time.sleep(0.3)  # let every client get a few answers from it
                return
            time.sleep(0.02)
        pytest.fail(f"the server never swapped to {version}")

    threads = [threading.Thread(target=client, args=(k,)) for k in range(len(seen))]
    for t in threads:
        t.start()
    try:
        serving_is(v[0])
        for target in v[1:4]:
            registry.promote(target, reason="test")
            serving_is(target)
        registry.rollback(reason="test")  # v[3] -> v[2]
        serving_is(v[2])
        registry.promote(v[4], reason="test")
        serving_is(v[4])
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert failures == []
    rollback = (number(v[3]), number(v[2]))
    saw_rollback = 0
    for versions in seen:
        assert len(versions) > 20
        nums = [number(x) for x in versions]
        back = [i for i in range(1, len(nums)) if nums[i] < nums[i - 1]]
        # Never backwards, except once: the rollback, after which v[3] never comes back.
        assert back == [] or [(nums[i - 1], nums[i]) for i in back] == [rollback], versions
        if back:
            assert v[3] not in versions[back[0] :]
            saw_rollback += 1
    assert saw_rollback > 0
    assert {x for versions in seen for x in versions} == set(v)
    metrics = httpx.get(f"{server}/metrics").text
    assert "driftrec_model_swaps_total 6.0" in metrics


def test_polling_alone_picks_up_a_change(world: World, registry: ModelRegistry) -> None:
    holder = holder_for(registry, world, listen=False, poll_s=0.1)
    holder.start()
    try:
        assert holder.current is not None and holder.current.version == world.versions[0]
        # A pointer change nobody announced (pub/sub is at most once).
        registry.redis.set(f"{registry.prefix}active", world.versions[2])
        deadline = time.monotonic() + 5
        while holder.current.version != world.versions[2] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert holder.current.version == world.versions[2]
    finally:
        holder.stop()


def test_a_stale_announcement_does_not_move_the_holder(
    world: World, registry: ModelRegistry
) -> None:
    registry.promote(world.versions[2], reason="test")
    holder = holder_for(registry, world, poll_s=5.0)
    holder.start()
    try:
        time.sleep(0.3)  # subscribed
        stale = {
            "version": world.versions[0],
            "previous": None,
            "reason": "late",
            "ts": "2024-01-01T00:00:00+00:00",
        }
        registry.redis.publish(registry.channel, json.dumps(stale))
        time.sleep(0.5)
        assert holder.current is not None and holder.current.version == world.versions[2]
        assert holder.swaps == 1
    finally:
        holder.stop()


def test_a_rollback_during_a_load_wins(world: World, registry: ModelRegistry) -> None:
    holder = holder_for(registry, world)
    assert holder.sync() and holder.current is not None
    registry.promote(world.versions[1], reason="test")
    load = holder.load

    def slow_load(version: str) -> LoadedModel:
        loaded = load(version)
        registry.rollback(reason="while it loaded")
        return loaded

    holder.load = slow_load  # type: ignore[method-assign]  # the seam this test needs
    assert holder.sync() is False
    assert holder.current.version == world.versions[0]  # never served the rolled-back one


def test_a_corrupt_artifact_is_not_swapped_in(world: World, registry: ModelRegistry) -> None:
    failures: list[str] = []
    holder = holder_for(registry, world, on_failure=lambda v, e: failures.append(v))
    assert holder.sync()
    registry.promote(world.versions[1], reason="test")
    path = Path(registry.get(world.versions[1]).artifact)
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    assert holder.sync() is False
    assert holder.current is not None and holder.current.version == world.versions[0]
    assert holder.last_error is not None and "sha256" in holder.last_error
    assert failures == [world.versions[1]]
    assert holder.sync() is False and failures == [world.versions[1]]  # retried later, not now
    registry.rollback(reason="it does not load")
    assert holder.sync() is False and holder.last_error is None  # healthy again


def test_models_without_a_pinned_embedding_follow_the_store(
    world: World, registry: ModelRegistry
) -> None:
    info = registry.get(world.versions[0])
    unpinned = info.model_copy(update={"embedding_version": ""})
    registry.redis.hset(
        f"{registry.prefix}version:{info.version}",
        "meta",
        unpinned.model_dump_json(exclude={"status"}),
    )
    holder = holder_for(registry, world)
    assert holder.sync()
    assert holder.current is not None
    assert holder.current.embedding_version == world.embedding_version
    holder.vectors.set_active("newer")
    holder.sync()
    assert holder.current.embedding_version == "newer" and holder.swaps == 1
    assert datetime.now(UTC) > info.created_at
