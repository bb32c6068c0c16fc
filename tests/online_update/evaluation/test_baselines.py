"""The evaluation's systems: static freezes, periodic retrains on schedule, river sees
the documented features, and every one fits the evaluator's interface."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from driftrec.core.errors import ConfigError
from driftrec.models import ModelConfig
from driftrec.models.batch import Batch
from driftrec.models.synthetic import StreamSpec, SyntheticStream
from driftrec.online_update.evaluation.baselines import (
    EvalSystem,
    OnlineSystem,
    PeriodicSystem,
    RiverClickSystem,
    StaticSystem,
    make_river_fm,
    make_river_lr,
    river_features,
    strip_labels,
)
from driftrec.online_update.learning.learner import LearnerConfig, OnlineLearner
from sklearn.metrics import roc_auc_score

SPEC = StreamSpec(text_dim=8, n_dense=3, n_users=50, n_items=200, seed=3)
CFG = LearnerConfig(
    model=ModelConfig(
        text_dim=8,
        n_dense=3,
        user_buckets=256,
        item_buckets=256,
        category_buckets=16,
        expert_sizes=(16,),
        tower_sizes=(8,),
    )
)


def _state(learner: OnlineLearner) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in learner.model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_strip_labels_keeps_the_rows_and_drops_every_label() -> None:
    batch = SyntheticStream(SPEC).batch(5)
    bare = strip_labels(batch)
    assert (bare.click, bare.conversion, bare.dwell) == (None, None, None)
    assert torch.equal(bare.dense, batch.dense) and torch.equal(bare.user, batch.user)
    assert batch.click is not None  # the input is untouched


def test_static_learns_exactly_its_share_then_freezes() -> None:
    stream = SyntheticStream(SPEC)
    static = StaticSystem("static", OnlineLearner(CFG), train_examples=300)
    probe = stream.batch(64)
    for _ in range(2):
        static.learn_many(stream.batch(128))
    assert not static.frozen and static.learner.examples_seen == 256
    static.learn_many(stream.batch(128))  # only 44 of these rows are learned
    assert static.frozen and static.learner.examples_seen == 300
    frozen, before = _state(static.learner), static.predict_many(probe)["click"]
    for _ in range(3):
        static.learn_many(stream.batch(128))
    assert static.learner.examples_seen == 300
    assert _same(frozen, _state(static.learner))
    np.testing.assert_array_equal(before, static.predict_many(probe)["click"])


def test_periodic_retrains_from_scratch_on_schedule_over_the_window() -> None:
    stream = SyntheticStream(SPEC)
    periodic = PeriodicSystem("periodic", CFG, every=200, window=300, epochs=2, batch_size=64)
    probe = stream.batch(32)
    untrained = periodic.predict_many(probe)["click"]
    np.testing.assert_array_equal(untrained, OnlineLearner(CFG).predict_many(probe)["click"])
    last = untrained
    for i in range(10):  # 1280 rows in batches of 128
        model_before = periodic.learner
        periodic.learn_many(stream.batch(128))
        now = periodic.predict_many(probe)["click"]
        if periodic.learner is model_before:  # no retrain: the served model did not move
            np.testing.assert_array_equal(now, last)
        last = now
        assert periodic.seen == 128 * (i + 1)
    assert periodic.retrained_at == [200, 400, 600, 800, 1000, 1200]
    # Each retrain starts fresh and sees the last `window` rows `epochs` times.
    assert periodic.learner.examples_seen == 2 * 300
    assert periodic.learner.batches_seen == 2 * 5  # ceil(300 / 64) batches per epoch


def test_periodic_before_its_first_window_fills_uses_what_it_has() -> None:
    periodic = PeriodicSystem("periodic", CFG, every=100, window=1000, epochs=1)
    periodic.learn_many(SyntheticStream(SPEC).batch(150))
    assert periodic.retrained_at == [100]
    assert periodic.learner.examples_seen == 100  # rows after the retrain wait for the next


def test_river_features_are_ids_dense_and_text_cosine() -> None:
    n = 3
    text = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    interest = torch.tensor([[2.0, 0.0], [1.0, 1.0], [1.0, 0.0]])
    batch = Batch(
        user=torch.tensor([11, 12, 13]),
        item=torch.tensor([21, 22, 23]),
        category=torch.tensor([5, 5, 6]),
        text=text,
        has_text=torch.tensor([1.0, 1.0, 0.0]),
        interest=interest,
        dense=torch.arange(2 * n, dtype=torch.float32).reshape(n, 2),
    )
    rows = river_features(batch)
    assert rows[0] == {
        "user=11": 1.0,
        "item=21": 1.0,
        "category=5": 1.0,
        "dense0": 0.0,
        "dense1": 1.0,
        "has_text": 1.0,
        "text_cos": pytest.approx(1.0),
    }
    assert rows[1]["text_cos"] == pytest.approx(2**-0.5)
    assert rows[2]["text_cos"] == 0.0  # no text vector: no cosine


def test_river_systems_score_then_learn_the_click_task() -> None:
    stream = SyntheticStream(StreamSpec(text_dim=8, n_dense=3, n_users=50, n_items=200, seed=3))
    for make in (make_river_lr, make_river_fm):
        system = RiverClickSystem("river", make(3))
        fresh = system.predict_many(strip_labels(stream.batch(16)))
        assert list(fresh) == ["click"] and np.allclose(fresh["click"], 0.5, atol=1e-3)
        for _ in range(12):
            system.learn_many(stream.batch(256))
        test = stream.batch(1000)
        p = system.predict_many(strip_labels(test))["click"]
        assert ((p >= 0) & (p <= 1)).all()
        assert roc_auc_score(test.click.numpy(), p) > 0.7  # type: ignore[union-attr]


def test_river_learning_needs_labels() -> None:
    system = RiverClickSystem("river_lr", make_river_lr(3))
    with pytest.raises(ConfigError, match="labelled"):
        system.learn_many(strip_labels(SyntheticStream(SPEC).batch(4)))


def test_every_system_fits_the_evaluator_interface() -> None:
    systems = [
        OnlineSystem("online", OnlineLearner(CFG)),
        StaticSystem("static", OnlineLearner(CFG), 10),
        PeriodicSystem("periodic", CFG, every=10, window=10, epochs=1),
        RiverClickSystem("river_lr", make_river_lr(3)),
    ]
    for system in systems:
        assert isinstance(system, EvalSystem)
        assert "click" in system.tasks
    with pytest.raises(ConfigError):
        PeriodicSystem("periodic", CFG, every=0, window=10, epochs=1)
    with pytest.raises(ConfigError):
        StaticSystem("static", OnlineLearner(CFG), -1)


def test_river_feature_order_does_not_depend_on_the_hash_seed() -> None:
    model = make_river_fm(3)
    rows = river_features(SyntheticStream(SPEC).batch(2))
    model.learn_one(rows[0], True)
    keys = list(model["TransformerUnion"].transform_one(rows[1]))
    assert keys[3:] == ["dense0", "dense1", "dense2", "has_text", "text_cos"]
