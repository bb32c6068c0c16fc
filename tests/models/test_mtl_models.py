"""Model-level checks: shapes, parameter groups, losses (ESMM), balancers, ablations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from driftrec.core.errors import ConfigError
from driftrec.models import (
    ARCHS,
    BALANCING_METHODS,
    TASKS,
    ModelConfig,
    MultiTaskModel,
    make_balancer,
)
from driftrec.models.batch import Batch
from driftrec.models.encoders import FeatureEncoder
from driftrec.models.losses import predict, task_losses
from driftrec.models.synthetic import StreamSpec, SyntheticStream
from driftrec.models.tasks import TaskSpec

SPEC = StreamSpec(text_dim=8, n_dense=3, n_users=50, n_items=80)


def small(arch: str = "mmoe", **kw: object) -> ModelConfig:
    base: dict[str, object] = {
        "text_dim": 8,
        "n_dense": 3,
        "user_buckets": 101,
        "item_buckets": 103,
        "category_buckets": 7,
    }
    return ModelConfig(arch=arch, **{**base, **kw})  # type: ignore[arg-type]


@pytest.fixture
def batch() -> Batch:
    return SyntheticStream(SPEC).batch(64)


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_shape_and_groups_partition_parameters(arch: str, batch: Batch) -> None:
    model = MultiTaskModel(small(arch))
    out = model(batch)
    assert out.shape == (64, len(TASKS))
    assert torch.isfinite(out).all()
    groups = model.parameter_groups()
    ids = [id(p) for ps in groups.values() for p in ps]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert all(p.requires_grad for p in model.parameters())
    # The GradNorm anchor is a shared parameter.
    assert any(p is model.last_shared_weight() for p in groups["shared"])


def test_embeddings_are_sparse_and_start_small() -> None:
    model = MultiTaskModel(small())
    enc = model.encoder
    for table in (enc.user, enc.item, enc.category):
        assert table.sparse
        assert table.weight.abs().max() < 0.1


def test_same_seed_same_weights_and_global_rng_untouched() -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b = MultiTaskModel(small(seed=5)), MultiTaskModel(small(seed=5))
    c = MultiTaskModel(small(seed=6))
    assert torch.equal(torch.get_rng_state(), before)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert not all(
        torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters(), strict=True)
    )


def test_without_text_the_text_inputs_are_ignored(batch: Batch) -> None:
    model = MultiTaskModel(small(use_text=False))
    other = Batch(
        **{**batch.__dict__, "text": torch.randn(64, 99), "interest": torch.randn(64, 99)}
    )
    assert torch.equal(model(batch), model(other))
    assert model.encoder.text_proj is None


def test_text_changes_the_score_with_text(batch: Batch) -> None:
    model = MultiTaskModel(small())
    other = Batch(**{**batch.__dict__, "text": batch.text + 1.0})
    assert not torch.equal(model(batch), model(other))


def test_ids_are_reduced_modulo_buckets(batch: Batch) -> None:
    model = MultiTaskModel(small())
    shifted = Batch(**{**batch.__dict__, "user": batch.user % 101 + 101 * 7})
    assert torch.allclose(model(batch), model(shifted))


def test_wrong_dense_width_is_a_config_error(batch: Batch) -> None:
    enc = FeatureEncoder(small(n_dense=4))
    from driftrec.models.encoders import check_batch

    with pytest.raises(ConfigError, match="n_dense"):
        check_batch(batch, enc.config)


def test_predict_semantics() -> None:
    raw = torch.tensor([[2.0, -1.0, -0.5], [0.0, 3.0, 1.2]])
    p = predict(TASKS, raw)
    ctr = torch.sigmoid(raw[:, 0])
    assert torch.allclose(p[:, 0], ctr)
    assert torch.allclose(p[:, 1], ctr * torch.sigmoid(raw[:, 1]))  # pCTCVR = pCTR * pCVR
    assert torch.equal(p[:, 2], torch.tensor([0.0, 1.2]))  # log1p seconds, clamped at 0


def test_esmm_loss_is_bce_of_ctcvr_over_all_rows_and_dwell_masked() -> None:
    raw = torch.tensor([[2.0, -1.0, 3.0], [0.0, 3.0, 1.0], [-1.0, 0.5, 9.0]])
    click = torch.tensor([1.0, 0.0, 1.0])
    conv = torch.tensor([1.0, 0.0, 0.0])
    dwell = torch.tensor([2.0, 0.0, 1.0])
    b = Batch(
        user=torch.zeros(3, dtype=torch.long), item=torch.zeros(3, dtype=torch.long),
        category=torch.zeros(3, dtype=torch.long), text=torch.zeros(3, 1), has_text=torch.zeros(3),
        interest=torch.zeros(3, 1), dense=torch.zeros(3, 0), click=click, conversion=conv, dwell=dwell,
    )  # fmt: skip
    losses, valid = task_losses(TASKS, raw, b)
    pctcvr = torch.sigmoid(raw[:, 0]) * torch.sigmoid(raw[:, 1])
    assert torch.allclose(losses[0], F.binary_cross_entropy_with_logits(raw[:, 0], click))
    assert torch.allclose(losses[1], F.binary_cross_entropy(pctcvr, conv))
    assert torch.allclose(losses[2], ((raw[[0, 2], 2] - dwell[[0, 2]]) ** 2).mean())
    assert valid.all()
    no_clicks = Batch(**{**b.__dict__, "click": torch.zeros(3), "conversion": torch.zeros(3)})
    losses, valid = task_losses(TASKS, raw, no_clicks)
    assert valid.tolist() == [True, True, False] and losses[2] == 0.0


def test_esmm_loss_is_finite_at_extreme_logits() -> None:
    raw = torch.tensor([[40.0, 40.0, 0.0], [-40.0, -40.0, 0.0]], requires_grad=True)
    b = SyntheticStream(SPEC).batch(2)
    b = Batch(
        **{**b.__dict__, "click": torch.tensor([1.0, 0.0]), "conversion": torch.tensor([0.0, 0.0])}
    )
    losses, _ = task_losses(TASKS, raw, b)
    losses.sum().backward()
    assert torch.isfinite(losses).all() and torch.isfinite(raw.grad).all()  # type: ignore[arg-type]


@pytest.mark.parametrize("method", BALANCING_METHODS)
def test_balancers_share_one_interface(method: str, batch: Batch) -> None:
    model = MultiTaskModel(small())
    balancer = make_balancer(method, TASKS)  # type: ignore[arg-type]
    losses, valid = task_losses(TASKS, model(batch), batch)
    total = balancer.combine(losses, valid, model.last_shared_weight())
    assert total.dim() == 0 and math.isfinite(float(total.detach()))
    total.backward()
    balancer.after_step()
    assert balancer.weights().shape == (len(TASKS),)


def test_uncertainty_weighting_lowers_weight_of_a_noisy_task() -> None:
    balancer = make_balancer("uncertainty", TASKS)
    opt = torch.optim.Adam(balancer.parameters(), lr=0.05)
    for _ in range(200):
        opt.zero_grad()
        balancer.combine(
            torch.tensor([0.2, 0.2, 5.0]), torch.ones(3, dtype=torch.bool), None
        ).backward()
        opt.step()
    w = balancer.weights()
    assert w[2] < w[0]  # a high, irreducible loss means high variance, so a lower weight
    # Kendall: optimum exp(s) = c * weight * L
    assert torch.allclose(torch.exp(balancer.log_var), torch.tensor([0.4, 0.4, 2.5]), rtol=0.1)


def test_gradnorm_keeps_weight_sum_and_reacts_to_gradient_imbalance() -> None:
    w_param = torch.nn.Parameter(torch.ones(2, 2))
    x = torch.tensor([1.0, 1.0])
    tasks = (TaskSpec("click", "click", "bce"), TaskSpec("dwell", "dwell", "mse"))
    balancer = make_balancer("gradnorm", tasks, gradnorm_alpha=0.0)
    opt = torch.optim.Adam(balancer.parameters(), lr=0.05)
    for _ in range(100):
        h = w_param @ x
        losses = torch.stack([h[0] * 1.0, h[1] * 10.0])  # task 1's gradient is 10x larger
        opt.zero_grad()
        balancer.combine(losses, torch.ones(2, dtype=torch.bool), w_param)
        opt.step()
        balancer.after_step()
    w = balancer.weights()
    assert math.isclose(float(w.sum()), 2.0, rel_tol=1e-5)
    assert w[0] > 5 * w[1]  # equal weighted gradient norms need w0 / w1 ~ 10


def test_config_validation_and_roundtrip() -> None:
    cfg = small("ple", tower_sizes=(8, 4))
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError):
        small(expert_sizes=())
    with pytest.raises(ConfigError):
        ModelConfig(tasks=(TaskSpec("a", "click", "bce"), TaskSpec("a", "click", "bce")))
    with pytest.raises(ConfigError, match="parent"):
        ModelConfig(tasks=(TaskSpec("conversion", "conversion", "bce", parent="click"),))
    with pytest.raises(ConfigError, match="label field"):
        ModelConfig(tasks=(TaskSpec("x", "price", "mse"),))
    with pytest.raises(ConfigError):
        make_balancer("nope", TASKS)  # type: ignore[arg-type]
