"""A small, real serving world in Redis: catalog, text vectors, features, model versions.

`driftrec bench serve` and the serving tests seed one under a fresh key prefix and data
dir, then delete it with ``drop_prefix``. Nothing is faked: vectors come from
``HashingTextEncoder`` on the item titles, features from a ``FeatureState`` that saw
random impressions and clicks (written through ``RedisFeatureStore``), and each version
is an ``OnlineLearner`` trained a little further, checkpointed and published.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import redis
from driftrec.core import Click, Example, Impression, Item
from driftrec.features import FeatureEncoder, FeatureState
from driftrec.models import ModelConfig
from driftrec.online_update.embeddings import HashingTextEncoder, RedisVectorStore
from driftrec.online_update.learning import LearnerConfig, OnlineLearner, save_checkpoint
from driftrec.online_update.registry import ModelRegistry
from driftrec.ops.settings import Settings
from driftrec.stream import RedisFeatureStore

__all__ = ["TINY_MODEL", "World", "drop_prefix", "seed_world"]

#: A model small enough that the serving tests train and publish versions in milliseconds.
TINY_MODEL = ModelConfig(
    user_buckets=512,
    item_buckets=512,
    category_buckets=64,
    id_dim=4,
    text_dim=16,
    text_proj_dim=8,
    bottom_sizes=(8,),
    expert_sizes=(8,),
    n_experts=2,
    tower_sizes=(4,),
)


T0 = datetime(2024, 6, 1, 8, tzinfo=UTC)
_WORDS = [
    "alpine",
    "ballet",
    "cricket",
    "derby",
    "economy",
    "festival",
    "galaxy",
    "harbour",
    "island",
    "jazz",
    "kernel",
]


@dataclass
class World:
    """What ``seed_world`` wrote: the ids and the published versions, oldest first."""

    settings: Settings
    users: list[str]
    items: list[str]
    versions: list[str] = field(default_factory=list)
    embedding_version: str = ""


def _titles(rng: random.Random, n: int) -> list[str]:
    return [" ".join(rng.sample(_WORDS, 3)) + f" {k}" for k in range(n)]


def seed_world(
    settings: Settings,
    *,
    items: int = 1000,
    users: int = 200,
    events: int = 4000,
    versions: int = 2,
    model: ModelConfig | None = None,
    seed: int = 0,
) -> World:
    """Catalog, vectors, features and ``versions`` published versions (the first active)."""
    rng = random.Random(seed)
    model = model or ModelConfig()
    client = redis.Redis.from_url(settings.redis_url)
    prefix = settings.redis_prefix
    world = World(settings, [f"user{k}" for k in range(users)], [f"item{k}" for k in range(items)])
    catalog = [
        Item(item_id=i, title=t, category=f"cat{k % 20}", ts=T0 + timedelta(seconds=k))
        for k, (i, t) in enumerate(zip(world.items, _titles(rng, items), strict=True))
    ]
    encoder = HashingTextEncoder(dim=model.text_dim, seed=seed)
    vectors = RedisVectorStore(client, prefix=f"{prefix}emb:")
    world.embedding_version = f"bench-hash-{model.text_dim}"
    vectors.declare(world.embedding_version, encoder=encoder.version, dim=model.text_dim)
    matrix = encoder.encode([item.title for item in catalog])
    vectors.put(world.embedding_version, world.items, matrix)
    vectors.set_active(world.embedding_version)
    by_id = dict(zip(world.items, matrix, strict=True))

    state, examples = FeatureState(), []
    for entry in catalog:
        state.observe(entry)
    start = T0 + timedelta(seconds=items)
    for k in range(events):
        ts = start + timedelta(seconds=k)
        user, item = rng.choice(world.users), rng.choice(world.items)
        impression = Impression(event_id=f"i{k}", user_id=user, item_id=item, ts=ts)
        clicked = rng.random() < 0.1 + 0.3 * (by_id[item][0] > 0)  # learnable from text
        examples.append(
            Example(
                impression=impression,
                features=state.snapshot(impression),
                clicked=clicked,
                converted=clicked and rng.random() < 0.3,
                dwell_seconds=rng.uniform(5, 120) if clicked else None,
                ready_ts=ts,
            )
        )
        state.observe(impression)
        if clicked:
            state.observe(Click(event_id=f"c{k}", user_id=user, item_id=item, ts=ts))
    store = RedisFeatureStore(client, prefix)
    store.write_items(catalog)
    store.write(state, world.users, world.items, as_of=start + timedelta(seconds=events))

    def lookup(ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        return vectors.get(world.embedding_version, ids, model.text_dim)

    learner = OnlineLearner(LearnerConfig(model=model))
    batches = np.array_split(np.arange(len(examples)), max(versions, 1))
    registry = ModelRegistry(client, settings.data_dir / "registry", prefix=f"{prefix}registry:")
    scratch = Path(tempfile.mkdtemp(prefix="driftrec-seed-"))
    try:
        parent = None
        for rows in batches[:versions]:
            batch = FeatureEncoder(model.text_dim).examples_to_batch(
                [examples[int(j)] for j in rows], lookup
            )
            learner.learn_many(batch)
            path = scratch / "checkpoint.pt"
            save_checkpoint(learner, path, embedding_version=world.embedding_version)
            info = registry.publish(
                path,
                parent=parent,
                examples_seen=learner.examples_seen,
                offsets={},
                metrics=dict(learner.summary()),
                embedding_version=world.embedding_version,
                config_fingerprint=learner.config.fingerprint(),
            )
            world.versions.append(info.version)
            parent = info.version
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if world.versions:
        registry.promote(world.versions[0], reason="seed")
    client.close()
    return world


def drop_prefix(settings: Settings) -> None:
    """Delete every Redis key under ``settings.redis_prefix``."""
    client = redis.Redis.from_url(settings.redis_url)
    try:
        keys = list(client.scan_iter(match=f"{settings.redis_prefix}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()
