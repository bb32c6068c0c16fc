"""The synthetic drifting click log: determinism, causal consistency, real drift, loading."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from driftrec.core.errors import ConfigError
from driftrec.core.schemas import Click, Dwell, Impression, Item
from driftrec.producers.records import EventRecord, Rejected
from driftrec.producers.synthetic import (
    DEFAULT_CONFIG,
    DriftSpec,
    SyntheticConfig,
    SyntheticLog,
    load_config,
    synthetic_records,
)
from driftrec.producers.synthetic_vocab import TOPIC_WORDS

SMALL = SyntheticConfig(
    seed=3,
    n_events=4_000,
    n_users=150,
    n_initial_items=120,
    new_items_every=800,
    new_items_batch=15,
    drifts=(DriftSpec(kind="abrupt", at=0.5),),
)


def fresh_records(config: SyntheticConfig) -> tuple[Item | EventRecord, ...]:
    records = tuple(SyntheticLog(config).records())
    good = tuple(r for r in records if not isinstance(r, Rejected))
    assert len(good) == len(records), "the generator never yields Rejected"
    return good


@cache
def records_of(config: SyntheticConfig) -> tuple[Item | EventRecord, ...]:
    return fresh_records(config)


def events_of(config: SyntheticConfig) -> list[EventRecord]:
    return [r for r in records_of(config) if not isinstance(r, Item)]


def test_same_config_gives_byte_identical_records() -> None:
    first = [r.model_dump_json() for r in fresh_records(SMALL)]
    again = [r.model_dump_json() for r in fresh_records(SMALL)]
    assert first == again


def test_different_seed_gives_a_different_log() -> None:
    other = SMALL.model_copy(update={"seed": 4})
    assert [r.model_dump_json() for r in records_of(SMALL)] != [
        r.model_dump_json() for r in records_of(other)
    ]


def test_exact_event_count_and_unique_ids() -> None:
    events = events_of(SMALL)
    assert len(events) == SMALL.n_events
    ids = [e.event_id for e in events]
    assert len(set(ids)) == len(ids)
    prefix = f"syn-{SyntheticLog(SMALL).fingerprint}-"
    assert ids[:3] == [f"{prefix}0", f"{prefix}1", f"{prefix}2"]
    assert SyntheticLog(SMALL.model_copy(update={"seed": 4})).fingerprint not in ids[0]


def test_records_are_in_timestamp_order_and_aware() -> None:
    stamps = [r.ts for r in records_of(SMALL)]
    assert all(ts.utcoffset() == timedelta(0) for ts in stamps)
    assert stamps == sorted(stamps)
    assert stamps[0] == SMALL.start


def test_every_item_is_yielded_before_its_first_reference() -> None:
    seen: set[str] = set()
    for record in records_of(SMALL):
        if isinstance(record, Item):
            assert record.item_id not in seen, "an item is announced once"
            seen.add(record.item_id)
        else:
            assert record.item_id in seen, f"{record.event_id} references an unannounced item"


def test_outcomes_follow_their_causes() -> None:
    shown: dict[tuple[str, str], list[Impression]] = defaultdict(list)
    clicked: dict[tuple[str, str], list[Click]] = defaultdict(list)
    counts: Counter[str] = Counter()
    for event in events_of(SMALL):
        key = (event.user_id, event.item_id)
        counts[event.type] += 1
        if isinstance(event, Impression):
            shown[key].append(event)
        elif isinstance(event, Click):
            assert any(i.ts < event.ts for i in shown[key]), "click without an earlier impression"
            clicked[key].append(event)
        else:
            assert any(c.ts < event.ts for c in clicked[key]), f"{event.type} without a click"
            if isinstance(event, Dwell):
                assert event.seconds >= 0.0
    assert counts["click"] > 0 and counts["dwell"] > 0 and counts["conversion"] > 0
    assert counts["conversion"] < counts["click"]


def test_slates_hold_distinct_items_at_positions_from_zero() -> None:
    slates: dict[int | str | float | bool, list[Impression]] = defaultdict(list)
    for event in events_of(SMALL):
        if isinstance(event, Impression):
            slates[event.context["session"]].append(event)
    for slate in slates.values():
        assert [i.position for i in slate] == list(range(len(slate)))
        assert len({i.item_id for i in slate}) == len(slate)
        assert SMALL.slate_min >= 1 and len(slate) <= SMALL.slate_max


def test_ctr_is_realistic_and_shows_position_bias() -> None:
    events = events_of(SMALL)
    impressions = [e for e in events if isinstance(e, Impression)]
    clicks = {(e.user_id, e.item_id) for e in events if isinstance(e, Click)}
    ctr = sum(isinstance(e, Click) for e in events) / len(impressions)
    assert 0.04 < ctr < 0.16
    by_position: dict[str, list[bool]] = defaultdict(list)
    for i in impressions:
        by_position["top" if i.position == 0 else "deep" if i.position >= 4 else "mid"].append(
            (i.user_id, i.item_id) in clicks
        )
    top, deep = (sum(by_position[k]) / len(by_position[k]) for k in ("top", "deep"))
    assert top > 1.5 * deep


def test_new_items_arrive_during_the_log_and_get_shown_soon() -> None:
    items = [r for r in records_of(SMALL) if isinstance(r, Item)]
    late = [i for i in items if i.ts > SMALL.start]
    assert len(items) - len(late) == SMALL.n_initial_items
    assert len(late) >= SMALL.new_items_batch * 3
    first_shown: dict[str, datetime] = {}
    for event in events_of(SMALL):
        if isinstance(event, Impression):
            first_shown.setdefault(event.item_id, event.ts)
    shown_late = [i for i in late if i.item_id in first_shown]
    assert len(shown_late) >= 0.8 * len(late)
    waits = sorted((first_shown[i.item_id] - i.ts).total_seconds() for i in shown_late)
    assert waits[len(waits) // 2] < 3600.0, "fresh items should be shown within the hour"


def test_titles_carry_their_topic_and_category_noise_is_honoured() -> None:
    clean = SMALL.model_copy(update={"category_noise": 0.0, "n_events": 50})
    for item in (r for r in records_of(clean) if isinstance(r, Item)):
        own = [w for w in TOPIC_WORDS[item.category] if w in item.title.lower()]
        assert own, item
    noisy = SMALL.model_copy(update={"category_noise": 1.0, "n_events": 50})
    for item in (r for r in records_of(noisy) if isinstance(r, Item)):
        assert not any(w in item.title.lower() for w in TOPIC_WORDS[item.category]), item


def test_drift_point_marks_where_the_drift_takes_effect() -> None:
    (point,) = SyntheticLog(SMALL).drift_points
    assert point.kind == "abrupt" and "abrupt" in point.description
    assert abs(point.event_index - SMALL.n_events // 2) < 0.1 * SMALL.n_events
    events = events_of(SMALL)
    assert events[point.event_index - 1].ts <= point.ts <= events[point.event_index].ts


def _category_ctr(config: SyntheticConfig, start: int, stop: int | None) -> list[float]:
    """Click-through per item category over events[start:stop], categories in name order."""
    category = {r.item_id: r.category for r in records_of(config) if isinstance(r, Item)}
    shown: Counter[str] = Counter()
    clicks: Counter[str] = Counter()
    for event in events_of(config)[start:stop]:
        if isinstance(event, Impression):
            shown[category[event.item_id]] += 1
        elif isinstance(event, Click):
            clicks[category[event.item_id]] += 1
    return [clicks[c] / shown[c] for c in sorted(shown)]


def _favourite_share(config: SyntheticConfig, cut: int, after: int) -> float:
    """Share of clicks after ``after`` in the user's most-clicked category before ``cut``."""
    category = {r.item_id: r.category for r in records_of(config) if isinstance(r, Item)}
    events = events_of(config)
    before: dict[str, Counter[str]] = defaultdict(Counter)
    for event in events[:cut]:
        if isinstance(event, Click):
            before[event.user_id][category[event.item_id]] += 1
    favourite = {user: counts.most_common(1)[0][0] for user, counts in before.items()}
    later = [e for e in events[after:] if isinstance(e, Click) and e.user_id in favourite]
    return sum(category[e.item_id] == favourite[e.user_id] for e in later) / len(later)


@pytest.mark.parametrize("seed", [3, 7])
@pytest.mark.parametrize("kind", ["abrupt", "gradual"])
def test_drift_is_real_against_a_no_drift_control(
    kind: Literal["abrupt", "gradual"], seed: int
) -> None:
    span = 0.2 if kind == "gradual" else 0.0
    control = SMALL.model_copy(
        update={"seed": seed, "n_events": 24_000, "n_users": 300, "drifts": ()}
    )
    drifting = control.model_copy(update={"drifts": (DriftSpec(kind=kind, at=0.3, span=span),)})
    (point,) = SyntheticLog(drifting).drift_points
    cut, after = point.event_index, point.event_index + int(span * control.n_events)
    # Which topics click well: stable without drift, reshuffled by it.
    steady = np.corrcoef(_category_ctr(control, 0, cut), _category_ctr(control, after, None))
    shifted = np.corrcoef(_category_ctr(drifting, 0, cut), _category_ctr(drifting, after, None))
    assert steady[0, 1] > 0.6
    assert shifted[0, 1] < 0.5
    # Users stop clicking the topic that was their favourite before the drift.
    assert _favourite_share(drifting, cut, after) < 0.7 * _favourite_share(control, cut, after)


def test_default_config_drift_points_are_in_range() -> None:
    points = SyntheticLog(DEFAULT_CONFIG).drift_points
    assert [p.kind for p in points] == [d.kind for d in DEFAULT_CONFIG.drifts]
    assert {"abrupt", "gradual"} <= {p.kind for p in points}
    for point, spec in zip(points, DEFAULT_CONFIG.drifts, strict=True):
        target = spec.at * DEFAULT_CONFIG.n_events
        assert target <= point.event_index < target + 0.01 * DEFAULT_CONFIG.n_events
        assert point.ts > DEFAULT_CONFIG.start
    assert points[0].ts < points[1].ts


def test_default_source_names_mean_the_default_config() -> None:
    for source in ("default", "", "synthetic", " Default "):
        assert load_config(source) is DEFAULT_CONFIG


def test_json_file_then_options_override_the_default(tmp_path: Path) -> None:
    path = tmp_path / "world.json"
    path.write_text(json.dumps({"seed": 11, "n_events": 300, "n_users": 20, "drifts": []}))
    config = load_config(path, {"n_events": "250", "category_noise": "0.5"})
    assert (config.seed, config.n_events, config.n_users) == (11, 250, 20)
    assert config.category_noise == 0.5 and config.drifts == ()
    assert config.n_topics == DEFAULT_CONFIG.n_topics
    events = [
        r for r in synthetic_records(str(path), {"n_events": "250"}) if not isinstance(r, Item)
    ]
    assert len(events) == 250


def test_drifts_option_takes_a_json_list() -> None:
    config = load_config("default", {"drifts": '[{"kind": "gradual", "at": 0.2, "span": 0.1}]'})
    assert config.drifts == (DriftSpec(kind="gradual", at=0.2, span=0.1),)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"seed": "abc"}, "seed"),
        ({"seed": "-1"}, "seed"),
        ({"n_events": "0"}, "n_events"),
        ({"speed": "2"}, "unknown synthetic config field"),
        ({"slate_min": "9", "slate_max": "4"}, "slate_min must be <= slate_max"),
        ({"drifts": "not json"}, "JSON list"),
        ({"drifts": '[{"kind": "gradual", "at": 0.5}]'}, "span > 0"),
        ({"drifts": '[{"kind": "abrupt", "at": 0.5}, {"kind": "abrupt", "at": 0.2}]'}, "overlap"),
        ({"n_topics": "40"}, "n_topics"),
    ],
)
def test_bad_options_raise_config_error_eagerly(options: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        synthetic_records("default", options)


def test_bad_files_raise_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(broken)
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object"):
        load_config(listed)


def test_replay_dispatcher_opens_the_synthetic_log() -> None:
    from driftrec.producers.sources import open_source

    options = {"seed": "5", "n_events": "500", "n_users": "40", "n_initial_items": "60"}
    records = list(open_source("default", "synthetic", limit=120, options=options))
    assert sum(not isinstance(r, Item) for r in records) == 120
    assert isinstance(records[0], Item)


def test_click_probabilities_are_the_truth_the_clicks_were_drawn_from() -> None:
    config = SMALL.model_copy(update={"n_events": 30_000})
    log = SyntheticLog(config)
    p = log.click_probabilities()
    records = fresh_records(config)
    impressions = [r for r in records if isinstance(r, Impression)]
    assert len(p) == len(impressions) and ((p > 0) & (p < 1)).all()
    y, last, seen = np.zeros(len(p)), {}, 0  # a click is the pair's latest impression's
    for r in records:
        if isinstance(r, Impression):
            last[r.user_id, r.item_id] = seen
            seen += 1
        elif isinstance(r, Click):
            y[last[r.user_id, r.item_id]] = 1.0
    # Calibrated: in each decile of p, the click rate is the mean p (a batch oracle).
    order = np.argsort(p)
    for part in np.array_split(order, 10):
        rate, mean, n = y[part].mean(), p[part].mean(), len(part)
        assert abs(rate - mean) < 4 * np.sqrt(mean * (1 - mean) / n) + 1e-3, (rate, mean)
    assert np.array_equal(p, SyntheticLog(config).click_probabilities())  # seeded


def test_default_world_gives_users_a_history_before_the_first_drift() -> None:
    # The world's rules (module docstring): on the 60,000-event log the evaluation uses,
    # a typical user has tens of impressions and several clicks before interests drift,
    # and an item's first 20 impressions are about a third of all impressions.
    log = SyntheticLog(load_config("default", {"n_events": "60000"}))
    drift = log.drift_points[0].event_index
    impressions: Counter[str] = Counter()
    clicks: Counter[str] = Counter()
    per_item: Counter[str] = Counter()
    cold = total = 0
    for n, record in enumerate(r for r in log.records() if not isinstance(r, Item)):
        if isinstance(record, Impression):
            cold += per_item[record.item_id] < 20
            per_item[record.item_id] += 1
            total += 1
            if n < drift:
                impressions[record.user_id] += 1
        elif isinstance(record, Click) and n < drift:
            clicks[record.user_id] += 1
    users = list(impressions)
    assert len(users) > 0.9 * DEFAULT_CONFIG.n_users
    assert 20 <= np.median([impressions[u] for u in users]) <= 100
    assert np.median([clicks[u] for u in users]) >= 3
    assert 0.25 <= cold / total <= 0.45
    assert 20 <= np.median(list(per_item.values())) <= 100
