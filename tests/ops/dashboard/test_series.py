"""Rates over a sliding window and the reference window, on small examples checked by hand."""

from __future__ import annotations

import math

import pytest
from driftrec.ops.dashboard.series import (
    increments,
    reference_band,
    reference_window,
    windowed_rates,
)


def test_rates_sum_workers_and_survive_a_restart() -> None:
    # Worker a: 0 -> 100 -> 300 (200 in the last second). Worker b restarts: 50 -> 20
    # counts as 20 new events, not -30.
    points = [
        (1000, "a", 0.0),
        (1500, "b", 50.0),
        (2000, "a", 100.0),
        (2500, "b", 20.0),
        (3000, "a", 300.0),
    ]
    steps = increments(points)
    assert steps == [(1000, 0.0), (1500, 0.0), (2000, 100.0), (2500, 20.0), (3000, 200.0)]
    # Window (1000, 3000]: 100 + 20 + 200 = 320 events in 2 s.
    assert windowed_rates(steps, [3000], window_ms=2000) == [160.0]
    # Window (2000, 3000]: 20 + 200 in 1 s.
    assert windowed_rates(steps, [3000], window_ms=1000) == [220.0]


def test_a_stopped_counter_falls_to_zero_once_out_of_the_window() -> None:
    steps = increments([(0, "a", 0.0), (1000, "a", 500.0)])
    assert windowed_rates(steps, [1000, 5000, 11_001], window_ms=10_000) == [50.0, 50.0, 0.0]


def test_reference_band_is_mean_plus_minus_one_sd_of_the_window() -> None:
    points = [(0, 0.5), (10, 0.6), (20, 0.7), (30, 0.8), (40, math.nan), (50, None), (60, 0.9)]
    band = reference_band(points, 10, 50)  # 0.6, 0.7, 0.8: mean 0.7, sd sqrt(0.02 / 3)
    assert band is not None
    assert band.n == 3 and band.mean == pytest.approx(0.7)
    assert band.low == pytest.approx(0.7 - 0.0816497, abs=1e-6)
    assert band.high == pytest.approx(0.7 + 0.0816497, abs=1e-6)
    assert reference_band(points, 41, 59) is None


def test_reference_window_follows_the_latest_activation_of_the_active_version() -> None:
    activations = [(10_000, "v1"), (20_000, "v2"), (30_000, "v1")]
    assert reference_window(activations, "v1", 5000) == (25_000, 30_000)
    assert reference_window(activations, "v2", 5000) == (15_000, 20_000)
    assert reference_window(activations, None, 5000) is None
    assert reference_window(activations, "v1", 5000, pinned=(1, 2)) == (1, 2)
