"""Contract checks run over every architecture x task-balancing method (CONVENTIONS 3).

The learners here have every part: a wide part, standardised dense inputs, and
micro-batches of 16 rows, so a batch of 32 takes two steps."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from driftrec.core.errors import ConfigError
from driftrec.models import ARCHS, BALANCING_METHODS, ModelConfig
from driftrec.models.batch import Batch
from driftrec.models.synthetic import StreamSpec, SyntheticStream
from driftrec.online_update.learning.checkpoint import (
    CheckpointError,
    load_checkpoint,
    restore,
    save_checkpoint,
)
from driftrec.online_update.learning.learner import LearnerConfig, OnlineLearner

COMBOS = list(itertools.product(ARCHS, BALANCING_METHODS))
SPEC = StreamSpec(text_dim=8, n_dense=3, n_users=40, n_items=60)


def config(arch: str, balancing: str, **kw: object) -> LearnerConfig:
    model = ModelConfig(
        arch=arch,  # type: ignore[arg-type]
        text_dim=8,
        n_dense=3,
        user_buckets=97,
        item_buckets=89,
        category_buckets=5,
        expert_sizes=(16,),
        tower_sizes=(8,),
        bottom_sizes=(16,),
        text_proj_dim=8,
        id_dim=8,
        seed=3,
    )
    values: dict[str, object] = {"micro_batch": 16, **kw}
    return LearnerConfig(model=model, balancing=balancing, metric_window=50, **values)  # type: ignore[arg-type]


def batches(n: int, size: int = 32, seed: int = 0) -> list[Batch]:
    stream = SyntheticStream(dataclasses.replace(SPEC, seed=seed))
    return [stream.batch(size) for _ in range(n)]


def same_predictions(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(("arch", "balancing"), COMBOS)
def test_checkpoint_round_trip_predicts_and_trains_identically(
    arch: str, balancing: str, tmp_path: Path
) -> None:
    cfg = config(arch, balancing, shared_every=3)
    data = batches(6)
    learner = OnlineLearner(cfg)
    for b in data[:2]:  # 4 steps: gradients are pending towards the next shared step
        learner.learn_many(b)
    assert learner.steps_seen == 4
    save_checkpoint(learner, tmp_path / "ckpt.pt", offsets={"events:0": 41})
    restored, meta = load_checkpoint(tmp_path / "ckpt.pt", cfg)
    assert meta.offsets == {"events:0": 41} and restored.examples_seen == learner.examples_seen
    assert restored.steps_seen == learner.steps_seen
    # The dense statistics and the wide part's Adagrad state came back too.
    assert restored.model.dense_norm is not None and int(restored.model.dense_norm.count) == 64
    wide_state = restored.optimizers["wide"].state_dict()["state"]
    assert wide_state and all(
        torch.equal(wide_state[k]["sum"], v["sum"])
        for k, v in learner.optimizers["wide"].state_dict()["state"].items()
    )
    probe = data[5]
    assert same_predictions(learner.predict_many(probe), restored.predict_many(probe))
    assert restored.summary() == pytest.approx(learner.summary(), nan_ok=True)
    for b in data[2:5]:
        a, r = learner.learn_many(b), restored.learn_many(b)
        assert same_predictions(a.predictions, r.predictions)
        assert a.loss == r.loss
    assert same_predictions(learner.predict_many(probe), restored.predict_many(probe))
    for (name, x), y in zip(
        learner.model.state_dict().items(), restored.model.state_dict().values(), strict=True
    ):
        assert torch.equal(x, y), name


@pytest.mark.parametrize(("arch", "balancing"), COMBOS)
def test_same_seed_same_stream_same_predictions(arch: str, balancing: str) -> None:
    data = batches(4)
    a, b = OnlineLearner(config(arch, balancing)), OnlineLearner(config(arch, balancing))
    for batch in data[:3]:
        ra, rb = a.learn_many(batch), b.learn_many(batch)
        assert same_predictions(ra.predictions, rb.predictions)
    assert same_predictions(a.predict_many(data[3]), b.predict_many(data[3]))
    clone = a.clone()
    assert clone.config == a.config and clone.examples_seen == clone.steps_seen == 0
    fresh = OnlineLearner(a.config)
    for (name, x), y in zip(
        clone.model.state_dict().items(), fresh.model.state_dict().values(), strict=True
    ):
        assert torch.equal(x, y), name  # untrained: no statistics, a zero wide part
    assert set(clone.optimizers) == set(a.optimizers) >= {"wide"}


@pytest.mark.parametrize(("arch", "balancing"), COMBOS)
def test_new_and_unseen_ids_score_fine(arch: str, balancing: str) -> None:
    learner = OnlineLearner(config(arch, balancing))
    for batch in batches(3):
        learner.learn_many(batch)
    fresh = batches(1, size=16, seed=99)[0]
    unseen = Batch(
        **{
            **fresh.__dict__,
            "user": torch.arange(16) + 10**15,
            "item": torch.arange(16) * 7919 + 2**61,
            "category": torch.full((16,), 123_456),
            "has_text": torch.zeros(16),
            "text": torch.zeros(16, 8),
        }
    )
    for preds in (
        learner.predict_many(unseen),
        OnlineLearner(config(arch, balancing)).predict_many(unseen),
    ):
        assert all(np.isfinite(v).all() for v in preds.values())
        assert ((preds["click"] > 0) & (preds["click"] < 1)).all()
        assert (preds["conversion"] <= preds["click"]).all()
        assert (preds["dwell"] >= 0).all()
    learner.learn_many(unseen)  # learning from them is fine too


@pytest.mark.parametrize(("arch", "balancing"), COMBOS)
def test_input_batch_is_never_mutated(arch: str, balancing: str) -> None:
    learner = OnlineLearner(config(arch, balancing))
    batch = batches(1)[0]
    copy = Batch(**{k: None if v is None else v.clone() for k, v in batch.__dict__.items()})
    learner.learn_many(batch)
    learner.predict_many(batch)
    learner.learn_many(batch)
    for field in dataclasses.fields(Batch):
        assert torch.equal(getattr(batch, field.name), getattr(copy, field.name)), field.name


@pytest.mark.parametrize(("arch", "balancing"), COMBOS)
def test_loading_a_checkpoint_of_another_config_raises(
    arch: str, balancing: str, tmp_path: Path
) -> None:
    learner = OnlineLearner(config(arch, balancing))
    learner.learn_many(batches(1)[0])
    path = tmp_path / "ckpt.pt"
    save_checkpoint(learner, path)
    other_arch = ARCHS[(ARCHS.index(arch) + 1) % len(ARCHS)]
    with pytest.raises(CheckpointError, match=r"another config.*arch"):
        load_checkpoint(path, config(other_arch, balancing))
    with pytest.raises(CheckpointError, match="balancing"):
        restore(OnlineLearner(config(arch, "fixed" if balancing != "fixed" else "gradnorm")), path)


@pytest.mark.parametrize(("arch", "balancing"), COMBOS)
def test_learn_many_metrics_use_predictions_made_before_the_update(
    arch: str, balancing: str
) -> None:
    learner = OnlineLearner(config(arch, balancing))
    for batch in batches(3):
        before = learner.predict_many(batch)
        step = learner.learn_many(batch)
        np.testing.assert_allclose(step.predictions["click"], before["click"], rtol=1e-6, atol=1e-7)
        assert not same_predictions(learner.predict_many(batch), before)  # and it did learn
    assert step.examples_seen == learner.examples_seen == 96
    assert step.steps == 2 and learner.steps_seen == 6


@pytest.mark.parametrize("arch", ARCHS)
def test_heads_step_every_batch_shared_layers_every_k(arch: str) -> None:
    learner = OnlineLearner(config(arch, "uncertainty", shared_every=3, micro_batch=32))
    groups = learner.model.parameter_groups()

    def snapshot() -> dict[str, list[torch.Tensor]]:
        return {name: [p.detach().clone() for p in ps] for name, ps in groups.items()}

    def changed(before: dict[str, list[torch.Tensor]], name: str) -> bool:
        return any(not torch.equal(a, b) for a, b in zip(before[name], groups[name], strict=True))

    start = snapshot()
    balance = learner.balancer.weights()
    for i, batch in enumerate(batches(3)):
        step = learner.learn_many(batch)
        assert step.shared_updated == (i == 2)
        assert changed(start, "head") and changed(start, "wide")
        assert changed(start, "shared") == changed(start, "embedding") == (i == 2)
    assert not torch.equal(balance, learner.balancer.weights())


@pytest.mark.parametrize("arch", ARCHS)
def test_a_batch_takes_one_step_per_micro_batch_and_shared_steps_count_steps(arch: str) -> None:
    learner = OnlineLearner(config(arch, "fixed", micro_batch=10, shared_every=4))
    data = batches(2, size=25)
    first = learner.learn_many(data[0])  # rows 0-9, 10-19, 20-24: steps 1-3
    assert (first.steps, first.shared_updated) == (3, False)
    second = learner.learn_many(data[1])  # steps 4-6: the shared layers step at 4
    assert (second.steps, second.shared_updated, learner.steps_seen) == (3, True, 6)
    norm = learner.model.dense_norm
    assert norm is not None and int(norm.count) == 50  # statistics move once per batch
    wide = learner.model.wide
    assert wide is not None and wide.text_score is not None  # on by default
    counted = int(wide.text_score.norm.count)  # rows with text and a click history
    assert 0 < counted <= 50
    learner.predict_many(data[0])  # scoring moves no statistics
    assert int(wide.text_score.norm.count) == counted and int(norm.count) == 50


def test_unlabelled_batches_can_be_scored_but_not_learned() -> None:
    learner = OnlineLearner(config("mmoe", "fixed"))
    batch = batches(1)[0]
    unlabelled = Batch(**{**batch.__dict__, "click": None, "conversion": None, "dwell": None})
    assert set(learner.predict_many(unlabelled)) == {"click", "conversion", "dwell"}
    with pytest.raises(ConfigError, match=r"learn_many needs Batch\.click"):
        learner.learn_many(unlabelled)
    assert learner.examples_seen == 0
