"""Prometheus series of one worker, and the consumer lag the agents read from faust.

One ``CollectorRegistry`` per worker (not the process-global one), so tests can build
several; ``driftrec worker`` serves it on ``DRIFTREC_METRICS_PORT``. The Grafana board
in ops/ must query only the names ``exported_names`` lists (a test checks it).

Labels stay bounded: tasks, metric names, detectors, features and partitions are fixed
sets; a dead letter's reason is cut to its kind (the text before the first ":").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["WorkerMetrics", "consumer_lag", "version_number"]

_FRESHNESS_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_CHECKPOINT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


class WorkerMetrics:
    """The worker's series; the agents call the methods below, never the series directly."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.rolling = Gauge(
            "driftrec_trainer_rolling_metric",
            "Prequential metric over the trainer's rolling window (AUC, log-loss, MAE).",
            ["task", "metric"],
            registry=r,
        )
        self.examples_applied = Counter(
            "driftrec_examples_applied", "Labelled examples the trainer learned from.", registry=r
        )
        self.events_joined = Counter(
            "driftrec_events_joined", "Events the joiner took in, by type.", ["type"], registry=r
        )
        self.examples_emitted = Counter(
            "driftrec_examples_emitted", "Labelled examples the joiner emitted.", registry=r
        )
        self.dead_letters = Counter(
            "driftrec_dead_letters",
            "Records sent to the dead-letter topic, by stage and kind of reason.",
            ["stage", "reason"],
            registry=r,
        )
        self.freshness = Histogram(
            "driftrec_freshness_seconds",
            "From the joiner emitting an example to the trainer learning from it.",
            buckets=_FRESHNESS_BUCKETS,
            registry=r,
        )
        self.lag = Gauge(
            "driftrec_consumer_lag",
            "Messages in a partition this worker owns that it has not yet processed.",
            ["topic", "partition"],
            registry=r,
        )
        self.checkpoint_duration = Histogram(
            "driftrec_checkpoint_duration_seconds",
            "Writing a trainer checkpoint, publishing and maybe promoting it.",
            buckets=_CHECKPOINT_BUCKETS,
            registry=r,
        )
        self.drift_alarms = Counter(
            "driftrec_drift_alarms",
            "Drift detector alarms on a task's loss stream.",
            ["detector", "task"],
            registry=r,
        )
        self.active_version = Gauge(
            "driftrec_active_model_version",
            "Number of the registry's active model version (v000042 is 42; 0: none).",
            registry=r,
        )
        self.psi = Gauge(
            "driftrec_label_free_psi",
            "Population stability index, current window against the last promotion's "
            "(per dense feature, and predicted_click).",
            ["feature"],
            registry=r,
        )
        self._joined: dict[str, int] = {}
        self._lag_partitions: dict[str, set[int]] = {}

    def joined(self, counts: Mapping[str, int], kinds: Iterable[str]) -> None:
        """Follow the joiner's cumulative per-process ``counts`` (event types and examples)."""
        for kind in (*kinds, "examples"):
            new = int(counts.get(kind, 0))
            delta = new - self._joined.get(kind, 0)
            if delta > 0:
                series = (
                    self.examples_emitted if kind == "examples" else self.events_joined.labels(kind)
                )
                series.inc(delta)
            self._joined[kind] = new

    def exported_names(self) -> set[str]:
        """Every sample name a scrape can return (counters end in _total, histograms
        have _bucket, _sum and _count)."""
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
        return {
            family.name + suffix
            for family in self.registry.collect()
            for suffix in suffixes.get(family.type, ("",))
        }

    def dead_letter(self, stage: str, reason: str) -> None:
        self.dead_letters.labels(stage, reason.partition(":")[0].strip()[:60] or "unknown").inc()

    def learned(
        self,
        applied: int,
        freshness_s: Iterable[float],
        metrics: Mapping[str, float | None],
        alarms: Iterable[tuple[str, str]],
    ) -> None:
        """A batch was learned: ``metrics`` as ``"<task>.<metric>"``, alarms as (detector, task)."""
        self.examples_applied.inc(applied)
        for seconds in freshness_s:
            self.freshness.observe(seconds)
        for name, value in metrics.items():
            task, _, metric = name.partition(".")
            if value is not None and value == value and not metric.endswith("cumulative"):
                self.rolling.labels(task, metric).set(value)
        for detector, task in alarms:
            self.drift_alarms.labels(detector, task).inc()

    def lags(self, topic: str, lags: Mapping[int, int], owned: Iterable[int]) -> None:
        """Lag of the partitions of ``topic`` this worker owns; the series of a partition
        that moved to another worker are removed (their lag is no longer ours to say)."""
        owned = set(owned)
        for gone in self._lag_partitions.get(topic, set()) - owned:
            self.lag.remove(topic, str(gone))
        for partition, lag in lags.items():
            if partition in owned:
                self.lag.labels(topic, str(partition)).set(lag)
        self._lag_partitions[topic] = (self._lag_partitions.get(topic, set()) | set(lags)) & owned

    def label_free(self, drift: Mapping[str, Any] | None) -> None:
        if drift is None:
            return
        for feature, value in drift["psi"].items():
            self.psi.labels(feature).set(value)
        self.psi.labels("predicted_click").set(drift["click_psi"])


def version_number(version: str | None) -> int:
    """``v000042`` -> 42 (0 for none)."""
    digits = (version or "")[1:]
    return int(digits) if digits.isdigit() else 0


def consumer_lag(app: Any, topic: str, next_offsets: Mapping[int, int]) -> dict[int, int]:
    """Highwater minus the next offset to process, per partition the consumer has seen
    a highwater for (faust's consumer; none before its first fetch)."""
    from faust.types import TP

    lags = {}
    for partition, offset in next_offsets.items():
        try:
            high = app.consumer.highwater(TP(topic, partition))
        except (AttributeError, KeyError, AssertionError, RuntimeError):
            high = None  # the consumer is not started yet, or lost the partition
        if high is not None:
            lags[partition] = max(int(high) - offset, 0)
    return lags
