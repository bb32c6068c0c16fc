"""Training/serving parity: the same impressions scored through the trainer's path and
through the serving path get the same features, the same batch and the same predictions.

Trainer path: the joiner's ``FeatureState.snapshot`` of each impression in an ``Example``,
``FeatureEncoder.examples_to_batch`` with the vector store's lookup (as
``Trainer.learn``), ``predict_many``. Serving path: ``Scorer.batch`` and ``Scorer.score``
over the Redis feature store that the same state was written to, with the model the
server loaded: the columnar fast path (``read_candidates``, ``candidates_to_batch``, the
cached vectors), compared tensor by tensor with the trainer's batch.
"""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from driftrec.core import Click, Example, Impression, Item
from driftrec.features import FeatureEncoder, FeatureState
from driftrec.ops.bench.serve_world import T0, TINY_MODEL, drop_prefix, seed_world
from driftrec.ops.serving.app import build_services
from driftrec.ops.serving.schemas import BlendWeights
from driftrec.ops.serving.scoring import Scorer, blend
from driftrec.ops.settings import Settings
from driftrec.stream import user_shard
from driftrec.stream.feature_store import RedisFeatureStore

pytestmark = pytest.mark.integration


def test_trainer_and_serving_paths_agree(
    live_settings: Settings, redis_prefix: str, tmp_path: Path
) -> None:
    settings = live_settings.model_copy(
        update={"redis_prefix": redis_prefix, "data_dir": tmp_path, "partitions": 2}
    )
    world = seed_world(settings, items=60, users=10, events=600, versions=1, model=TINY_MODEL)
    services = build_services(settings, listen=False)
    try:
        # The joiner's state for one events partition, written as the joiner writes it.
        rng = random.Random(5)
        user = world.users[3]
        shard = user_shard(user, settings.partitions)
        state = FeatureState(services.features.config)
        for k, item in enumerate(world.items):  # the catalog, as seed_world wrote it
            state.observe(
                Item(item_id=item, title="t", category=f"cat{k % 20}", ts=T0 + timedelta(seconds=k))
            )
        for k in range(300):
            ts = T0 + timedelta(hours=2, seconds=k)
            other = rng.choice(world.users)
            if user_shard(other, settings.partitions) == shard:
                item = rng.choice(world.items)
                state.observe(Impression(event_id=f"p{k}", user_id=other, item_id=item, ts=ts))
                if k % 3 == 0:  # clicks give users a history: the interest vector
                    state.observe(Click(event_id=f"c{k}", user_id=other, item_id=item, ts=ts))
        as_of = T0 + timedelta(hours=2, seconds=300)
        writer = RedisFeatureStore(services.client, redis_prefix, services.features.config)
        writer.write(state, world.users, world.items, as_of=as_of, shard=shard)

        assert services.holder.sync()
        model = services.holder.current
        assert model is not None
        candidates = rng.sample(world.items, 25)
        scored = services.scorer.score(model, user, candidates, as_of, BlendWeights())
        served_batch, served_as_of = services.scorer.batch(model, user, candidates, as_of)
        assert served_as_of == as_of

        impressions = [
            Impression(event_id=f"t{j}", user_id=user, item_id=item, ts=as_of)
            for j, item in enumerate(candidates)
        ]
        examples = [
            Example(impression=i, features=state.snapshot(i), clicked=False, ready_ts=as_of)
            for i in impressions
        ]
        served_features, _ = services.features.read(user, candidates, as_of, shard=shard)
        assert served_features == [e.features for e in examples]

        def lookup(ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
            version = model.embedding_version or ""
            return services.vectors.get(version, ids, TINY_MODEL.text_dim)

        encoder = FeatureEncoder(TINY_MODEL.text_dim, services.features.config)
        trained_batch = encoder.examples_to_batch(examples, lookup)
        assert trained_batch.has_text.sum() > 0 and trained_batch.interest.abs().sum() > 0
        for name in ("user", "item", "category", "dense", "text", "has_text", "interest"):
            np.testing.assert_array_equal(
                np.asarray(getattr(trained_batch, name)), np.asarray(getattr(served_batch, name))
            )
        preds = model.learner.predict_many(trained_batch)
        click, conversion, dwell_s, score = blend(preds, BlendWeights())
        np.testing.assert_allclose(scored.click, click, rtol=1e-6)
        np.testing.assert_allclose(scored.conversion, conversion, rtol=1e-6)
        np.testing.assert_allclose(scored.dwell_s, dwell_s, rtol=1e-6)
        np.testing.assert_allclose(scored.score, score, rtol=1e-6)
    finally:
        services.client.close()
        drop_prefix(settings)


def test_cached_item_vectors_are_dropped_on_swap(
    live_settings: Settings, redis_prefix: str, tmp_path: Path
) -> None:
    settings = live_settings.model_copy(update={"redis_prefix": redis_prefix, "data_dir": tmp_path})
    world = seed_world(settings, items=30, users=5, events=200, versions=2, model=TINY_MODEL)
    services = build_services(settings, listen=False)
    try:
        assert services.holder.sync()
        candidates, user = world.items[:10], world.users[0]

        def scores(scorer: Scorer) -> np.ndarray:
            model = services.holder.current
            assert model is not None
            return scorer.score(model, user, candidates, None, BlendWeights()).score

        before = scores(services.scorer)
        # the embedder rewrites one item's vector within the same embedding version
        changed = np.full((1, TINY_MODEL.text_dim), 0.25, np.float32)
        services.vectors.put(world.embedding_version, candidates[:1], changed)
        fresh = Scorer(services.features, services.vectors, settings.partitions)
        assert not np.allclose(scores(fresh), before)  # the vector matters...
        np.testing.assert_array_equal(scores(services.scorer), before)  # ...but is cached

        services.registry.promote(world.versions[1], reason="test")
        assert services.holder.sync()  # the swap drops the cache
        fresh = Scorer(services.features, services.vectors, settings.partitions)
        np.testing.assert_array_equal(scores(services.scorer), scores(fresh))
    finally:
        services.client.close()
        drop_prefix(settings)
