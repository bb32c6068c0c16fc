"""`driftrec watch` renders the live status truthfully: gone workers, windowed rates,
lag and freshness judged against their targets."""

from __future__ import annotations

from typing import Any

from driftrec.ops.dashboard import LiveStatus
from driftrec.ops.dashboard.data import WorkerState
from driftrec.ops.watch import render
from rich.console import Console


def text_of(status: LiveStatus) -> str:
    console = Console(width=160, record=True)
    console.print(render(status))
    return console.export_text()


TRAINER = {
    "examples_seen": 3000,
    "metrics": {"click.auc": 0.7123, "click.logloss": 0.31, "dwell.mae": 0.5},
    "alarms": [{"detector": "adwin", "task": "click", "example_index": 4200}],
    "checkpoint": "v000007",
    "learner": "a0f058f8191cb503",
}


def status(**changes: Any) -> LiveStatus:
    values: dict[str, Any] = {
        "trainer": TRAINER,
        "trainer_age_s": 0.5,
        "trainer_alive": True,
        "workers": [WorkerState(id="host:1", partitions=[0, 1], age_s=1.0, lag={"0": 3})],
        "gone_workers": 0,
        "window_s": 10.0,
        "events_rate": 2000.0,
        "examples_rate": 1000.0,
        "events_total": 5000,
        "examples_seen": 3000,
        "lag": {"events:0": 3},
        "lag_total": 3,
        "lag_behind": False,
        "freshness_p50_s": 0.4,
        "freshness_p95_s": 1.2,
        "freshness_behind": False,
        "freshness_target_s": 5.0,
        "lag_target": 10_000,
        "active_model": "v000006",
        "embedding_version": "minilm:abc",
    }
    return LiveStatus(**{**values, **changes})


def test_shows_windowed_rates_metrics_alarms_and_versions() -> None:
    out = text_of(status())
    needles = (
        "events/s 2,000 over 10 s",
        "examples/s 1,000 over 10 s",
        "0.7123",
        "adwin on click at example 4,200",
        "v000006",
        "v000007",
        "minilm:abc",
        "learner a0f058f8191cb503",
        "host:1 p[0, 1]",
    )
    for needle in needles:
        assert needle in out, out
    assert "behind" not in out


def test_a_gone_trainer_and_stopped_workers_are_said_so() -> None:
    out = text_of(status(trainer_alive=False, trainer_age_s=42.0, workers=[], gone_workers=2))
    assert "trainer silent 42 s (stopped or stalled)" in out, out
    assert "no joiner alive  (2 stopped, no heartbeat)" in out, out
    assert "0.7123" not in out  # a stopped trainer's last numbers are not current


def test_behind_when_past_the_targets() -> None:
    out = text_of(
        status(freshness_p95_s=40.0, freshness_behind=True, lag_total=50_000, lag_behind=True)
    )
    assert "freshness p50/p95 0.4000/40.0000 s (behind)" in out, out
    assert "lag 50,000 (behind)" in out, out


def test_empty_redis_renders_placeholders() -> None:
    out = text_of(
        status(trainer={}, trainer_age_s=None, trainer_alive=False, workers=[], events_rate=0.0)
    )
    assert "no drift alarm" in out and "no joiner alive" in out and "no trainer yet" in out
