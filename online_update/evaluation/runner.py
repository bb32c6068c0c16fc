"""Prequential evaluation: replay a click log through the stream's own joiner and feature
code and run every system side by side, each scoring a row before it learns from it.

The loop (``evaluate``): ``driftrec.online_update.evaluation.eval_stream.replay_log`` turns the log into
impressions to score (in log order, at the moment serving would score them) and
labelled examples to learn (mini-batches of ``EvalConfig.batch_size`` in the joiner's
emission order). Every system gets ``predict_many`` on the unlabelled impressions and
later ``learn_many`` on their examples; every example was scored before any system
learned from it.

Metrics (sklearn, on the collected predictions of the whole stream):

- ``click_auc``, ``click_logloss``: pCTR against the click label, every example.
- ``conversion_auc``: pCTCVR against the conversion label, every example.
- ``dwell_mae``: mean |predicted - actual| of log1p(dwell seconds), clicked examples
  with a dwell event (unit: log1p seconds, so 0.1 is roughly a 10% error).
- ``cold_click_auc``: click AUC on impressions that are among their item's first
  ``cold_impressions`` impressions in the log.
- ``post_drift_click_auc``: click AUC on impressions within ``post_drift_events``
  events after a drift point (None without drift points).
- ``oracle_share``: when the log knows each impression's true click probability (the
  synthetic generator does), ``(click_auc - 0.5) / (oracle_click_auc - 0.5)``, where
  ``oracle_click_auc`` is the AUC of those true probabilities on the same rows: the share
  of the log's attainable ranking quality a system reaches (None otherwise).

Over time, per system: click AUC over consecutive windows of ``rolling_window`` examples
(in impression order; ``EvalReport.curves``, in ``--json`` as ``windows``), and the
oracle's on the same windows, so a plot shows the recovery after each drift.

The driftrec systems (``online``, ``static``, ``periodic``, ``online_no_text``) run the
learner the stream trains, ``learner_config(settings, text_dim)``; the report names its
fingerprint and configuration.

A metric that does not apply (a river model has no conversion output, a slice
holds one class only) is None.

>>> cold_rows(np.array([0, 49, 50]), 50).tolist()
[True, True, False]
>>> post_drift_rows(np.array([5, 10, 14, 15]), [10], 5).tolist()
[False, True, True, False]
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from driftrec.core import ConfigError, DriftrecConfig, Impression
from driftrec.features import DENSE_FEATURES, JoinerConfig
from driftrec.online_update.embeddings import TextEncoder
from driftrec.online_update.evaluation.baselines import (
    EvalSystem,
    OnlineSystem,
    PeriodicSystem,
    RiverClickSystem,
    StaticSystem,
    make_river_fm,
    make_river_lr,
    strip_labels,
)
from driftrec.online_update.evaluation.eval_stream import (
    ItemTexts,
    StreamCounts,
    ToLearn,
    ToScore,
    replay_log,
)
from driftrec.online_update.learning import LearnerConfig, OnlineLearner, learner_config
from driftrec.producers import Record, SyntheticLog, load_config, open_source, synthetic_options
from sklearn.metrics import roc_auc_score

__all__ = [
    "METRICS",
    "SYSTEMS",
    "EvalConfig",
    "EvalReport",
    "build_systems",
    "cold_rows",
    "evaluate",
    "evaluate_source",
    "oracle_share",
    "post_drift_rows",
    "rolling_auc",
    "system_metrics",
]

SYSTEMS: tuple[str, ...] = (
    "online",
    "static",
    "periodic",
    "river_lr",
    "river_fm",
    "online_no_text",
)
METRICS: tuple[str, ...] = (
    "click_auc",
    "click_logloss",
    "conversion_auc",
    "dwell_mae",
    "cold_click_auc",
    "post_drift_click_auc",
    "oracle_share",
)
_EPS = 1e-7


@dataclass(frozen=True)
class EvalConfig:
    """How the evaluation runs; ``driftrec eval --option eval.<field>=<value>`` sets these."""

    batch_size: int = 256
    #: ``static`` learns from this share of the examples, then freezes.
    static_share: float = 0.2
    #: ``periodic`` retrains from scratch every ``periodic_every`` examples on the last
    #: ``periodic_window`` examples for ``periodic_epochs`` shuffled passes (on the
    #: default synthetic log: a retrain every ~4 h of event time on the last ~17 h).
    periodic_every: int = 5_000
    periodic_window: int = 20_000
    periodic_epochs: int = 2
    periodic_batch_size: int = 512
    #: The cold-start slice: an item's first ``cold_impressions`` impressions in the log.
    cold_impressions: int = 20
    post_drift_events: int = 5_000
    #: Examples per point of the rolling click AUC curves (the plot).
    rolling_window: int = 2_000
    #: Seeds river FM and the periodic shuffles (the models' seed is the learner's,
    #: ``DRIFTREC_LEARNER_SEED``, like every other learner hyper-parameter).
    seed: int = 0
    #: Comma-separated subset of the systems to run (all six by default).
    systems: str = "online,static,periodic,river_lr,river_fm,online_no_text"

    def __post_init__(self) -> None:
        counts = ("batch_size", "periodic_every", "periodic_window", "periodic_epochs")
        for name in (*counts, "periodic_batch_size", "rolling_window", "post_drift_events"):
            if getattr(self, name) < 1:
                raise ConfigError(f"EvalConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.static_share <= 1.0 or self.cold_impressions < 0:
            raise ConfigError("EvalConfig.static_share must be in [0, 1], cold_impressions >= 0")


def cold_rows(item_rank: np.ndarray, cold_impressions: int) -> np.ndarray:
    """Rows whose impression is among the item's first ``cold_impressions``."""
    out: np.ndarray = item_rank < cold_impressions
    return out


def post_drift_rows(event_index: np.ndarray, drift_points: Sequence[int], span: int) -> np.ndarray:
    """Rows whose impression lies in ``[d, d + span)`` events for some drift point ``d``."""
    out = np.zeros(len(event_index), dtype=bool)
    for d in drift_points:
        out |= (event_index >= d) & (event_index < d + span)
    return out


def _auc(y: np.ndarray, p: np.ndarray) -> float | None:
    if len(y) == 0 or y.min() == y.max():
        return None
    return float(roc_auc_score(y, p))


def _logloss(y: np.ndarray, p: np.ndarray) -> float | None:
    if len(y) == 0:
        return None
    q = np.clip(p, _EPS, 1.0 - _EPS)
    return float(-np.mean(y * np.log(q) + (1.0 - y) * np.log1p(-q)))


def system_metrics(
    labels: dict[str, np.ndarray],
    predictions: dict[str, np.ndarray],
    cold: np.ndarray,
    post_drift: np.ndarray | None,
) -> dict[str, float | None]:
    """The ``METRICS`` of one system; ``labels`` are ``Batch`` fields (dwell in log1p s)."""
    click = labels["click"]
    p = predictions["click"]
    out: dict[str, float | None] = dict.fromkeys(METRICS)
    out["click_auc"] = _auc(click, p)
    out["click_logloss"] = _logloss(click, p)
    out["cold_click_auc"] = _auc(click[cold], p[cold])
    if post_drift is not None:
        out["post_drift_click_auc"] = _auc(click[post_drift], p[post_drift])
    if "conversion" in predictions:
        out["conversion_auc"] = _auc(labels["conversion"], predictions["conversion"])
    if "dwell" in predictions:
        rows = labels["has_dwell"]
        if rows.any():
            out["dwell_mae"] = float(
                np.abs(predictions["dwell"][rows] - labels["dwell"][rows]).mean()
            )
    return out


def oracle_share(auc: float | None, oracle_auc: float | None) -> float | None:
    """``(auc - 0.5) / (oracle_auc - 0.5)``; None when either is unknown or the oracle
    ranks no better than chance.

    >>> oracle_share(0.65, 0.8)
    0.5
    """
    if auc is None or oracle_auc is None or oracle_auc <= 0.5:
        return None
    return round((auc - 0.5) / (oracle_auc - 0.5), 12)


def rolling_auc(
    y: np.ndarray, p: np.ndarray, window: int, step: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Click AUC over ``[end - window, end)`` at every ``step``-th ``end`` (NaN: one class)."""
    step = step or max(1, window // 4)
    ends = np.arange(min(window, len(y)), len(y) + 1, step, dtype=np.int64)
    values = [_auc(y[e - window if e > window else 0 : e], p[max(0, e - window) : e]) for e in ends]
    return ends, np.array([math.nan if v is None else v for v in values])


@dataclass
class EvalReport:
    """What ``evaluate`` measured; ``to_json`` is the ``--json`` line."""

    events: int
    examples: int
    rejected: int
    drift_points: tuple[int, ...]
    metrics: dict[str, dict[str, float | None]]
    #: Per system: (impression event index at each window end, rolling click AUC).
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    #: Seconds each system spent predicting and learning.
    seconds: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0
    #: Shares of the examples in the cold-start and post-drift slices.
    cold_share: float = 0.0
    post_drift_share: float = 0.0
    #: AUC of the log's true click probabilities (None: the log does not know them).
    oracle_click_auc: float | None = None
    #: The driftrec learners' configuration and its fingerprint.
    learner: dict[str, Any] = field(default_factory=dict)
    #: Per example in impression order: impression number, click label, event index.
    rows: tuple[np.ndarray, np.ndarray, np.ndarray] = field(
        default_factory=lambda: (np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64)),
        repr=False,
    )

    def to_json(self) -> dict[str, Any]:
        windows = {
            name: {"event": x.tolist(), "click_auc": [None if v != v else v for v in y.tolist()]}
            for name, (x, y) in self.curves.items()
        }
        return {
            "events": self.events,
            "examples": self.examples,
            "drift_points": list(self.drift_points),
            "oracle_click_auc": self.oracle_click_auc,
            "systems": self.metrics,
            "learner": self.learner,
            "windows": windows,
        }


def evaluate(
    records: Iterable[Record],
    systems: Sequence[EvalSystem],
    text_encoder: TextEncoder,
    *,
    config: EvalConfig = EvalConfig(),
    joiner: JoinerConfig | None = None,
    drift_points: Sequence[int] = (),
    oracle: np.ndarray | None = None,
    on_event: Callable[[int], None] | None = None,
) -> EvalReport:
    """Run ``systems`` over the log: score impressions, learn examples (module docstring).
    ``oracle``: the true click probability of each impression, in log order.

    Torch runs one intra-op thread meanwhile (restored afterwards): the models are
    small, and on two contended cores a second thread cut ``learn_many`` from ~55,000
    to ~3,600 examples/s in our measurements.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        report = _evaluate(records, systems, text_encoder, config, joiner, drift_points, on_event)
    finally:
        torch.set_num_threads(threads)
    if oracle is not None:
        _add_oracle(report, oracle, config)
    return report


def _add_oracle(report: EvalReport, oracle: np.ndarray, config: EvalConfig) -> None:
    """Score the true click probabilities like a system and fill ``oracle_share``."""
    rows, labels, event_index = report.rows
    if len(oracle) <= (rows.max() if len(rows) else -1):
        raise ConfigError(f"the oracle knows {len(oracle)} impressions, the log has more")
    p = oracle[rows]
    report.oracle_click_auc = _auc(labels, p)
    for metrics in report.metrics.values():
        metrics["oracle_share"] = oracle_share(metrics["click_auc"], report.oracle_click_auc)
    ends, auc = rolling_auc(labels, p, config.rolling_window)
    report.curves["oracle"] = (event_index[ends - 1] if len(ends) else ends, auc)


def _evaluate(
    records: Iterable[Record],
    systems: Sequence[EvalSystem],
    text_encoder: TextEncoder,
    config: EvalConfig,
    joiner: JoinerConfig | None,
    drift_points: Sequence[int],
    on_event: Callable[[int], None] | None,
) -> EvalReport:
    started = time.perf_counter()
    counts = StreamCounts()
    scored: dict[str, dict[str, list[np.ndarray]]] = {
        s.name: {t: [] for t in s.tasks} for s in systems
    }
    seconds = dict.fromkeys((s.name for s in systems), 0.0)
    fields = ("click", "conversion", "dwell", "has_dwell", "impression", "event", "rank")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in fields}
    stream = replay_log(
        records,
        ItemTexts(text_encoder),
        batch_size=config.batch_size,
        joiner=joiner,
        counts=counts,
        on_event=on_event,
    )
    for chunk in stream:
        for system in systems:
            tick = time.perf_counter()
            if isinstance(chunk, ToScore):
                out = system.predict_many(strip_labels(chunk.batch))
                for task in system.tasks:
                    scored[system.name][task].append(np.asarray(out[task], dtype=np.float64))
            else:
                system.learn_many(chunk.batch)
            seconds[system.name] += time.perf_counter() - tick
        if isinstance(chunk, ToLearn):
            b = chunk.batch
            for name, value in (
                ("click", b.click),
                ("conversion", b.conversion),
                ("dwell", b.dwell),
            ):
                parts[name].append(np.asarray(value, dtype=np.float64))
            parts["has_dwell"].append(chunk.has_dwell)
            parts["impression"].append(chunk.impression)
            parts["event"].append(chunk.event_index)
            parts["rank"].append(chunk.item_rank)
    cat = {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}
    # Rows in impression order: the order serving met them and the plot's time axis.
    order = np.argsort(cat["impression"], kind="stable")
    rows = cat["impression"][order].astype(np.int64)
    labels = {k: cat[k][order] for k in ("click", "conversion", "dwell")}
    labels["has_dwell"] = cat["has_dwell"][order].astype(bool)
    event_index = cat["event"][order].astype(np.int64)
    points = tuple(d for d in drift_points if d < counts.events)
    cold = cold_rows(cat["rank"][order], config.cold_impressions)
    post = post_drift_rows(event_index, points, config.post_drift_events) if points else None
    metrics, curves = {}, {}
    for system in systems:
        p = {t: np.concatenate(v)[rows] for t, v in scored[system.name].items() if v}
        if "click" not in p:
            p["click"] = np.zeros(0)
        metrics[system.name] = system_metrics(labels, p, cold, post)
        ends, auc = rolling_auc(labels["click"], p["click"], config.rolling_window)
        curves[system.name] = (event_index[ends - 1] if len(ends) else ends, auc)
    report = EvalReport(
        events=counts.events,
        examples=counts.examples,
        rejected=counts.rejected,
        drift_points=points,
        metrics=metrics,
        curves=curves,
        seconds=seconds,
        elapsed_s=time.perf_counter() - started,
        cold_share=float(cold.mean()) if len(cold) else 0.0,
        post_drift_share=float(post.mean()) if post is not None and len(post) else 0.0,
    )
    report.rows = (rows, labels["click"], event_index)
    return report


def build_systems(
    config: EvalConfig, learner: LearnerConfig, *, static_examples: int
) -> list[EvalSystem]:
    """The systems named in ``config.systems``, in that order, all fresh; the driftrec
    ones run ``learner`` (``online_no_text``: the same without text)."""
    names = [n.strip() for n in config.systems.split(",") if n.strip()]
    unknown = sorted(set(names) - set(SYSTEMS))
    if unknown or not names:
        raise ConfigError(f"unknown system(s) {unknown or names}: choose from {', '.join(SYSTEMS)}")
    base = learner
    no_text = dataclasses.replace(learner, model=dataclasses.replace(learner.model, use_text=False))
    n = len(DENSE_FEATURES)
    make: dict[str, Callable[[], EvalSystem]] = {
        "online": lambda: OnlineSystem("online", OnlineLearner(base)),
        "static": lambda: StaticSystem("static", OnlineLearner(base), static_examples),
        "periodic": lambda: PeriodicSystem(
            "periodic",
            base,
            every=config.periodic_every,
            window=config.periodic_window,
            epochs=config.periodic_epochs,
            batch_size=config.periodic_batch_size,
            seed=config.seed,
        ),
        "river_lr": lambda: RiverClickSystem("river_lr", make_river_lr(n)),
        "river_fm": lambda: RiverClickSystem("river_fm", make_river_fm(n, seed=config.seed)),
        "online_no_text": lambda: OnlineSystem("online_no_text", OnlineLearner(no_text)),
    }
    return [make[name]() for name in names]


def evaluate_source(
    source: str,
    fmt: str | None,
    text_encoder: TextEncoder,
    *,
    limit: int | None = None,
    options: Mapping[str, str] | None = None,
    settings: DriftrecConfig | None = None,
    config: EvalConfig = EvalConfig(),
    joiner: JoinerConfig | None = None,
    on_event: Callable[[int], None] | None = None,
) -> EvalReport:
    """Open the log, find its drift points, size ``static`` and run ``evaluate``.

    A synthetic log evaluated with ``limit`` is generated with ``n_events = limit``
    (unless the options set ``n_events``), so the whole drifting world, drifts
    included, fits in the evaluated events rather than being cut before its first
    drift. ``static`` learns from ``static_share`` of the log's impressions, counted
    by a quick first pass over the log.
    """
    reader = synthetic_options(options, limit) if fmt == "synthetic" else dict(options or {})
    drifts: list[int] = []
    oracle: np.ndarray | None = None
    if fmt == "synthetic":
        world = SyntheticLog(load_config(source, reader))
        drifts = [p.event_index for p in world.drift_points]
        oracle = world.click_probabilities()
    impressions = sum(
        isinstance(r, Impression) for r in open_source(source, fmt, limit=limit, options=reader)
    )
    learner = learner_config(settings or DriftrecConfig(), text_encoder.dim)
    systems = build_systems(
        config, learner, static_examples=round(config.static_share * impressions)
    )
    report = evaluate(
        open_source(source, fmt, limit=limit, options=reader),
        systems,
        text_encoder,
        config=config,
        joiner=joiner,
        drift_points=drifts,
        oracle=oracle,
        on_event=on_event,
    )
    report.learner = {"fingerprint": learner.fingerprint(), "config": learner.to_dict()}
    return report
