"""`driftrec watch` renders what the agents publish, with rates from two readings."""

from __future__ import annotations

from driftrec.ops.watch import Snapshot, render
from rich.console import Console


def text_of(snapshot: Snapshot, before: Snapshot | None) -> str:
    console = Console(width=140, record=True)
    console.print(render(snapshot, before))
    return console.export_text()


def reading(at: float, events: int, examples: int) -> Snapshot:
    return Snapshot(
        at=at,
        trainer={
            "examples_seen": examples,
            "metrics": {"click.auc": 0.7123, "click.logloss": 0.31, "dwell.mae": 0.5},
            "alarms": [{"detector": "adwin", "task": "click", "example_index": 4200}],
            "checkpoint": "v000007",
            "learner": "a0f058f8191cb503",
            "freshness_p50_s": 0.4,
            "freshness_p95_s": 1.2,
        },
        joiners={"host:1": {"impression": events, "partitions": [0, 1]}},
        active_model="v000006",
        embedding_version="minilm:abc",
    )


def test_rates_come_from_two_readings() -> None:
    out = text_of(reading(12.0, 5000, 3000), reading(10.0, 1000, 1000))
    assert "events/s 2,000" in out and "examples/s 1,000" in out


def test_shows_metrics_alarms_and_versions() -> None:
    out = text_of(reading(1.0, 10, 10), None)
    needles = ("0.7123", "adwin on click at example 4,200", "v000006", "v000007", "minilm:abc")
    for needle in (*needles, "learner a0f058f8191cb503"):
        assert needle in out


def test_empty_redis_renders_placeholders() -> None:
    out = text_of(Snapshot(at=0.0), None)
    assert "no drift alarm" in out and "no joiner yet" in out
