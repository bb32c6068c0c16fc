"""The impression -> outcome joiner, in event time."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import pytest
from driftrec.core.errors import ConfigError
from driftrec.core.schemas import Click, Conversion, DeadLetter, Dwell, Example, Impression, Item
from driftrec.features.joiner import (
    JoinerConfig,
    JoinerState,
    Output,
    Rejection,
    advance,
    flush,
    handle,
)
from driftrec.features.state import FeatureConfig, FeatureState
from hypothesis import given, settings
from hypothesis import strategies as st

T0 = datetime(2001, 9, 9, tzinfo=UTC)  # far from wall-clock now: only event time counts
CONFIG = JoinerConfig(
    click_window=timedelta(minutes=5),
    conversion_window=timedelta(minutes=60),
    dedupe_horizon=timedelta(minutes=90),
)
Event = Impression | Click | Conversion | Dwell


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def imp(eid: str, minutes: float, user: str = "u", item: str = "x") -> Impression:
    return Impression(event_id=eid, user_id=user, item_id=item, ts=at(minutes))


def click(eid: str, minutes: float, user: str = "u", item: str = "x") -> Click:
    return Click(event_id=eid, user_id=user, item_id=item, ts=at(minutes))


def conv(eid: str, minutes: float, user: str = "u", item: str = "x") -> Conversion:
    return Conversion(event_id=eid, user_id=user, item_id=item, ts=at(minutes))


def dwell(eid: str, minutes: float, seconds: float = 30.0) -> Dwell:
    return Dwell(event_id=eid, user_id="u", item_id="x", ts=at(minutes), seconds=seconds)


class Run:
    """A joiner with its feature state, recording every output."""

    def __init__(self, config: JoinerConfig = CONFIG) -> None:
        self.state, self.features = JoinerState(config), FeatureState()
        self.outputs: list[Output] = []

    def feed(self, events: Iterable[Event | Item]) -> list[Output]:
        new = [out for e in events for out in handle(e, self.state, self.features)]
        self.outputs += new
        return new

    def examples(self) -> list[Example]:
        return [o for o in self.outputs if isinstance(o, Example)]

    def rejections(self) -> list[Rejection]:
        return [o for o in self.outputs if isinstance(o, Rejection)]


def test_negative_is_emitted_once_the_watermark_passes_the_click_window() -> None:
    run = Run()
    run.feed([imp("i1", 0)])
    assert run.feed([imp("other", 5, user="v")]) == []  # window [0, 5] still open at 5
    out = run.feed([imp("other2", 5.5, user="v")])
    assert [(e.impression.event_id, e.clicked, e.converted) for e in out] == [("i1", False, False)]  # type: ignore[union-attr]
    assert out[0].ready_ts == at(5) and out[0].closed_by == "window"  # type: ignore[union-attr]
    assert out[0].features.user_impressions == 0  # snapshot taken before it counted  # type: ignore[union-attr]


def test_impression_already_behind_the_watermark_closes_at_once() -> None:
    run = Run()
    run.feed([imp("tick", 30, user="v")])
    (example,) = run.feed([imp("old", 10)])
    assert example.impression.event_id == "old" and example.ready_ts == at(15)  # type: ignore[union-attr]


def test_clicked_impression_waits_for_the_conversion_window() -> None:
    run = Run()
    run.feed([imp("i1", 0), click("c1", 2)])
    assert advance(run.state, at(30)) == []
    run.feed([conv("v1", 50)])  # after the click window, inside the conversion window
    assert advance(run.state, at(60)) == []
    (example,) = advance(run.state, at(61))
    assert (example.clicked, example.converted, example.dwell_seconds) == (True, True, None)
    assert example.ready_ts == at(60)
    assert run.state.counters.positives == 1 and run.state.counters.conversions == 1


def test_example_is_emitted_early_when_every_outcome_is_in() -> None:
    run = Run()
    assert run.feed([imp("i1", 0), click("c1", 1), dwell("d1", 3, 42.0)]) == []
    (example,) = run.feed([conv("v1", 2)])
    assert example.closed_by == "complete"  # type: ignore[union-attr]
    assert example.ready_ts == at(3)  # the latest outcome's event time  # type: ignore[union-attr]
    assert example.dwell_seconds == 42.0  # type: ignore[union-attr]
    assert run.state.sizes()["pending"] == 0 and flush(run.state) == []


def test_outcome_joins_the_most_recent_open_impression() -> None:
    run = Run()
    run.feed([imp("old", 0), imp("new", 1), click("c1", 2)])
    by_id = {e.impression.event_id: e for e in flush(run.state)}
    assert by_id["new"].clicked and not by_id["old"].clicked
    run = Run()
    run.feed([imp("old", 0), imp("new", 1), click("c1", 2), click("c2", 3)])
    assert all(e.clicked for e in flush(run.state))  # a second click takes the older one


def _scenario() -> list[Event]:
    return [
        imp("i1", 0),
        click("c1", 1),
        imp("i2", 2, user="w", item="y"),
        dwell("d1", 4),
        imp("i3", 10, item="z"),
        click("c3", 12, item="z"),
        conv("v3", 20, item="z"),
        imp("i4", 30, user="w", item="y"),
    ]


def test_duplicates_are_dropped_and_replaying_changes_nothing() -> None:
    once = Run()
    once.feed(_scenario())
    expected = once.examples() + flush(once.state)

    twice = Run()
    redelivered = [e for event in _scenario() for e in (event, event)]
    twice.feed(redelivered)
    assert twice.state.counters.duplicates == len(_scenario())
    twice.feed(_scenario())  # the whole log again
    assert twice.examples() + flush(twice.state) == expected
    assert twice.rejections() == []
    twice.feed(_scenario())  # and again after the flush
    assert twice.examples() == once.examples() and flush(twice.state) == []


def test_late_unknown_and_unclicked_outcomes_are_rejected_with_reasons() -> None:
    run = Run()
    run.feed([imp("i1", 0), imp("i2", 0, item="y"), click("cy", 1, item="y")])
    run.feed([imp("tick", 6, user="v")])  # closes i1's click window
    out = run.feed(
        [
            click("late", 4),  # i1 already emitted as a negative
            click("ghost", 7, item="nope"),  # no impression at all
            conv("noclick", 7, user="v"),  # impression 'tick' is open but was not clicked
            conv("v1", 8, item="y"),
            conv("v2", 9, item="y"),  # i2 already converted
            conv("v3", 70, item="y"),  # after the conversion window
            click("before", 5, user="v"),  # precedes its only impression
        ]
    )
    reasons = [(r.event.event_id, r.reason) for r in out if isinstance(r, Rejection)]
    assert reasons == [
        ("late", "late_outcome"),
        ("ghost", "unknown_impression"),
        ("noclick", "no_click"),
        ("v2", "repeat_outcome"),
        ("v3", "late_outcome"),
        ("before", "unknown_impression"),
    ]
    counters = run.state.counters
    assert (counters.rejected, counters.late, counters.unknown) == (6, 2, 2)
    letter = run.rejections()[0].to_dead_letter()
    assert isinstance(letter, DeadLetter) and letter.reason.startswith("late_outcome")
    assert '"event_id":"late"' in letter.payload and letter.stage == "joiner"
    # rejected outcomes never reach the feature counters
    assert run.features.lookup("u", "x", at(100)).item_clicks == 0


def test_outcome_after_any_closed_impression_of_its_pair_is_late() -> None:
    run = Run()
    run.feed([imp("a", 0), imp("b", 10), click("cb", 11), imp("tick", 80, user="v")])
    assert [e.impression.event_id for e in run.examples()] == ["a", "b"]
    (rejection,) = run.feed([click("c", 3)])  # after a (closed at 5), before b
    assert rejection.reason == "late_outcome"  # type: ignore[union-attr]


def test_event_older_than_the_dedupe_horizon_is_rejected_as_stale() -> None:
    run = Run()
    run.feed([imp("i1", 0), imp("i2", 200, user="v")])
    assert run.feed([imp("i1", 0)])[0].reason == "stale"  # type: ignore[union-attr]
    assert run.state.counters.stale == 1 and run.state.counters.duplicates == 0


def test_allowed_lateness_holds_windows_open() -> None:
    config = JoinerConfig(
        click_window=timedelta(minutes=5),
        conversion_window=timedelta(minutes=60),
        dedupe_horizon=timedelta(minutes=90),
        allowed_lateness=timedelta(minutes=2),
    )
    run = Run(config)
    run.feed([imp("i1", 0), imp("tick", 6, user="v"), click("c1", 4)])  # 4 <= 5: still joins
    assert run.state.watermark == at(4)
    tick, example = advance(run.state, at(62.5))
    assert (tick.impression.event_id, tick.ready_ts) == ("tick", at(11))
    assert example.clicked and example.ready_ts == at(60)
    without = Run()
    without.feed([imp("i1", 0), imp("tick", 6, user="v")])
    assert without.feed([click("c1", 4)])[0].reason == "late_outcome"  # type: ignore[union-attr]


def test_state_stays_bounded_over_a_long_stream() -> None:
    rng = random.Random(7)
    run = Run()
    for n in range(6000):
        minute = n * 0.1  # 600 minutes of traffic, ten events a minute
        user, item = f"u{rng.randrange(50)}", f"x{rng.randrange(20)}"
        run.feed([Impression(event_id=f"i{n}", user_id=user, item_id=item, ts=at(minute))])
        if rng.random() < 0.3:
            run.feed([Click(event_id=f"c{n}", user_id=user, item_id=item, ts=at(minute + 0.05))])
    sizes = run.state.sizes()
    # 60 min of pending and 90 min of ids at ~13 events/min, nowhere near all 6000 events
    assert sizes["pending"] < 700 and sizes["seen"] < 1400
    assert sizes["deadline_heap"] < 2 * 700 and sizes["closed_heap"] < 1400
    advance(run.state, at(10_000))
    assert set(run.state.sizes().values()) == {0}
    counters = run.state.counters
    assert counters.emitted == 6000 and counters.positives + counters.rejected >= 1700


def test_flush_closes_everything_in_deadline_order() -> None:
    run = Run()
    run.feed([imp("a", 0), click("ca", 1), imp("b", 2, item="y"), imp("c", 1, item="z")])
    flushed = flush(run.state)
    assert [(e.impression.event_id, e.ready_ts) for e in flushed] == [
        ("c", at(6)),
        ("b", at(7)),
        ("a", at(60)),
    ]
    sizes = run.state.sizes()
    assert (sizes["pending"], sizes["deadline_heap"], sizes["closed"]) == (0, 0, 3)
    assert flush(run.state) == [] and advance(run.state, at(1000)) == []


def test_state_round_trips_through_json_mid_stream() -> None:
    events = [*_scenario(), imp("i5", 40), click("c5", 41), conv("v5", 42)]
    whole = Run()
    whole.feed(events)
    expected = whole.outputs + flush(whole.state)

    first = Run()
    first.feed(events[:5])
    blob = json.dumps({"joiner": first.state.to_dict(), "features": first.features.to_dict()})
    data = json.loads(blob)
    second = Run()
    second.state = JoinerState.from_dict(data["joiner"], CONFIG)
    second.features = FeatureState.from_dict(data["features"])
    second.feed(events)  # redelivery after a restart: the first five are duplicates now
    assert first.outputs + second.outputs + flush(second.state) == expected
    assert second.state.counters.duplicates == 5
    with pytest.raises(ConfigError):
        JoinerState.from_dict({"version": 0})


def test_items_feed_the_catalog_and_bad_configs_are_refused() -> None:
    run = Run()
    run.feed([Item(item_id="x", title="t", category="sport", ts=T0), imp("i1", 1), imp("i2", 2)])
    assert run.state.watermark == at(2) and run.state.counters.events == 2
    assert [e.features.category for e in flush(run.state)] == ["sport", "sport"]
    with pytest.raises(ConfigError):
        JoinerConfig(click_window=timedelta(hours=2), conversion_window=timedelta(hours=1))
    with pytest.raises(ConfigError):
        JoinerConfig(conversion_window=timedelta(days=2), dedupe_horizon=timedelta(days=1))


raw_events = st.lists(
    st.tuples(
        st.sampled_from(["impression", "click", "conversion", "dwell"]),
        st.integers(0, 1),
        st.integers(0, 1),
        st.integers(0, 8),  # minutes since the previous event: in order, with ties
    ),
    max_size=40,
)


def _build(raw: list[tuple[str, int, int, int]]) -> list[Event]:
    events: list[Event] = []
    minute = 0
    for n, (kind, user, item, gap) in enumerate(raw):
        minute += gap
        common = {"event_id": f"e{n}", "user_id": f"u{user}", "item_id": f"x{item}"}
        if kind == "dwell":
            events.append(Dwell(**common, ts=at(minute), seconds=float(n)))
        else:
            cls = {"impression": Impression, "click": Click, "conversion": Conversion}[kind]
            events.append(cls(**common, ts=at(minute)))
    return events


@settings(max_examples=80, deadline=None)
@given(raw_events, st.integers(0, 40))
def test_every_event_is_accounted_for_and_redelivery_is_harmless(
    raw: list[tuple[str, int, int, int]], cut: int
) -> None:
    events = _build(raw)
    run = Run()
    run.feed(events)
    examples = run.examples() + flush(run.state)
    impressions = [e for e in events if isinstance(e, Impression)]
    assert sorted(x.impression.event_id for x in examples) == sorted(
        i.event_id for i in impressions
    )
    joined = sum(x.clicked + x.converted + (x.dwell_seconds is not None) for x in examples)
    assert joined + len(run.rejections()) == len(events) - len(impressions)
    for x in examples:
        window = CONFIG.conversion_window if x.clicked else CONFIG.click_window
        assert x.ready_ts <= x.impression.ts + window
        assert x.converted <= x.clicked
    # at-least-once redelivery of a prefix, and a restart from a JSON checkpoint, change nothing
    again = Run()
    again.feed(events[:cut])
    again.state = JoinerState.from_dict(json.loads(json.dumps(again.state.to_dict())), CONFIG)
    again.feed(events)
    assert again.examples() + flush(again.state) == examples


def test_an_event_far_ahead_of_the_partition_is_rejected_and_moves_nothing() -> None:
    run = Run(JoinerConfig(click_window=timedelta(minutes=5), max_ahead=timedelta(days=1)))
    run.feed([imp("i1", 0), imp("i2", 1)])
    mark = run.state.watermark
    (rejected,) = run.feed([imp("typo", 60 * 24 * 365 * 99)])  # dated a century ahead
    assert isinstance(rejected, Rejection) and rejected.reason == "too_far_ahead"
    assert "timestamp too far ahead" in rejected.to_dead_letter().reason
    assert run.state.watermark == mark and not run.examples()
    run.feed([click("c1", 2), imp("i3", 130)])  # the partition carries on as if it never came
    assert [e.impression.event_id for e in run.examples()] == ["i1", "i2"]
    assert run.state.counters.ahead == 1


def test_in_live_mode_an_event_ahead_of_the_wall_clock_is_rejected() -> None:
    state, features = JoinerState(CONFIG), FeatureState()
    now = at(0)
    (rejected,) = handle(imp("i1", 30), state, features, now=now)  # the first event, too
    assert isinstance(rejected, Rejection) and rejected.reason == "too_far_ahead"
    assert state.watermark is None
    assert handle(imp("i2", 5), state, features, now=now) == []  # within 10 minutes: fine


def test_advance_closes_the_windows_of_an_idle_partition() -> None:
    run = Run()
    run.feed([imp("i1", 0)])
    assert advance(run.state, at(4)) == []
    (negative,) = advance(run.state, at(6))
    assert negative.impression.event_id == "i1" and not negative.clicked


def test_deltas_applied_in_order_rebuild_the_state_exactly() -> None:
    """What incremental snapshots rely on: a hash that received every delta (writes and
    deletes) describes the live state, evictions and expiries included."""
    rng = random.Random(5)
    state = JoinerState(CONFIG)
    features = FeatureState(FeatureConfig(ttl=timedelta(minutes=120)))
    stored: dict[str, str] = {}

    def save() -> None:
        for write, delete in (state.delta(), features.delta()):
            for key in delete:
                stored.pop(key, None)
            stored.update(write)

    minute = 0.0
    for n in range(3000):
        minute += rng.expovariate(1.0)
        user, item = f"u{rng.randrange(40)}", f"i{rng.randrange(30)}"
        event: Event = imp(f"e{n}", minute, user, item)
        if rng.random() < 0.4:
            event = click(f"e{n}", minute, user, item)
        handle(event, state, features)
        if n % 97 == 0:
            features.evict_inactive(at(minute))
            save()
    save()
    rebuilt, live = JoinerState.from_delta(stored, CONFIG).to_dict(), state.to_dict()
    rebuilt["closed"].sort()
    live["closed"].sort()
    assert rebuilt == live
    assert FeatureState.from_delta(stored).to_dict() == features.to_dict()
    assert len(stored) < 3000  # expired ids, closed pairs and idle users left the hash
