"""FeatureState against a pandas oracle, and FeatureEncoder's Batch contents."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import torch
from driftrec.core.errors import ConfigError
from driftrec.core.schemas import Click, Conversion, Example, ExampleFeatures, Impression, Item
from driftrec.features.state import DENSE_FEATURES, FeatureConfig, FeatureState, dense_features
from driftrec.features.vectorise import FeatureEncoder, stable_hash
from hypothesis import given, settings
from hypothesis import strategies as st

T0 = datetime(2024, 3, 1, tzinfo=UTC)
HALF_LIFE = timedelta(minutes=10)


def _event(kind: str, n: int, user: int, item: int, minute: float) -> object:
    ts = T0 + timedelta(minutes=minute)
    if kind == "item":
        return Item(item_id=f"i{item}", title="t", category=f"c{user}", ts=ts)
    cls = {"impression": Impression, "click": Click, "conversion": Conversion}[kind]
    return cls(event_id=f"e{n}", user_id=f"u{user}", item_id=f"i{item}", ts=ts)


events_strategy = st.lists(
    st.tuples(
        st.sampled_from(["impression", "impression", "click", "item", "conversion"]),
        st.integers(0, 2),
        st.integers(0, 3),
        # out of order on purpose (the definition covers late events), with many ties
        st.integers(0, 40).map(lambda step: step * 3.0),
    ),
    max_size=60,
)


def _oracle(df: pd.DataFrame, k: int, history: int) -> dict[str, object]:
    """Features of impression row k from rows 0..k-1 only, computed from the definition."""
    row, prior = df.iloc[k], df.iloc[:k]
    # row["item"], not row.item: Series.item is a method
    mine = prior[prior.user == row["user"]]
    theirs = prior[(prior.item == row["item"]) & prior.kind.isin(["impression", "click"])]
    catalog = prior[(prior.kind == "item") & (prior.item == row["item"])]
    ref = max(row["ts"], theirs.ts.max()) if len(theirs) else row["ts"]
    weight = np.exp2(-(ref - theirs.ts) / (HALF_LIFE.total_seconds() * 1e6))
    clicks = mine[mine.kind == "click"].sort_values("ts", kind="stable")
    latest = catalog[catalog.ts == catalog.ts.max()] if len(catalog) else catalog
    return {
        "user_impressions": int((mine.kind == "impression").sum()),
        "user_clicks": len(clicks),
        "item_impressions": int((theirs.kind == "impression").sum()),
        "item_clicks": int((theirs.kind == "click").sum()),
        "item_recent_impressions": float(weight[theirs.kind == "impression"].sum()),
        "item_recent_clicks": float(weight[theirs.kind == "click"].sum()),
        "category": latest.category.iloc[-1] if len(latest) else "",
        "recent_clicks": tuple(clicks.item.iloc[-history:]) if len(clicks) else (),
    }


@settings(max_examples=60, deadline=None)
@given(events_strategy, st.integers(1, 4))
def test_snapshots_equal_pandas_oracle(
    raw: list[tuple[str, int, int, float]], history: int
) -> None:
    events = [_event(kind, n, u, i, m) for n, (kind, u, i, m) in enumerate(raw)]
    state = FeatureState(FeatureConfig(history_size=history, ctr_half_life=HALF_LIFE))
    snapshots = {}
    for k, event in enumerate(events):
        if isinstance(event, Impression):
            snapshots[k] = state.snapshot(event)  # before observe: the oracle sees rows < k
        state.observe(event)  # type: ignore[arg-type]
    df = pd.DataFrame(
        {
            "kind": [e.type for e in events],  # type: ignore[attr-defined]
            "user": [getattr(e, "user_id", None) for e in events],
            "item": [e.item_id for e in events],  # type: ignore[attr-defined]
            "category": [getattr(e, "category", None) for e in events],
            "ts": [(e.ts - T0) // timedelta(microseconds=1) for e in events],  # type: ignore[attr-defined]
        }
    )
    for k, snap in snapshots.items():
        expected = _oracle(df, k, history)
        got = snap.model_dump()
        for key in ("item_recent_impressions", "item_recent_clicks"):
            assert got.pop(key) == pytest.approx(expected.pop(key), rel=1e-9, abs=1e-12)
        assert got == expected


@settings(max_examples=60, deadline=None)
@given(events_strategy, st.integers(0, 3), st.integers(-10, 130))
def test_lookup_many_equals_lookup_per_item(
    raw: list[tuple[str, int, int, float]], user: int, minute: int
) -> None:
    state = FeatureState(FeatureConfig(history_size=3, ctr_half_life=HALF_LIFE))
    for n, (kind, u, i, m) in enumerate(raw):
        state.observe(_event(kind, n, u, i, m))  # type: ignore[arg-type]
    items = ["i0", "i3", "never-seen", "i1", "i0", "i2"]  # repeats and unknowns included
    ts = T0 + timedelta(minutes=minute)  # before, between and after the events
    many = state.lookup_many(f"u{user}", items, ts)
    assert len(many) == len(items) and many.item_counts.shape == (len(items), 4)
    assert many.rows() == [state.lookup(f"u{user}", item, ts) for item in items]


def test_snapshot_excludes_the_impression_itself() -> None:
    state = FeatureState()
    imp = Impression(event_id="a", user_id="u", item_id="i", ts=T0)
    before = state.snapshot(imp)
    state.observe(imp)
    assert (before.user_impressions, before.item_impressions, before.item_recent_impressions) == (
        0,
        0,
        0.0,
    )
    assert state.snapshot(imp).item_impressions == 1


def test_decay_halves_per_half_life_and_history_is_bounded() -> None:
    state = FeatureState(FeatureConfig(history_size=2, ctr_half_life=HALF_LIFE))
    for n, item in enumerate(["a", "b", "c"]):
        state.observe(Click(event_id=f"c{n}", user_id="u", item_id=item, ts=T0))
    state.observe(Impression(event_id="x", user_id="u", item_id="a", ts=T0))
    snap = state.lookup("u", "a", T0 + 2 * HALF_LIFE)
    assert snap.item_recent_impressions == pytest.approx(0.25)
    assert snap.item_recent_clicks == pytest.approx(0.25)
    assert snap.recent_clicks == ("b", "c")


def test_state_round_trips_through_json() -> None:
    state = FeatureState(FeatureConfig(history_size=3))
    state.observe(Item(item_id="i", title="t", category="news", ts=T0))
    state.observe(Impression(event_id="a", user_id="u", item_id="i", ts=T0))
    state.observe(Click(event_id="b", user_id="u", item_id="i", ts=T0 + timedelta(seconds=5)))
    copy = FeatureState.from_dict(json.loads(json.dumps(state.to_dict())), state.config)
    later = T0 + timedelta(minutes=7)
    assert copy.lookup("u", "i", later) == state.lookup("u", "i", later)
    assert copy.to_dict() == state.to_dict()
    with pytest.raises(ConfigError):
        FeatureState.from_dict({"version": 99})


@pytest.mark.parametrize(
    "kwargs", [{"history_size": 0}, {"ctr_half_life": timedelta(0)}, {"ctr_prior": 2.0}]
)
def test_bad_feature_config_is_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        FeatureConfig(**kwargs)  # type: ignore[arg-type]


# --- vectoriser -----------------------------------------------------------------------------

VECTORS = {
    "a": np.array([1.0, 0.0, 2.0], np.float32),
    "b": np.array([3.0, 4.0, 0.0], np.float32),
}


class Lookup:
    """Text vectors for known items; unknown rows are garbage to prove they are masked."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, ids: object) -> tuple[np.ndarray, np.ndarray]:
        ids = list(ids)  # type: ignore[call-overload]
        self.calls.append(ids)
        rows = [VECTORS.get(i, np.full(3, 99.0, np.float32)) for i in ids]
        return np.stack(rows), np.array([i in VECTORS for i in ids])


def _rows() -> tuple[list[Impression], list[ExampleFeatures]]:
    ts = datetime(2024, 3, 1, 6, 0, tzinfo=UTC)  # 06:00 -> angle pi/2
    impressions = [
        Impression(event_id="1", user_id="u1", item_id="a", ts=ts, position=3),
        Impression(event_id="2", user_id="u2", item_id="zz", ts=ts, position=0),
    ]
    features = [
        ExampleFeatures(
            user_impressions=9,
            user_clicks=1,
            item_impressions=30,
            item_clicks=4,
            item_recent_impressions=2.0,
            item_recent_clicks=1.0,
            category="news",
            recent_clicks=("a", "b", "zz", "b"),
        ),
        ExampleFeatures(),
    ]
    return impressions, features


def test_to_batch_shapes_dtypes_and_text() -> None:
    impressions, features = _rows()
    lookup = Lookup()
    batch = FeatureEncoder(text_dim=3).to_batch(impressions, features, lookup)
    assert lookup.calls == [["a", "zz", "b"]]  # one call, unique ids
    assert len(batch) == 2 and not batch.has_labels
    for name in ("user", "item", "category"):
        tensor = getattr(batch, name)
        assert tensor.dtype == torch.int64 and tensor.shape == (2,) and bool((tensor >= 0).all())
    for name, shape in [("text", (2, 3)), ("has_text", (2,)), ("interest", (2, 3))]:
        assert getattr(batch, name).dtype == torch.float32
        assert getattr(batch, name).shape == shape
    assert batch.dense.shape == (2, len(DENSE_FEATURES)) and batch.dense.dtype == torch.float32
    assert batch.item.tolist() == [stable_hash("a", "item"), stable_hash("zz", "item")]
    assert batch.text.tolist() == [[1.0, 0.0, 2.0], [0.0, 0.0, 0.0]]
    assert batch.has_text.tolist() == [1.0, 0.0]
    # known clicks a, b, b (zz has no text): mean of their vectors; no clicks -> zeros
    expected = (VECTORS["a"] + 2 * VECTORS["b"]) / 3
    assert np.allclose(batch.interest[0].numpy(), expected)
    assert batch.interest[1].tolist() == [0.0, 0.0, 0.0]


def test_dense_values_follow_their_names() -> None:
    impressions, features = _rows()
    config = FeatureConfig(history_size=8, ctr_prior=0.1, ctr_prior_weight=10.0)
    dense = dict(zip(DENSE_FEATURES, dense_features(impressions, features, config)[0], strict=True))
    expected = {
        "log1p_position": np.log1p(3),
        "hour_sin": 1.0,
        "hour_cos": 0.0,
        "log1p_user_impressions": np.log1p(9),
        "log1p_user_clicks": np.log1p(1),
        "user_ctr": (1 + 1) / (9 + 10),
        "log1p_item_impressions": np.log1p(30),
        "log1p_item_clicks": np.log1p(4),
        "item_ctr": (4 + 1) / (30 + 10),
        "log1p_item_recent_impressions": np.log1p(2.0),
        "item_recent_ctr": (1 + 1) / (2 + 10),
        "history_fill": 4 / 8,
    }
    assert dense.keys() == expected.keys()
    for name, value in expected.items():
        assert dense[name] == pytest.approx(value, abs=1e-6), name


def test_examples_to_batch_labels() -> None:
    impressions, features = _rows()
    examples = [
        Example(
            impression=impressions[0],
            features=features[0],
            clicked=True,
            converted=True,
            dwell_seconds=np.e - 1,
            ready_ts=T0,
        ),
        Example(impression=impressions[1], features=features[1], clicked=False, ready_ts=T0),
    ]
    encoder = FeatureEncoder(text_dim=3)
    batch = encoder.examples_to_batch(examples, Lookup())
    assert batch.has_labels
    assert batch.click.tolist() == [1.0, 0.0]  # type: ignore[union-attr]
    assert batch.conversion.tolist() == [1.0, 0.0]  # type: ignore[union-attr]
    assert batch.dwell.tolist() == pytest.approx([1.0, 0.0])  # type: ignore[union-attr]
    assert batch.click.dtype == torch.float32  # type: ignore[union-attr]
    unlabelled = encoder.to_batch(impressions, features, Lookup())
    assert torch.equal(unlabelled.dense, batch.dense) and torch.equal(unlabelled.user, batch.user)


def test_candidates_to_batch_equals_to_batch_of_the_same_impressions() -> None:
    state = FeatureState(FeatureConfig(history_size=4, ctr_half_life=HALF_LIFE))
    state.observe(Item(item_id="a", title="t", category="news", ts=T0))
    for n, (kind, item) in enumerate(
        [(Impression, "a"), (Click, "a"), (Impression, "b"), (Click, "zz")]
    ):
        ts = T0 + timedelta(minutes=n)
        state.observe(kind(event_id=f"e{n}", user_id="u0", item_id=item, ts=ts))
    ts = datetime(2024, 3, 1, 13, 37, 11, tzinfo=UTC)
    items = ["a", "b", "zz", "new", "a"]
    impressions = [Impression(event_id="s", user_id="u0", item_id=i, ts=ts) for i in items]
    encoder = FeatureEncoder(text_dim=3, config=state.config)
    rows = encoder.to_batch(impressions, [state.snapshot(i) for i in impressions], Lookup())
    lookup = Lookup()
    columns = encoder.candidates_to_batch(
        "u0", items, state.lookup_many("u0", items, ts), ts, lookup
    )
    assert lookup.calls == [["a", "b", "zz", "new"]]  # one call, unique ids
    assert rows.interest.abs().sum() > 0 and rows.has_text.tolist() == [1, 1, 0, 0, 1]
    for name in ("user", "item", "category", "text", "has_text", "interest", "dense"):
        assert torch.equal(getattr(rows, name), getattr(columns, name)), name
    with pytest.raises(ConfigError, match="candidates"):
        encoder.candidates_to_batch("u0", items[:2], state.lookup_many("u0", items, ts), ts, lookup)


def test_empty_batch_and_bad_lookup() -> None:
    encoder = FeatureEncoder(text_dim=3)
    lookup = Lookup()
    empty = encoder.to_batch([], [], lookup)
    assert lookup.calls == [] and empty.text.shape == (0, 3) and empty.dense.shape == (0, 12)
    impressions, features = _rows()
    with pytest.raises(ConfigError, match="text_dim"):
        FeatureEncoder(text_dim=4).to_batch(impressions, features, Lookup())
    with pytest.raises(ConfigError):
        encoder.to_batch(impressions, features[:1], lookup)


def test_stable_hash_is_pinned() -> None:
    # A changed hash silently remaps every embedding row of a trained model.
    assert stable_hash("u1", "user") == PINNED_USER_HASH
    assert stable_hash("u1", "user") != stable_hash("u1", "item")


PINNED_USER_HASH = 3340461562189243136
