"""The worker's Prometheus series: what the agents record is what a scrape returns."""

from __future__ import annotations

from driftrec.stream import WorkerMetrics
from driftrec.stream.telemetry import version_number
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families


def scrape(metrics: WorkerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_joined_follows_cumulative_counts_per_type() -> None:
    metrics = WorkerMetrics()
    metrics.joined({"impression": 10, "click": 2, "examples": 5}, ("impression", "click"))
    metrics.joined({"impression": 25, "click": 2, "examples": 9}, ("impression", "click"))
    got = scrape(metrics)
    assert got[("driftrec_events_joined_total", (("type", "impression"),))] == 25
    assert got[("driftrec_events_joined_total", (("type", "click"),))] == 2
    assert got[("driftrec_examples_emitted_total", ())] == 9


def test_learned_records_examples_freshness_rolling_metrics_and_alarms() -> None:
    metrics = WorkerMetrics()
    metrics.learned(
        3,
        [0.2, 0.4, 12.0],
        {"click.auc": 0.71, "click.auc_cumulative": 0.69, "dwell.mae": float("nan")},
        [("adwin", "click")],
    )
    got = scrape(metrics)
    assert got[("driftrec_examples_applied_total", ())] == 3
    assert got[("driftrec_freshness_seconds_count", ())] == 3
    assert got[("driftrec_freshness_seconds_bucket", (("le", "0.5"),))] == 2
    assert got[("driftrec_trainer_rolling_metric", (("metric", "auc"), ("task", "click")))] == 0.71
    # Cumulative metrics and NaN are not rolling values.
    assert not any(
        k[0] == "driftrec_trainer_rolling_metric" and ("task", "dwell") in k[1] for k in got
    )
    assert len([k for k in got if k[0] == "driftrec_trainer_rolling_metric"]) == 1
    assert got[("driftrec_drift_alarms_total", (("detector", "adwin"), ("task", "click")))] == 1


def test_dead_letter_reasons_are_cut_to_their_kind() -> None:
    metrics = WorkerMetrics()
    metrics.dead_letter("joiner", "late: click 3600 s after its impression window closed")
    metrics.dead_letter("joiner", "late: another detail")
    got = scrape(metrics)
    assert got[("driftrec_dead_letters_total", (("reason", "late"), ("stage", "joiner")))] == 2


def test_lag_of_a_partition_that_moved_away_is_dropped() -> None:
    metrics = WorkerMetrics()
    metrics.lags("events", {0: 5, 1: 7}, owned={0, 1})
    metrics.lags("events", {1: 3}, owned={1})
    lags = {k: v for k, v in scrape(metrics).items() if k[0] == "driftrec_consumer_lag"}
    assert lags == {("driftrec_consumer_lag", (("partition", "1"), ("topic", "events"))): 3}


def test_exported_names_cover_every_sample_name() -> None:
    metrics = WorkerMetrics()
    metrics.learned(1, [0.1], {"click.auc": 0.5}, [("adwin", "click")])
    metrics.dead_letter("trainer", "invalid example: x")
    metrics.joined({"impression": 1, "examples": 1}, ("impression",))
    metrics.lags("t", {0: 1}, owned={0})
    metrics.checkpoint_duration.observe(0.3)
    metrics.active_version.set(version_number("v000042"))
    metrics.label_free({"psi": {"user_ctr": 0.2}, "click_psi": 0.05})
    # prometheus_client adds a *_created sample to counters and histograms; boards never query it.
    names = {name for name, _ in scrape(metrics) if not name.endswith("_created")}
    assert names <= metrics.exported_names()
    assert scrape(metrics)[("driftrec_active_model_version", ())] == 42
