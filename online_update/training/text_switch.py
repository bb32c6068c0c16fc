"""Moving a learner to a new embedding version without feeding it vectors of another space.

A learner is trained in exactly one embedding version (its checkpoint records it as
``CheckpointMeta.embedding_version``, the registry as ``VersionInfo.embedding_version``):
the trainer looks up item vectors *of that version*, and serving looks up the vectors of
the version the served model names. When the active embedding version changes, the
trainer calls ``adopt_embedding_version`` between two batches and continues with the
learner it returns, in the new version. Two ways, chosen by measurement:

- **aligned**: with paired vectors of the same items in both versions (``paired_sample``),
  fit by ridge regression the map that makes the new projection reproduce the old one's
  output, ``x_new @ W_new.T + b_new ~= x_old @ W_old.T + b_old``, separately for the text and
  (when not shared) the interest projection. If its R^2 on held-out items (odd rows; fitted
  on the even rows) reaches ``min_r2``, the projection is refitted on all pairs and
  everything downstream is kept: the model scores about as before, now from the new
  vectors. Typical when the new model is a re-pooled or fine-tuned sibling.
- **reset** (no pairs, too few, or a poor fit): the text projections are re-initialised
  and the first backbone layer's weights that read the projected text, the projected
  interest and their product are set to zero. At the switch the model is then exactly
  the model with those features absent (ids, category, ``has_text`` and context still
  score), and it learns the new space from there: the zeroed weights receive gradients
  at once, the projection as soon as they are non-zero.

The wide part's text score (``ModelConfig.text_score``: a weight on the standardised
``text . interest``) follows the same rule. On **reset** its weight, its Adagrad sum and
its running statistics start afresh (the model is then blind to text, as above). When
**aligned**, the weight is kept and the statistics are carried into the new space: the
map ``score_old ~= a * score_new + b`` fitted on dot products of paired items gives the
new space's mean and variance, so a standardised score reads as before (a map with
``a <= 0`` resets the score instead).

Either way ``text_dim`` becomes the new dimension (so a different dimension is a new
``ModelConfig`` and config fingerprint), every other parameter, the optimiser moments of
the kept parameters, the task balancer, the metric windows and the counters carry over,
and so do the rest of the wide part (id biases and the linear term read no text vector) with its
Adagrad sums and the running statistics of the dense inputs (no text column among them),
the drift detectors restart (a switch is a known change point, not interest drift), and
the input learner is not modified.

In the trainer, between two batches (``learner_version`` is the version it trains in and
looks vectors up in, never simply "the active one")::

    active = store.active_version()
    if active and active != learner_version:
        new_dim = store.describe(active)["dim"]
        pairs = paired_sample(store, learner_version, active, old_dim, new_dim)
        learner, report = adopt_embedding_version(learner, new_dim, pairs=pairs)
        learner_version = active  # the next checkpoint records it as embedding_version
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from driftrec.core import ConfigError
from driftrec.models import CGCLayer, ModelConfig, MultiTaskModel, SharedBottom
from driftrec.online_update.embeddings import RedisVectorStore
from driftrec.online_update.learning import OnlineLearner

__all__ = [
    "SwitchReport",
    "adopt_embedding_version",
    "fit_projection",
    "paired_sample",
    "score_map",
    "text_columns",
]

_PROJECTIONS = ("encoder.text_proj.", "encoder.interest_proj.")
_SCORE = "wide.text_score."


@dataclass(frozen=True)
class SwitchReport:
    """What ``adopt_embedding_version`` did; ``r2`` is the held-out fit (None: not tried)."""

    mode: Literal["aligned", "reset"]
    old_dim: int
    new_dim: int
    pairs: int
    r2: float | None


def text_columns(config: ModelConfig) -> list[int]:
    """Columns of ``FeatureEncoder``'s output built from text vectors: projected text,
    projected interest and (with ``interactions``) their product; not ``has_text``."""
    if not config.use_text:
        return []
    d, p = config.id_dim, config.text_proj_dim
    start = 3 * d + (d if config.interactions else 0)  # [user, item, category, user*item]
    columns = list(range(start, start + 2 * p))  # text, interest
    if config.interactions:
        product = start + 2 * p + 1  # after has_text
        columns += list(range(product, product + p))
    return columns


def _first_layer_weights(model: MultiTaskModel) -> list[str]:
    """Names of the weights [n, in, out] that read the encoder output directly."""
    backbone = model.backbone
    if isinstance(backbone, SharedBottom):
        mlps, linears = [backbone.bottom], []
    else:
        first = backbone.layers[0]
        if not isinstance(first, CGCLayer):  # pragma: no cover - GatedExperts builds CGCLayers
            raise TypeError(f"unexpected first backbone layer {type(first).__name__}")
        mlps, linears = [first.shared_experts], [first.gates]
        if first.task_experts is not None:
            mlps.append(first.task_experts)
    ids = {id(mlp.layers[0].weight) for mlp in mlps} | {id(lin.weight) for lin in linears}
    return [name for name, p in model.named_parameters() if id(p) in ids]


def fit_projection(
    weight: np.ndarray,
    bias: np.ndarray,
    old: np.ndarray,
    new: np.ndarray,
    ridge: float = 1e-2,
) -> tuple[np.ndarray, np.ndarray, float]:
    """``(weight_new [p, d_new], bias_new [p], held-out R^2)`` so that
    ``new @ weight_new.T + bias_new`` approximates ``old @ weight.T + bias`` row by row.

    >>> rng = np.random.default_rng(0)
    >>> old = rng.normal(size=(200, 6)); rotation = np.linalg.qr(rng.normal(size=(6, 6)))[0]
    >>> w, b = rng.normal(size=(3, 6)), np.zeros(3)
    >>> w_new, b_new, r2 = fit_projection(w, b, old, old @ rotation, ridge=1e-6)
    >>> bool(r2 > 0.999 and np.allclose(w_new, w @ rotation, atol=1e-3))
    True
    """
    target = old.astype(np.float64) @ weight.T.astype(np.float64) + bias
    x = new.astype(np.float64)

    def solve(rows: slice) -> tuple[np.ndarray, np.ndarray]:
        xm, ym = x[rows].mean(axis=0), target[rows].mean(axis=0)
        xc, yc = x[rows] - xm, target[rows] - ym
        gram = xc.T @ xc + ridge * len(xc) * np.eye(x.shape[1])
        a = np.linalg.solve(gram, xc.T @ yc)  # [d_new, p]
        return a, ym - xm @ a

    a, c = solve(slice(0, None, 2))
    held_x, held_y = x[1::2], target[1::2]
    residual = ((held_x @ a + c - held_y) ** 2).sum()
    total = ((held_y - held_y.mean(axis=0)) ** 2).sum()
    r2 = 1.0 - residual / total if total > 0 else 0.0
    a, c = solve(slice(None))
    return a.T.astype(np.float32), c.astype(np.float32), float(r2)


def paired_sample(
    store: RedisVectorStore,
    old_version: str,
    new_version: str,
    old_dim: int,
    new_dim: int,
    limit: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """Vectors ``([n, old_dim], [n, new_dim])`` of up to ``limit`` items in both versions."""
    ids = store.item_ids(new_version, limit)
    old, found_old = store.get(old_version, ids, old_dim)
    new, found_new = store.get(new_version, ids, new_dim)
    both = found_old & found_new
    return old[both], new[both]


def adopt_embedding_version(
    learner: OnlineLearner,
    new_dim: int,
    *,
    pairs: tuple[np.ndarray, np.ndarray] | None = None,
    min_r2: float = 0.5,
    min_pairs: int = 64,
    ridge: float = 1e-2,
) -> tuple[OnlineLearner, SwitchReport]:
    """A copy of ``learner`` that reads ``new_dim``-wide text vectors of the new version
    (see the module docstring); ``pairs``: (old, new) vectors of the same items."""
    old_cfg = learner.config.model
    if not old_cfg.use_text:
        raise ConfigError("the learner ignores text (use_text=False): nothing to adopt")
    if pairs is not None and (
        pairs[0].shape[1] != old_cfg.text_dim or pairs[1].shape[1] != new_dim
    ):
        raise ConfigError(
            f"pairs must be [n, {old_cfg.text_dim}] (old) and [n, {new_dim}] (new) vectors, "
            f"got {pairs[0].shape} and {pairs[1].shape}"
        )
    model_cfg = dataclasses.replace(old_cfg, text_dim=new_dim)
    new = OnlineLearner(dataclasses.replace(learner.config, model=model_cfg))
    old_state = learner.model.state_dict()
    fresh_state = new.model.state_dict()
    projections = [k for k in fresh_state if k.startswith(_PROJECTIONS)]
    state = {k: (fresh_state[k] if k in projections else v.clone()) for k, v in old_state.items()}

    n_pairs = 0 if pairs is None else len(pairs[0])
    mode: Literal["aligned", "reset"] = "reset"
    r2: float | None = None
    if pairs is not None and n_pairs >= min_pairs:
        fitted = {}
        for prefix in {k.rsplit(".", 1)[0] for k in projections}:
            w, b, fit_r2 = fit_projection(
                old_state[f"{prefix}.weight"].numpy(),
                old_state[f"{prefix}.bias"].numpy(),
                pairs[0],
                pairs[1],
                ridge,
            )
            fitted[prefix] = (w, b)
            r2 = fit_r2 if r2 is None else min(r2, fit_r2)
        if r2 is not None and r2 >= min_r2:
            mode = "aligned"
            for prefix, (w, b) in fitted.items():
                state[f"{prefix}.weight"] = torch.from_numpy(w)
                state[f"{prefix}.bias"] = torch.from_numpy(b)
    columns = text_columns(model_cfg) if mode == "reset" else []
    first = _first_layer_weights(new.model) if columns else []
    for name in first:
        state[name][:, columns, :] = 0.0
    score = [k for k in state if k.startswith(_SCORE)]
    if score and not (mode == "aligned" and pairs is not None and _carry_score(state, *pairs)):
        state.update({k: fresh_state[k] for k in score})
    else:
        score = []
    new.model.load_state_dict(state)
    _carry_optimisers(learner, new, set(projections) | set(score), first, columns)
    new.balancer.load_state_dict(learner.balancer.state_dict())
    new.metrics.load_state(
        {t: {k: v.copy() for k, v in s.items()} for t, s in learner.metrics.state().items()}
    )
    new.drift.alarms = list(learner.drift.alarms)
    new.examples_seen, new.batches_seen = learner.examples_seen, learner.batches_seen
    new.steps_seen = learner.steps_seen
    return new, SwitchReport(mode, old_cfg.text_dim, new_dim, n_pairs, r2)


def score_map(old: np.ndarray, new: np.ndarray) -> tuple[float, float]:
    """``(a, b)`` with ``old_i . old_j ~= a * new_i . new_j + b`` over pairs of paired items
    (each row with the next eight, cyclically): how the text score moves between spaces.

    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(50, 4))
    >>> a, b = score_map(2.0 * x, x)
    >>> round(a, 6), round(b, 6)
    (4.0, 0.0)
    """
    n = len(old)
    shifts = range(1, min(9, n))
    s_old = np.concatenate([(old * np.roll(old, k, axis=0)).sum(axis=1) for k in shifts])
    s_new = np.concatenate([(new * np.roll(new, k, axis=0)).sum(axis=1) for k in shifts])
    if len(s_new) < 2 or float(s_new.var()) == 0.0:
        return 0.0, float(s_old.mean()) if len(s_old) else 0.0
    a = float(np.cov(s_new, s_old, bias=True)[0, 1] / s_new.var())
    return a, float(s_old.mean() - a * s_new.mean())


def _carry_score(state: dict[str, torch.Tensor], old: np.ndarray, new: np.ndarray) -> bool:
    """Move the text score's statistics into the new space in ``state``; False when the
    two spaces' scores do not rise together (the caller then resets the score)."""
    a, b = score_map(old.astype(np.float64), new.astype(np.float64))
    if a <= 1e-6:
        return False
    mean, var = f"{_SCORE}norm.mean", f"{_SCORE}norm.var"
    state[mean] = (state[mean] - b) / a
    state[var] = state[var] / (a * a)
    return True


def _carry_optimisers(
    old: OnlineLearner, new: OnlineLearner, skip: set[str], zeroed: list[str], columns: list[int]
) -> None:
    """Optimiser moments and pending gradients of every kept parameter, with the moments
    and gradients of zeroed weight rows cleared too (they belonged to the old space)."""
    names = {id(p): n for n, p in old.model.named_parameters()}
    names |= {id(p): f"balancer.{n}" for n, p in old.balancer.named_parameters()}
    for key, old_opt in old.optimizers.items():
        new_opt = new.optimizers[key]
        pairs = zip(
            old_opt.param_groups[0]["params"], new_opt.param_groups[0]["params"], strict=True
        )
        for old_p, new_p in pairs:
            name = names[id(old_p)]
            if name in skip:
                continue
            state = {
                k: v.clone() if isinstance(v, torch.Tensor) else v
                for k, v in old_opt.state.get(old_p, {}).items()
            }
            grad = None if old_p.grad is None else old_p.grad.clone()
            if name in zeroed:
                for k in ("exp_avg", "exp_avg_sq"):
                    if k in state:
                        state[k][:, columns, :] = 0.0
                if grad is not None:
                    grad[:, columns, :] = 0.0
            if state:
                new_opt.state[new_p] = state
            new_p.grad = grad
