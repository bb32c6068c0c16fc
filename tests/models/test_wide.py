"""The wide part and the running standardisation of dense inputs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from driftrec.models import ARCHS, MultiTaskModel
from driftrec.models.synthetic import SyntheticStream
from driftrec.models.wide import RunningStandardiser, TextScore, WidePart
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.models.test_mtl_models import SPEC, small


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=8),
    seed=st.integers(0, 1000),
)
def test_running_statistics_equal_numpy_over_every_row_below_the_horizon(
    sizes: list[int], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    rows = [rng.normal(3.0, 2.0, size=(n, 4)) * rng.uniform(0.1, 10, size=4) for n in sizes]
    norm = RunningStandardiser(4, horizon=10_000)
    for part in rows:
        norm.observe(torch.tensor(part, dtype=torch.float32))
    data = np.concatenate(rows)
    np.testing.assert_allclose(norm.mean.numpy(), data.mean(axis=0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(norm.var.numpy(), data.var(axis=0), rtol=1e-3, atol=1e-4)
    assert int(norm.count) == len(data)


def test_beyond_the_horizon_the_mean_follows_a_shift() -> None:
    norm = RunningStandardiser(1, horizon=100)
    for _ in range(20):
        norm.observe(torch.zeros(50, 1))
    for _ in range(20):
        norm.observe(torch.full((50, 1), 10.0))
    assert float(norm.mean) > 9.9  # an all-time mean would be 5
    z = norm(torch.tensor([[10.0], [1000.0]]))
    assert z[1, 0] == norm.clip  # clipped at clip standard deviations


def test_wide_part_starts_at_zero_and_leaves_the_deep_initialisation_alone() -> None:
    batch = SyntheticStream(SPEC).batch(32)
    with_wide, without = MultiTaskModel(small()), MultiTaskModel(small(wide=False))
    assert torch.equal(with_wide(batch), without(batch))
    wide = with_wide.wide
    assert isinstance(wide, WidePart)
    assert all(not p.detach().any() for p in wide.parameters())
    assert wide.bias.sparse


@pytest.mark.parametrize("arch", ARCHS)
def test_only_observe_dense_moves_the_statistics(arch: str) -> None:
    stream = SyntheticStream(SPEC)
    model = MultiTaskModel(small(arch))
    batch = stream.batch(64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model(batch)
    model.eval()
    model(batch)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    model.observe_dense(batch.dense)
    norm = model.dense_norm
    assert norm is not None and int(norm.count) == 64
    assert "dense_norm.mean" in model.state_dict()  # travels with every checkpoint


def test_standardised_inputs_reach_both_parts() -> None:
    batch = SyntheticStream(SPEC).batch(64)
    model = MultiTaskModel(small())
    model.observe_dense(batch.dense)
    assert model.wide is not None
    with torch.no_grad():
        model.wide.linear.weight[0, 0] = 1.0  # type: ignore[union-attr]  # n_dense=3: built
    shifted = type(batch)(**{**batch.__dict__, "dense": batch.dense * 100 + 7})
    plain = MultiTaskModel(small(standardise_dense=False))
    assert plain.dense_norm is None
    # Standardised, a scaled copy of the inputs with its own statistics scores the same.
    other = MultiTaskModel(small())
    other.load_state_dict(model.state_dict())
    other.dense_norm.count.zero_()  # type: ignore[union-attr]
    other.observe_dense(shifted.dense)
    torch.testing.assert_close(model(batch), other(shifted), rtol=1e-4, atol=1e-4)


def test_text_score_is_the_standardised_text_interest_product_of_rows_with_both() -> None:
    batch = SyntheticStream(SPEC).batch(64)
    # row 0 has no text, row 1 no click history: both score 0 and leave the statistics
    has_text = batch.has_text.clone()
    has_text[0] = 0.0
    interest = batch.interest.clone()
    interest[1] = 0.0
    batch = dataclasses.replace(batch, has_text=has_text, interest=interest)
    score = TextScore(n_tasks=3)
    assert not score(batch).any()  # zero weight at the start
    score.observe(batch)
    raw = (batch.text * batch.interest).sum(dim=1).numpy()[2:]
    assert int(score.norm.count) == 62
    np.testing.assert_allclose(float(score.norm.mean), raw.mean(), rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        score.weight.weight.copy_(torch.tensor([[1.0], [2.0], [0.0]]))
    out = score(batch).detach()
    assert not out[:2].any()
    z = (raw - raw.mean()) / raw.std()
    np.testing.assert_allclose(out[2:, 0].numpy(), np.clip(z, -5, 5), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(out[2:, 1].numpy(), 2 * out[2:, 0].numpy(), rtol=1e-6)


@pytest.mark.parametrize("flags", [{"text_score": False}, {"use_text": False}, {"wide": False}])
def test_no_text_score_without_text_or_wide_part_or_when_switched_off(
    flags: dict[str, bool],
) -> None:
    model = MultiTaskModel(small(**flags))
    assert not any("text_score" in name for name in model.state_dict())
    model.observe_batch(SyntheticStream(SPEC).batch(8))  # a no-op for the score


def test_observe_batch_moves_the_text_score_statistics_and_checkpoints_carry_them() -> None:
    model = MultiTaskModel(small())
    batch = SyntheticStream(SPEC).batch(32)
    model.observe_batch(batch)
    state = model.state_dict()
    assert int(state["wide.text_score.norm.count"]) > 0 and int(state["dense_norm.count"]) == 32
