"""Adopting a new embedding version: the text columns, the reset rule, the aligned rule."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from driftrec.core.errors import ConfigError
from driftrec.models import ARCHS, ModelConfig
from driftrec.models.batch import Batch
from driftrec.models.encoders import FeatureEncoder
from driftrec.models.synthetic import StreamSpec, SyntheticStream
from driftrec.online_update.learning.checkpoint import load_checkpoint, save_checkpoint
from driftrec.online_update.learning.learner import LearnerConfig, OnlineLearner
from driftrec.online_update.training.text_switch import (
    adopt_embedding_version,
    fit_projection,
    text_columns,
)

SPEC = StreamSpec(text_dim=8, n_dense=3, n_users=40, n_items=60)


def config(arch: str = "mmoe", **model: object) -> LearnerConfig:
    base = ModelConfig(
        arch=arch,  # type: ignore[arg-type]
        text_dim=8,
        n_dense=3,
        user_buckets=97,
        item_buckets=89,
        category_buckets=5,
        expert_sizes=(16,),
        tower_sizes=(8,),
        bottom_sizes=(16,),
        text_proj_dim=4,
        id_dim=4,
        seed=3,
    )
    return LearnerConfig(model=dataclasses.replace(base, **model), shared_every=2, metric_window=50)  # type: ignore[arg-type]


def batches(n: int, size: int = 32, seed: int = 0) -> list[Batch]:
    stream = SyntheticStream(dataclasses.replace(SPEC, seed=seed))
    return [stream.batch(size) for _ in range(n)]


def trained(cfg: LearnerConfig, n: int = 5) -> OnlineLearner:
    learner = OnlineLearner(cfg)
    for b in batches(n):  # odd count with shared_every=2: gradients are pending
        learner.learn_many(b)
    return learner


def with_text(batch: Batch, text: torch.Tensor, interest: torch.Tensor) -> Batch:
    return dataclasses.replace(batch, text=text, interest=interest)


def close(a: dict[str, np.ndarray], b: dict[str, np.ndarray], atol: float = 0.0) -> bool:
    return a.keys() == b.keys() and all(np.allclose(a[k], b[k], atol=atol, rtol=0) for k in a)


@pytest.mark.parametrize("interactions", [True, False])
def test_text_columns_are_exactly_the_encoder_columns_that_read_text(interactions: bool) -> None:
    cfg = dataclasses.replace(config().model, interactions=interactions)
    encoder = FeatureEncoder(cfg)
    batch = batches(1, size=6)[0]
    base = encoder(batch)
    moved = set()
    for name in ("text", "interest"):
        other = dataclasses.replace(batch, **{name: torch.randn_like(getattr(batch, name))})
        moved |= set(
            torch.nonzero((encoder(other) - base).abs().amax(dim=0) > 0).flatten().tolist()
        )
    assert sorted(moved) == text_columns(cfg)
    assert len(text_columns(cfg)) == cfg.text_proj_dim * (3 if interactions else 2)


@pytest.mark.parametrize("arch", ARCHS)
def test_reset_makes_the_model_blind_to_text_and_keeps_everything_else(arch: str) -> None:
    learner = trained(config(arch))
    before = {k: v.clone() for k, v in learner.model.state_dict().items()}
    probe = batches(1, size=16, seed=9)[0]
    old_predictions = learner.predict_many(probe)

    new, report = adopt_embedding_version(learner, 8)

    assert (report.mode, report.old_dim, report.new_dim, report.r2) == ("reset", 8, 8, None)
    # the input learner is untouched
    assert all(torch.equal(before[k], v) for k, v in learner.model.state_dict().items())
    assert close(learner.predict_many(probe), old_predictions)
    # the new one ignores text vectors: any vectors (or none) score the same
    noise = with_text(probe, torch.randn_like(probe.text), torch.randn_like(probe.interest))
    blind = with_text(probe, torch.zeros_like(probe.text), torch.zeros_like(probe.interest))
    assert close(new.predict_many(noise), new.predict_many(blind), atol=1e-6)
    # ids, towers, balancer, metrics and counters carry over
    state = new.model.state_dict()
    cols = text_columns(new.config.model)
    width = learner.model.encoder.out_dim
    first = [k for k, v in state.items() if v.dim() == 3 and v.shape[1] == width]
    assert first and all(not state[k][:, cols, :].any() for k in first)
    keep = [c for c in range(width) if c not in cols]
    assert all(torch.equal(state[k][:, keep, :], before[k][:, keep, :]) for k in first)
    fresh = ("encoder.text_proj", "encoder.interest_proj", "wide.text_score.")
    kept = [k for k in before if not k.startswith(fresh)]
    assert any("towers" in k for k in kept) and any("encoder.user" in k for k in kept)
    assert all(torch.equal(state[k], before[k]) for k in kept if k not in first)
    assert (new.examples_seen, new.batches_seen) == (learner.examples_seen, learner.batches_seen)
    assert new.steps_seen == learner.steps_seen
    # the wide part and the dense statistics read no text vector: kept, Adagrad sums too;
    # the text score starts afresh (weight, Adagrad sum and statistics)
    assert {"wide.bias.weight", "dense_norm.mean", "dense_norm.var"} <= set(kept)
    score = [k for k in state if k.startswith("wide.text_score.")]
    assert score and before["wide.text_score.weight.weight"].any()
    start = OnlineLearner(new.config).model.state_dict()
    assert all(torch.equal(state[k], start[k]) for k in score)
    old_params = dict(learner.model.named_parameters())
    for name, p in new.model.named_parameters():
        if not name.startswith("wide."):
            continue
        old_sum = learner.optimizers["wide"].state[old_params[name]]["sum"]
        new_sum = new.optimizers["wide"].state[p]["sum"]
        if name.startswith("wide.text_score."):
            assert old_sum.any() and not new_sum.any()
        else:
            assert torch.equal(old_sum, new_sum)
    np.testing.assert_array_equal(
        np.array(list(new.summary().values())), np.array(list(learner.summary().values()))
    )
    # and it learns the new space: after a few batches text matters again
    for b in batches(4, seed=5):
        new.learn_many(b)
    assert not close(new.predict_many(noise), new.predict_many(blind), atol=1e-6)


def test_reset_clears_the_optimiser_moments_of_the_zeroed_rows_only() -> None:
    learner = trained(config("shared-bottom"))
    new, _ = adopt_embedding_version(learner, 8)
    name = "backbone.bottom.layers.0.weight"
    old_p = dict(learner.model.named_parameters())[name]
    new_p = dict(new.model.named_parameters())[name]
    cols = text_columns(new.config.model)
    keep = [c for c in range(old_p.shape[1]) if c not in cols]
    opt_old, opt_new = (
        learner.optimizers["shared"].state[old_p],
        new.optimizers["shared"].state[new_p],
    )
    for key in ("exp_avg", "exp_avg_sq"):
        assert not opt_new[key][:, cols, :].any()
        assert torch.equal(opt_new[key][:, keep, :], opt_old[key][:, keep, :])
    assert new_p.grad is not None and old_p.grad is not None  # pending towards the shared step
    assert not new_p.grad[:, cols, :].any()
    assert torch.equal(new_p.grad[:, keep, :], old_p.grad[:, keep, :])


def test_a_new_dimension_is_a_new_config_that_trains_and_checkpoints(tmp_path: Path) -> None:
    learner = trained(config(share_text_projection=False))
    new, report = adopt_embedding_version(learner, 12)
    assert report.mode == "reset" and new.config.model.text_dim == 12
    assert new.config.fingerprint() != learner.config.fingerprint()
    wide = batches(3, seed=4)
    wide = [with_text(b, torch.randn(len(b), 12), torch.randn(len(b), 12)) for b in wide]
    for b in wide[:2]:
        new.learn_many(b)
    with pytest.raises(ConfigError):
        learner.predict_many(wide[2])
    save_checkpoint(new, tmp_path / "ckpt.pt", embedding_version="hashing:12")
    restored, meta = load_checkpoint(tmp_path / "ckpt.pt")
    assert meta.embedding_version == "hashing:12" and restored.config.model.text_dim == 12
    assert close(restored.predict_many(wide[2]), new.predict_many(wide[2]))


@pytest.mark.parametrize("shared", [True, False])
def test_aligned_switch_scores_the_new_vectors_as_the_old_model_scored_the_old(
    shared: bool,
) -> None:
    learner = trained(config("ple", share_text_projection=shared))
    rng = np.random.default_rng(0)
    # rotated and scaled: the projections are refitted, the text score's statistics
    # follow its dot products (4x here), so the score reads as before
    rotation = 2.0 * np.linalg.qr(rng.normal(size=(8, 8)))[0].astype(np.float32)
    old = rng.normal(size=(300, 8)).astype(np.float32)
    new, report = adopt_embedding_version(learner, 8, pairs=(old, old @ rotation), ridge=1e-6)
    assert report.mode == "aligned" and report.pairs == 300
    assert report.r2 is not None and report.r2 > 0.999
    assert learner.model.state_dict()["wide.text_score.weight.weight"].any()
    probe = batches(1, size=16, seed=9)[0]
    r = torch.from_numpy(rotation)
    rotated = with_text(probe, probe.text @ r, probe.interest @ r)
    assert close(new.predict_many(rotated), learner.predict_many(probe), atol=1e-4)


def test_unrelated_spaces_fall_back_to_reset() -> None:
    learner = trained(config())
    rng = np.random.default_rng(1)
    pairs = (rng.normal(size=(400, 8)), rng.normal(size=(400, 16)))
    new, report = adopt_embedding_version(learner, 16, pairs=pairs)
    assert report.mode == "reset" and report.r2 is not None and report.r2 < 0.5
    assert new.config.model.text_dim == 16
    few = (pairs[0][:10], pairs[1][:10])
    assert adopt_embedding_version(learner, 16, pairs=few)[1] == dataclasses.replace(
        report, pairs=10, r2=None
    )
    with pytest.raises(ConfigError, match="pairs must be"):
        adopt_embedding_version(learner, 12, pairs=pairs)


def test_fit_projection_recovers_an_affine_map_between_spaces() -> None:
    rng = np.random.default_rng(2)
    old = rng.normal(size=(500, 5))
    mix, shift = rng.normal(size=(5, 7)), rng.normal(size=7)
    new = old @ mix + shift  # wider space, offset: still an exact linear relation
    weight, bias = rng.normal(size=(3, 5)), rng.normal(size=3)
    w_new, b_new, r2 = fit_projection(weight, bias, old, new, ridge=1e-9)
    assert r2 > 0.9999
    np.testing.assert_allclose(new @ w_new.T + b_new, old @ weight.T + bias, atol=1e-3)
