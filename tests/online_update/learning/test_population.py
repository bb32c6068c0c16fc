"""PSI and the label-free drift summary against small examples checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from driftrec.online_update.learning import label_free_drift, psi
from driftrec.online_update.learning.population import EPSILON, quantile_edges, shares


def test_identical_windows_have_zero_psi() -> None:
    values = np.arange(100.0)
    assert psi(values, values.copy()) == 0.0


def test_psi_by_hand() -> None:
    # Reference 0..9 on quartile edges 2.25, 4.5, 6.75: shares 0.3, 0.2, 0.2, 0.3.
    reference = np.arange(10.0)
    assert quantile_edges(reference, 4).tolist() == [2.25, 4.5, 6.75]
    # Current: two values in the third bin, eight in the fourth, none below 4.5.
    current = np.array([5.0, 6.0, 7.0, 7.0, 8.0, 8.0, 9.0, 9.0, 9.0, 9.0])
    assert shares(current, quantile_edges(reference, 4)).tolist() == [0.0, 0.0, 0.2, 0.8]
    expected = (
        (EPSILON - 0.3) * math.log(EPSILON / 0.3)
        + (EPSILON - 0.2) * math.log(EPSILON / 0.2)
        + 0.0
        + (0.8 - 0.3) * math.log(0.8 / 0.3)
    )
    assert psi(reference, current, bins=4) == pytest.approx(expected)
    assert expected == pytest.approx(4.4109, abs=1e-4)


def test_few_distinct_values_merge_bins() -> None:
    # A 0/1 feature has one inner edge, not nine empty bins.
    assert quantile_edges(np.array([0.0] * 50 + [1.0] * 50), 10).tolist() == [0.0, 0.5, 1.0]


def test_label_free_drift_ranks_the_feature_that_moved() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(2000, 3))
    current = rng.normal(size=(2000, 3))
    current[:, 1] += 1.0  # only "b" moves
    ref_click, cur_click = rng.uniform(0, 0.2, 2000), rng.uniform(0.3, 0.5, 2000)
    drift = label_free_drift(reference, current, ref_click, cur_click, ["a", "b", "c"])
    assert drift.top_movers == ["b"]
    assert next(iter(drift.psi)) == "b" and drift.psi["a"] < 0.1 and drift.psi["b"] > 0.25
    assert drift.click_psi > 1.0
    # Fixed click bins of width 0.1: the reference fills the first two, the current 4 and 5.
    assert sum(drift.click_reference[:2]) == pytest.approx(1.0)
    assert sum(drift.click_current[3:5]) == pytest.approx(1.0)
