"""The wide part and the running standardisation of dense inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from driftrec.models import ARCHS, MultiTaskModel
from driftrec.models.synthetic import SyntheticStream
from driftrec.models.wide import RunningStandardiser, WidePart
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
