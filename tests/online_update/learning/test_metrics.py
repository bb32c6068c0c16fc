"""Prequential metrics equal the batch oracle (sklearn) on the same window (CONVENTIONS 4)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from driftrec.models.tasks import TASKS
from driftrec.online_update.learning.metrics import PrequentialMetrics
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import log_loss, mean_absolute_error, roc_auc_score


def stream(n: int, seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    p_click = rng.uniform(0.01, 0.99, n)
    click = (rng.random(n) < p_click).astype(np.float64)
    p_conv = p_click * rng.uniform(0.0, 0.5, n)
    conv = click * (rng.random(n) < 0.4)
    dwell = click * rng.gamma(2.0, 1.5, n)
    labels = {"click": click, "conversion": conv, "dwell": dwell}
    preds = {"click": p_click, "conversion": p_conv, "dwell": np.abs(dwell + rng.normal(0, 1, n))}
    return labels, preds


def feed(metrics: PrequentialMetrics, labels: dict, preds: dict, cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(labels["click"])]
    for a, b in itertools.pairwise(bounds):
        metrics.update(
            {k: v[a:b] for k, v in labels.items()}, {k: v[a:b] for k, v in preds.items()}
        )


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 600),
    window=st.integers(1, 300),
    seed=st.integers(0, 10_000),
    cuts=st.lists(st.integers(0, 600), max_size=8),
)
def test_rolling_metrics_equal_sklearn_on_the_last_window(
    n: int, window: int, seed: int, cuts: list[int]
) -> None:
    labels, preds = stream(n, seed)
    metrics = PrequentialMetrics(TASKS, window)
    feed(metrics, labels, preds, [c for c in cuts if c <= n])
    got = metrics.summary()
    for task in ("click", "conversion"):
        y, p = labels[task][-window:], preds[task][-window:]
        assert got[f"{task}.logloss"] == pytest.approx(log_loss(y, p, labels=[0, 1]), rel=1e-9)
        if 0 < y.sum() < len(y):
            assert got[f"{task}.auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-9)
        else:
            assert math.isnan(got[f"{task}.auc"])
        assert got[f"{task}.logloss_cumulative"] == pytest.approx(
            log_loss(labels[task], preds[task], labels=[0, 1]), rel=1e-9
        )
        assert got[f"{task}.n"] == n
    clicked = labels["click"] > 0.5
    y, p = labels["dwell"][clicked], preds["dwell"][clicked]
    if len(y):
        assert got["dwell.mae"] == pytest.approx(mean_absolute_error(y[-window:], p[-window:]))
        assert got["dwell.mae_cumulative"] == pytest.approx(mean_absolute_error(y, p))
    else:
        assert math.isnan(got["dwell.mae"])
    assert got["dwell.n"] == len(y)


def test_cumulative_auc_is_close_to_sklearn() -> None:
    labels, preds = stream(20_000, 1)
    metrics = PrequentialMetrics(TASKS, 500)
    feed(metrics, labels, preds, list(range(0, 20_000, 512)))
    got = metrics.summary()
    for task in ("click", "conversion"):
        exact = roc_auc_score(labels[task], preds[task])
        assert got[f"{task}.auc_cumulative"] == pytest.approx(exact, abs=2e-3)


def test_state_round_trip_reports_the_same_and_continues_the_same() -> None:
    labels, preds = stream(900, 2)
    a = PrequentialMetrics(TASKS, 256)
    feed(
        a,
        {k: v[:700] for k, v in labels.items()},
        {k: v[:700] for k, v in preds.items()},
        [100, 333],
    )
    b = PrequentialMetrics(TASKS, 256)
    b.load_state(a.state())
    assert b.summary() == pytest.approx(a.summary(), nan_ok=True)
    rest_l, rest_p = {k: v[700:] for k, v in labels.items()}, {k: v[700:] for k, v in preds.items()}
    a.update(rest_l, rest_p)
    b.update(rest_l, rest_p)
    assert b.summary() == pytest.approx(a.summary(), nan_ok=True)


def test_update_returns_observed_rows_and_their_losses() -> None:
    labels, preds = stream(50, 3)
    out = PrequentialMetrics(TASKS, 10).update(labels, preds)
    rows, losses = out["dwell"]
    assert rows.tolist() == np.flatnonzero(labels["click"]).tolist()
    np.testing.assert_allclose(losses, np.abs(preds["dwell"] - labels["dwell"])[rows])
    rows, losses = out["click"]
    assert len(rows) == 50 and (losses > 0).all()


@given(
    st.lists(
        st.tuples(st.integers(0, 1), st.sampled_from([0.1, 0.2, 0.5, 0.7, 0.9])),
        min_size=2,
        max_size=60,
    )
)
def test_roc_auc_equals_sklearn_with_ties(rows: list[tuple[int, float]]) -> None:
    from driftrec.online_update.learning.metrics import roc_auc
    from sklearn.metrics import roc_auc_score

    labels = np.array([y for y, _ in rows])
    scores = np.array([p for _, p in rows])
    if labels.min() == labels.max():
        assert roc_auc(labels, scores) is None
    else:
        assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
