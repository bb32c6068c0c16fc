"""Drift detectors fire after an injected rise of the loss, not before, and not on a fall."""

from __future__ import annotations

import numpy as np
import pytest
from driftrec.online_update.learning.drift import Alarm, DriftMonitor


def bce_stream(p_before: float, p_after: float, change: int, n: int, seed: int) -> np.ndarray:
    """Per-example log-loss of a fixed predictor (p=0.2) on clicks whose rate changes."""
    rng = np.random.default_rng(seed)
    rate = np.where(np.arange(n) < change, p_before, p_after)
    y = rng.random(n) < rate
    return np.where(y, -np.log(0.2), -np.log(0.8))


def run(
    monitor: DriftMonitor, losses: np.ndarray, offset: int = 0, batch: int = 512
) -> list[Alarm]:
    for start in range(0, len(losses), batch):
        chunk = losses[start : start + batch]
        monitor.update("click", chunk, np.arange(start, start + len(chunk)) + offset)
    return monitor.alarms


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_both_detectors_fire_soon_after_the_change_and_not_before(seed: int) -> None:
    losses = bce_stream(0.2, 0.5, change=8000, n=12_000, seed=seed)
    alarms = run(DriftMonitor(["click"]), losses)
    first = {
        d: min((a.example_index for a in alarms if a.detector == d), default=None)
        for d in ("adwin", "page-hinkley")
    }
    assert all(a.example_index >= 8000 for a in alarms), alarms
    for detector, index in first.items():
        assert index is not None and index < 8000 + 1500, (detector, index)
    assert {a.task for a in alarms} == {"click"}


def test_a_falling_loss_raises_no_alarm() -> None:
    losses = bce_stream(0.5, 0.2, change=5000, n=10_000, seed=4)
    assert run(DriftMonitor(["click"]), losses) == []


def test_indices_are_global_and_reset_keeps_the_alarms() -> None:
    monitor = DriftMonitor(["click", "dwell"])
    losses = bce_stream(0.2, 0.6, change=3000, n=6000, seed=5)
    run(monitor, losses, offset=1_000_000)
    assert monitor.alarms and all(a.example_index >= 1_003_000 for a in monitor.alarms)
    kept = list(monitor.alarms)
    monitor.reset()
    assert monitor.alarms == kept
    assert monitor.update("not-watched", losses, np.arange(len(losses))) == []
    assert kept[0].to_dict()["detector"] in ("adwin", "page-hinkley")
