"""The prequential evaluation: the log goes through the stream's joiner and features, every
row is scored before any system learns it, slices pick the right rows, and the online
learner beats a frozen copy after a drift."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from driftrec.core import DriftrecConfig
from driftrec.core.errors import ConfigError
from driftrec.core.schemas import Click, Conversion, Dwell, Impression, Item
from driftrec.features.joiner import JoinerConfig
from driftrec.models.batch import Batch
from driftrec.online_update.embeddings.text_encoder import HashingTextEncoder
from driftrec.online_update.evaluation import runner as evaluation
from driftrec.online_update.evaluation.baselines import EvalSystem
from driftrec.online_update.evaluation.eval_stream import (
    ItemTexts,
    StreamCounts,
    ToLearn,
    ToScore,
    replay_log,
)
from driftrec.online_update.evaluation.runner import (
    METRICS,
    EvalConfig,
    build_systems,
    evaluate,
    evaluate_source,
    post_drift_rows,
    rolling_auc,
    system_metrics,
)
from driftrec.online_update.learning import learner_config
from driftrec.producers.records import Record
from driftrec.producers.sources import open_source
from sklearn.metrics import roc_auc_score

T0 = datetime(2024, 1, 1, tzinfo=UTC)
ENCODER = HashingTextEncoder(dim=32)
SMALL = {"n_events": "3000", "n_users": "200", "n_initial_items": "100"}
LEARNER = learner_config(DriftrecConfig(), ENCODER.dim)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _log() -> list[Record]:
    return [
        Item(item_id="i1", title="football final", category="sports", ts=T0),
        Item(item_id="i2", title="sourdough recipe", text="bake it", category="cooking", ts=T0),
        Impression(event_id="e0", user_id="u1", item_id="i1", ts=_at(0), position=0),
        Impression(event_id="e1", user_id="u2", item_id="i1", ts=_at(1), position=1),
        Click(event_id="e2", user_id="u1", item_id="i1", ts=_at(5)),
        Dwell(event_id="e3", user_id="u1", item_id="i1", ts=_at(20), seconds=15.0),
        Impression(event_id="e4", user_id="u1", item_id="i2", ts=_at(30), position=2),
        Conversion(event_id="e5", user_id="u1", item_id="i1", ts=_at(60)),
        Impression(event_id="e6", user_id="u2", item_id="i2", ts=_at(2400), position=0),
    ]


def test_replay_scores_impressions_in_log_order_before_their_examples_are_learned() -> None:
    counts = StreamCounts()
    out = list(
        replay_log(_log(), ItemTexts(ENCODER), batch_size=2, joiner=JoinerConfig(), counts=counts)
    )
    kinds = [(type(c).__name__, len(c.batch)) for c in out]
    assert kinds == [("ToScore", 2), ("ToScore", 2), ("ToLearn", 2), ("ToLearn", 2)]
    scores = [c for c in out if isinstance(c, ToScore)]
    learns = [c for c in out if isinstance(c, ToLearn)]
    assert [s.first for s in scores] == [0, 2]
    assert all(not s.batch.has_labels for s in scores)
    impression = np.concatenate([c.impression for c in learns])
    assert impression.tolist() == [0, 1, 2, 3]  # e0 (complete), e1, e4 (windows), e6 (flush)
    assert np.concatenate([c.event_index for c in learns]).tolist() == [0, 1, 4, 6]
    assert np.concatenate([c.item_rank for c in learns]).tolist() == [0, 1, 0, 1]
    assert np.concatenate([c.has_dwell for c in learns]).tolist() == [True, False, False, False]
    clicked = Batch.concat([c.batch for c in learns]).click
    assert clicked is not None and clicked.tolist() == [1.0, 0.0, 0.0, 0.0]
    assert (counts.events, counts.impressions, counts.examples) == (7, 4, 4)
    # Scoring used the very snapshot the joiner stored: the features agree row for row.
    scored = Batch.concat([s.batch for s in scores])
    learned = Batch.concat([c.batch for c in learns])
    assert np.array_equal(scored.dense.numpy()[impression], learned.dense.numpy())
    assert np.array_equal(scored.text.numpy()[impression], learned.text.numpy())
    assert scored.has_text.tolist() == [1.0, 1.0, 1.0, 1.0]


def test_replay_of_a_synthetic_log_never_releases_an_unscored_row() -> None:
    scored = 0
    records = open_source("default", "synthetic", limit=3000, options=SMALL)
    for chunk in replay_log(records, ItemTexts(ENCODER), batch_size=64):
        if isinstance(chunk, ToScore):
            assert chunk.first == scored
            scored += len(chunk.batch)
        else:
            assert chunk.impression.max() < scored


class Spy:
    """Wraps a system and checks that no row reaches ``learn_many`` before it was scored."""

    def __init__(self, inner: EvalSystem) -> None:
        self.inner, self.name, self.tasks = inner, inner.name, inner.tasks
        self.scored: Counter[bytes] = Counter()
        self.learned: Counter[bytes] = Counter()
        self.calls: list[str] = []

    @staticmethod
    def _rows(batch: Batch) -> list[bytes]:
        ids = np.stack([batch.user.numpy(), batch.item.numpy()], axis=1).astype(np.int64)
        return [a.tobytes() + b.tobytes() for a, b in zip(ids, batch.dense.numpy(), strict=True)]

    def predict_many(self, batch: Batch) -> dict[str, np.ndarray]:
        assert batch.click is None and batch.conversion is None and batch.dwell is None
        self.calls.append("predict")
        self.scored.update(self._rows(batch))
        return self.inner.predict_many(batch)

    def learn_many(self, batch: Batch) -> None:
        self.calls.append("learn")
        self.learned.update(self._rows(batch))
        assert all(self.scored[row] >= n for row, n in self.learned.items())
        self.inner.learn_many(batch)


def test_no_system_sees_a_label_before_it_has_scored_that_row() -> None:
    config = EvalConfig(batch_size=64, systems="online,river_lr")
    spies = [Spy(s) for s in build_systems(config, LEARNER, static_examples=0)]
    records = open_source("default", "synthetic", limit=3000, options=SMALL)
    report = evaluate(records, spies, ENCODER, config=config)
    for spy in spies:
        assert "learn" in spy.calls and spy.calls[0] == "predict"
        assert sum(spy.learned.values()) == report.examples == sum(spy.scored.values())


def test_metrics_use_the_right_rows_and_say_none_when_undefined() -> None:
    rng = np.random.default_rng(0)
    n = 400
    labels = {
        "click": (rng.random(n) < 0.3).astype(float),
        "conversion": np.zeros(n),
        "dwell": rng.random(n),
        "has_dwell": rng.random(n) < 0.5,
    }
    p = {"click": rng.random(n), "conversion": rng.random(n), "dwell": rng.random(n)}
    cold = np.arange(n) < 100
    post = post_drift_rows(np.arange(n), [300], 50)
    got = system_metrics(labels, p, cold, post)
    assert set(got) == set(METRICS)
    y = labels["click"]
    assert got["click_auc"] == pytest.approx(roc_auc_score(y, p["click"]))
    assert got["cold_click_auc"] == pytest.approx(roc_auc_score(y[:100], p["click"][:100]))
    assert got["post_drift_click_auc"] == pytest.approx(
        roc_auc_score(y[300:350], p["click"][300:350])
    )
    rows = labels["has_dwell"]
    assert got["dwell_mae"] == pytest.approx(np.abs(p["dwell"] - labels["dwell"])[rows].mean())
    assert got["conversion_auc"] is None  # one class only
    river = system_metrics(labels, {"click": p["click"]}, cold, None)
    assert river["conversion_auc"] is river["dwell_mae"] is river["post_drift_click_auc"] is None


def test_rolling_auc_matches_sklearn_on_each_window() -> None:
    rng = np.random.default_rng(1)
    y, p = (rng.random(1000) < 0.4).astype(float), rng.random(1000)
    ends, auc = rolling_auc(y, p, window=300, step=100)
    assert ends.tolist() == [300, 400, 500, 600, 700, 800, 900, 1000]
    for end, value in zip(ends, auc, strict=True):
        assert value == pytest.approx(roc_auc_score(y[end - 300 : end], p[end - 300 : end]))


def test_report_slices_match_the_log_and_runs_are_deterministic() -> None:
    config = EvalConfig(batch_size=128, systems="online,river_lr", cold_impressions=5)
    first = evaluate_source(
        "default", "synthetic", ENCODER, limit=3000, options=SMALL, config=config
    )
    again = evaluate_source(
        "default", "synthetic", ENCODER, limit=3000, options=SMALL, config=config
    )
    assert first.metrics == again.metrics
    assert first.events == 3000 and first.drift_points  # n_events follows the limit
    seen: Counter[str] = Counter()
    ranks, events, index = [], [], 0
    for record in open_source("default", "synthetic", limit=3000, options=SMALL):
        if isinstance(record, Item):
            continue
        if isinstance(record, Impression):
            ranks.append(seen[record.item_id])
            events.append(index)
            seen[record.item_id] += 1
        index += 1
    assert first.examples == len(ranks)
    assert first.cold_share == pytest.approx(np.mean(np.array(ranks) < 5))
    post = post_drift_rows(np.array(events), first.drift_points, config.post_drift_events)
    assert first.post_drift_share == pytest.approx(post.mean())


def test_static_gets_a_fifth_of_the_impressions(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, int] = {}
    real = evaluation.build_systems

    def spy(*args: object, static_examples: int, **kwargs: object) -> list[EvalSystem]:
        seen["static_examples"] = static_examples
        return real(*args, static_examples=static_examples, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(evaluation, "build_systems", spy)
    config = EvalConfig(systems="static")
    report = evaluate_source(
        "default", "synthetic", ENCODER, limit=2000, options=SMALL, config=config
    )
    assert seen["static_examples"] == round(0.2 * report.examples)


def test_unknown_systems_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown system"):
        build_systems(EvalConfig(systems="online,oracle"), LEARNER, static_examples=0)


@pytest.mark.slow
def test_online_learns_and_follows_a_drift_that_static_misses() -> None:
    """~10 s: a small world with few, picky users and one abrupt drift half-way."""
    options = {
        "n_events": "30000",
        "n_users": "50",
        "n_topics": "4",
        "n_initial_items": "100",
        "interest_concentration": "0.5",
        "new_items_every": "0",
        "drifts": '[{"kind": "abrupt", "at": 0.5}]',
    }
    config = EvalConfig(batch_size=64, systems="online,static", rolling_window=1000)
    report = evaluate_source(
        "default", "synthetic", ENCODER, limit=30000, options=options, config=config
    )
    online, static = report.metrics["online"], report.metrics["static"]
    assert report.curves["online"][1][-1] > 0.7, report.curves["online"]
    assert online["post_drift_click_auc"] > static["post_drift_click_auc"] + 0.02, report.metrics  # type: ignore[operator]
    assert online["click_auc"] > static["click_auc"], report.metrics  # type: ignore[operator]
