"""Join impressions with their click, conversion and dwell outcomes in event time.

``handle(event, state, features)`` is the whole joiner: the faust agent decodes,
calls it and emits what it returns; ``driftrec eval`` calls it over a log and then
``flush``. Semantics (all times are event times):

- An outcome joins the most recent pending impression of the same (user, item)
  with ``impression.ts <= outcome.ts <= impression.ts + window`` that lacks that
  outcome (click window for clicks, conversion window for conversion and dwell;
  conversion and dwell also need the impression to be clicked already).
- The watermark is the largest event ts seen minus ``allowed_lateness``; a window
  ``[ts, ts + w]`` closes once the watermark is past its end. An unclicked
  impression is then a negative; a clicked one waits for the conversion window,
  unless click, conversion and dwell are all in, which emits it at once.
- Events are deduplicated by ``event_id`` over ``dedupe_horizon``; an event older
  than that behind the watermark is rejected as ``stale`` (we could no longer tell),
  so replaying a log twice never yields an example twice.
- An event more than ``max_ahead`` past the newest event time (or, in live mode, when
  ``handle`` gets the wall clock as ``now``, more than ``max_ahead_of_clock`` past it)
  is rejected as ``too_far_ahead`` and does not move the watermark: one mistyped
  timestamp must not close every window of its partition. ``max_ahead`` is generous by
  default because real logs are sparse (MovieLens has gaps of over a year).
- A partition that receives nothing moves on with the wall clock: ``advance`` is how
  the stream closes the windows of an idle partition.
- Outcomes that cannot join come back as ``Rejection`` (for the dead-letter topic).
  Only accepted events update ``FeatureState``, so feature counters agree with labels.

>>> from datetime import datetime, timedelta, timezone
>>> from driftrec.core.schemas import Click, Impression
>>> from driftrec.features.state import FeatureState
>>> t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
>>> state, features = JoinerState(JoinerConfig(timedelta(minutes=5), timedelta(hours=1))), FeatureState()
>>> handle(Impression(event_id="i", user_id="u", item_id="x", ts=t0), state, features)
[]
>>> handle(Click(event_id="c", user_id="u", item_id="y", ts=t0), state, features)[0].reason
'unknown_impression'
>>> [(e.clicked, e.ready_ts - t0) for e in advance(state, t0 + timedelta(minutes=6))]
[(False, datetime.timedelta(seconds=300))]
"""

from __future__ import annotations

import bisect
import heapq
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeAlias

from driftrec.core import (
    Click,
    ConfigError,
    Conversion,
    DeadLetter,
    DriftrecConfig,
    Dwell,
    Example,
    ExampleFeatures,
    Impression,
    Item,
    as_payload,
    encode,
)
from driftrec.features.state import FeatureState, to_micros

__all__ = [
    "JoinerConfig",
    "JoinerCounters",
    "JoinerState",
    "Output",
    "RejectReason",
    "Rejection",
    "advance",
    "flush",
    "handle",
    "joiner_config",
]

RejectReason: TypeAlias = Literal[
    "late_outcome", "unknown_impression", "no_click", "repeat_outcome", "stale", "too_far_ahead"
]
_Outcome: TypeAlias = Click | Conversion | Dwell
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _us(delta: timedelta) -> int:
    return delta // timedelta(microseconds=1)


def _ts(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


@dataclass(frozen=True)
class JoinerConfig:
    """Attribution windows (measured from the impression) and dedupe memory."""

    click_window: timedelta = timedelta(minutes=30)
    conversion_window: timedelta = timedelta(hours=2)
    dedupe_horizon: timedelta = timedelta(hours=24)
    allowed_lateness: timedelta = timedelta(0)
    max_ahead: timedelta = timedelta(days=730)
    max_ahead_of_clock: timedelta = timedelta(minutes=10)

    def __post_init__(self) -> None:
        if self.click_window <= timedelta(0) or self.allowed_lateness < timedelta(0):
            raise ConfigError("click_window must be positive and allowed_lateness >= 0")
        if self.max_ahead <= timedelta(0) or self.max_ahead_of_clock <= timedelta(0):
            raise ConfigError("max_ahead and max_ahead_of_clock must be positive")
        if self.conversion_window < self.click_window:
            raise ConfigError("conversion_window must be at least click_window")
        if self.dedupe_horizon < self.conversion_window:
            raise ConfigError(
                "dedupe_horizon must be at least conversion_window, or on-time outcomes "
                "would be rejected as stale"
            )


@dataclass
class JoinerCounters:
    """Running totals (plain ints, for metrics and checkpoints)."""

    events: int = 0
    duplicates: int = 0
    emitted: int = 0
    positives: int = 0
    conversions: int = 0
    rejected: int = 0
    late: int = 0
    unknown: int = 0
    stale: int = 0
    ahead: int = 0


@dataclass(frozen=True)
class Rejection:
    """An event the joiner refused, with the reason; goes to the dead-letter topic."""

    reason: RejectReason
    event: Impression | Click | Conversion | Dwell
    detail: str

    def to_dead_letter(self, stage: str = "joiner") -> DeadLetter:
        """The dead letter; the agent adds topic, partition and offset."""
        return DeadLetter(
            reason=f"{self.reason}: {self.detail}",
            stage=stage,
            ts=self.event.ts,
            payload=as_payload(encode(self.event)),
        )


Output: TypeAlias = Example | Rejection


@dataclass(eq=False)
class _Pending:
    impression: Impression
    features: ExampleFeatures
    ts_us: int
    seq: int
    deadline_us: int
    click_us: int | None = None
    conversion_us: int | None = None
    dwell_us: int | None = None
    dwell_seconds: float | None = None

    def has(self, kind: str) -> bool:
        return getattr(self, f"{kind}_us") is not None


class JoinerState:
    """Pending impressions, seen event ids and recently closed pairs, all expiring."""

    def __init__(self, config: JoinerConfig | None = None) -> None:
        self.config = config or JoinerConfig()
        self.counters = JoinerCounters()
        self._click_us = _us(self.config.click_window)
        self._conversion_us = _us(self.config.conversion_window)
        self._horizon_us = _us(self.config.dedupe_horizon)
        self._lateness_us = _us(self.config.allowed_lateness)
        self._max_us: int | None = None
        self._seq = 0
        self._pending: dict[tuple[str, str], list[_Pending]] = {}  # sorted by (ts, seq)
        self._deadlines: list[tuple[int, int, _Pending]] = []  # lazy: stale entries skipped
        self._seen: dict[str, int] = {}  # event id -> expiry
        self._seen_heap: list[tuple[int, str]] = []
        # pair -> (earliest closed impression ts, when the latest one is forgotten); only
        # tells a late outcome from an unknown one, and "an impression at that ts closed"
        # stays true, so keeping the earliest ts until the latest expires is never wrong.
        self._closed: dict[tuple[str, str], tuple[int, int]] = {}
        self._closed_heap: list[tuple[int, str, str]] = []
        self._by_seq: dict[int, _Pending] = {}
        #: Keys (see ``delta``) changed since the last ``delta``: what a snapshot writes.
        self._changed: set[str] = set()

    @property
    def watermark_us(self) -> int | None:
        return None if self._max_us is None else self._max_us - self._lateness_us

    @property
    def watermark(self) -> datetime | None:
        """Event time up to which every window is closed (None before any event)."""
        mark = self.watermark_us
        return None if mark is None else _ts(mark)

    def sizes(self) -> dict[str, int]:
        """Entries held per structure (to check and monitor that state stays bounded)."""
        return {
            "pending": sum(len(v) for v in self._pending.values()),
            "deadline_heap": len(self._deadlines),
            "seen": len(self._seen),
            "closed": len(self._closed),
            "closed_heap": len(self._closed_heap),
        }

    def _remember(self, event_id: str, ts_us: int) -> None:
        self._seen[event_id] = ts_us + self._horizon_us
        self._changed.add(f"s|{event_id}")
        heapq.heappush(self._seen_heap, (ts_us + self._horizon_us, event_id))

    def _add(self, impression: Impression, features: ExampleFeatures) -> None:
        ts_us = to_micros(impression.ts)
        self._seq += 1
        entry = _Pending(impression, features, ts_us, self._seq, ts_us + self._click_us)
        pair = (impression.user_id, impression.item_id)
        bisect.insort(self._pending.setdefault(pair, []), entry, key=lambda p: (p.ts_us, p.seq))
        self._by_seq[entry.seq] = entry
        self._changed.add(f"p|{entry.seq}")
        heapq.heappush(self._deadlines, (entry.deadline_us, entry.seq, entry))

    def _emit(
        self, entry: _Pending, ready_us: int, closed_by: Literal["window", "complete"]
    ) -> Example:
        pair = (entry.impression.user_id, entry.impression.item_id)
        siblings = self._pending[pair]
        siblings.remove(entry)
        if not siblings:
            del self._pending[pair]
        expiry = entry.ts_us + self._conversion_us + self._horizon_us
        earliest, forget = self._closed.get(pair, (entry.ts_us, -1))
        if expiry > forget:
            heapq.heappush(self._closed_heap, (expiry, *pair))
        self._closed[pair] = (min(earliest, entry.ts_us), max(forget, expiry))
        del self._by_seq[entry.seq]
        self._changed.update((f"p|{entry.seq}", _closed_key(pair)))
        entry.deadline_us = -1  # marks its heap entries dead
        self.counters.emitted += 1
        self.counters.positives += entry.click_us is not None
        self.counters.conversions += entry.conversion_us is not None
        return Example(
            impression=entry.impression,
            features=entry.features,
            clicked=entry.click_us is not None,
            converted=entry.conversion_us is not None,
            dwell_seconds=entry.dwell_seconds,
            ready_ts=_ts(ready_us),
            closed_by=closed_by,
        )

    def _close(self) -> list[Example]:
        mark = self.watermark_us
        if mark is None:
            return []
        out = []
        while self._deadlines and self._deadlines[0][0] < mark:
            deadline, _, entry = heapq.heappop(self._deadlines)
            if entry.deadline_us == deadline:
                out.append(self._emit(entry, deadline, "window"))
        while self._seen_heap and self._seen_heap[0][0] < mark:
            expiry, event_id = heapq.heappop(self._seen_heap)
            if self._seen.get(event_id) == expiry:
                del self._seen[event_id]
                self._changed.add(f"s|{event_id}")
        while self._closed_heap and self._closed_heap[0][0] < mark:
            expiry, user_id, item_id = heapq.heappop(self._closed_heap)
            if self._closed.get((user_id, item_id), (0, 0))[1] == expiry:
                del self._closed[(user_id, item_id)]
                self._changed.add(_closed_key((user_id, item_id)))
        return out

    def _join(self, event: _Outcome) -> Example | Rejection | None:
        kind, ts = event.type, to_micros(event.ts)
        window = self._click_us if kind == "click" else self._conversion_us
        pair = (event.user_id, event.item_id)
        before = [p for p in self._pending.get(pair, ()) if p.ts_us <= ts]
        in_window = [p for p in before if ts <= p.ts_us + window]
        eligible = [p for p in in_window if not p.has(kind) and (kind == "click" or p.has("click"))]
        if not eligible:
            return self._refuse(event, kind, before, in_window)
        entry = eligible[-1]
        self._changed.add(f"p|{entry.seq}")
        if kind == "click":
            entry.click_us = ts
            if entry.deadline_us != entry.ts_us + self._conversion_us:
                entry.deadline_us = entry.ts_us + self._conversion_us
                heapq.heappush(self._deadlines, (entry.deadline_us, entry.seq, entry))
        elif kind == "conversion":
            entry.conversion_us = ts
        elif isinstance(event, Dwell):
            entry.dwell_us, entry.dwell_seconds = ts, event.seconds
        if entry.click_us is None or entry.conversion_us is None or entry.dwell_us is None:
            return None
        return self._emit(
            entry, max(entry.click_us, entry.conversion_us, entry.dwell_us), "complete"
        )

    def _refuse(
        self, event: _Outcome, kind: str, before: list[_Pending], in_window: list[_Pending]
    ) -> Rejection:
        pair = (event.user_id, event.item_id)
        if kind != "click" and any(not p.has("click") for p in in_window):
            return self._reject(event, "no_click", f"{kind} for an impression that was not clicked")
        if in_window:
            return self._reject(
                event, "repeat_outcome", f"every open impression already has a {kind}"
            )
        closed = self._closed.get(pair)
        if before or (closed is not None and closed[0] <= to_micros(event.ts)):
            return self._reject(
                event, "late_outcome", f"{kind} after its attribution window closed"
            )
        return self._reject(
            event, "unknown_impression", f"no impression of {pair} precedes this {kind}"
        )

    def _reject(self, event: Impression | _Outcome, reason: RejectReason, detail: str) -> Rejection:
        self.counters.rejected += 1
        self.counters.late += reason == "late_outcome"
        self.counters.unknown += reason == "unknown_impression"
        self.counters.stale += reason == "stale"
        self.counters.ahead += reason == "too_far_ahead"
        return Rejection(reason, event, detail)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able state (checkpoint or changelog table); see ``from_dict``."""
        pending = [p for entries in self._pending.values() for p in entries]
        return {
            "version": 1,
            "max_us": self._max_us,
            "seq": self._seq,
            "pending": [_pending_row(p) for p in sorted(pending, key=lambda p: p.seq)],
            "seen": dict(self._seen),
            "closed": [[*pair, *entry] for pair, entry in self._closed.items()],
            "counters": asdict(self.counters),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], config: JoinerConfig | None = None) -> JoinerState:
        """Rebuild a state from ``to_dict`` output (heaps are rebuilt, not stored)."""
        if data.get("version") != 1:
            raise ConfigError(f"unknown joiner state version {data.get('version')!r}")
        state = cls(config)
        state._max_us, state._seq = data["max_us"], data["seq"]
        state.counters = JoinerCounters(**data["counters"])
        for row in data["pending"]:
            impression = Impression.model_validate(row["impression"])
            entry = _Pending(
                impression,
                ExampleFeatures.model_validate(row["features"]),
                **{k: row[k] for k in _PENDING_SCALARS},
            )
            state._pending.setdefault((impression.user_id, impression.item_id), []).append(entry)
            state._by_seq[entry.seq] = entry
            state._deadlines.append((entry.deadline_us, entry.seq, entry))
        for entries in state._pending.values():
            entries.sort(key=lambda p: (p.ts_us, p.seq))
        state._seen = {str(k): int(v) for k, v in data["seen"].items()}
        state._seen_heap = [(expiry, event_id) for event_id, expiry in state._seen.items()]
        for user, item, earliest, forget in data["closed"]:
            state._closed[(user, item)] = (earliest, forget)
            state._closed_heap.append((forget, user, item))
        heapq.heapify(state._deadlines)
        heapq.heapify(state._seen_heap)
        heapq.heapify(state._closed_heap)
        return state

    # -- incremental snapshots: one key per pending impression, remembered id, closed pair --

    def mark_all_changed(self) -> None:
        """Make the next ``delta`` write the whole state (for a store that lost it)."""
        self._changed.update(f"p|{seq}" for seq in self._by_seq)
        self._changed.update(f"s|{event_id}" for event_id in self._seen)
        self._changed.update(map(_closed_key, self._closed))

    def delta(self) -> tuple[dict[str, str], list[str]]:
        """What changed since the last call, as keys to write and keys to delete.

        Keys: ``meta`` (event time, sequence, counters), ``p|<seq>`` a pending impression,
        ``s|<event id>`` a remembered id, ``x|<user>\\x1f<item>`` a recently closed pair.
        Applying every delta in order to an empty hash gives ``from_delta``'s input.
        """
        write: dict[str, str] = {}
        delete: list[str] = []
        for key in self._changed:
            value = self._value(key)
            if value is None:
                delete.append(key)
            else:
                write[key] = value
        self._changed.clear()
        meta = {"version": 2, "max_us": self._max_us, "seq": self._seq}
        write["meta"] = json.dumps({**meta, "counters": asdict(self.counters)})
        return write, delete

    def _value(self, key: str) -> str | None:
        kind, _, name = key.partition("|")
        if kind == "s":
            expiry = self._seen.get(name)
            return None if expiry is None else str(expiry)
        if kind == "p":
            entry = self._by_seq.get(int(name))
            return None if entry is None else json.dumps(_pending_row(entry))
        user, _, item = name.partition("\x1f")
        closed = self._closed.get((user, item))
        return None if closed is None else json.dumps(closed)

    @classmethod
    def from_delta(cls, fields: dict[str, str], config: JoinerConfig | None = None) -> JoinerState:
        """Rebuild a state from the keys its deltas wrote (other keys are ignored)."""
        meta = json.loads(fields["meta"])
        if meta.get("version") != 2:
            raise ConfigError(f"unknown joiner snapshot version {meta.get('version')!r}")
        data: dict[str, Any] = {
            "version": 1,
            "max_us": meta["max_us"],
            "seq": meta["seq"],
            "counters": meta["counters"],
            "pending": [],
            "seen": {},
            "closed": [],
        }
        for key, value in fields.items():
            kind, _, name = key.partition("|")
            if kind == "p":
                data["pending"].append(json.loads(value))
            elif kind == "s":
                data["seen"][name] = int(value)
            elif kind == "x":
                user, _, item = name.partition("\x1f")
                data["closed"].append([user, item, *json.loads(value)])
        return cls.from_dict(data, config)


def _closed_key(pair: tuple[str, str]) -> str:
    return f"x|{pair[0]}\x1f{pair[1]}"


def _pending_row(p: _Pending) -> dict[str, Any]:
    return {
        "impression": p.impression.model_dump(mode="json"),
        "features": p.features.model_dump(mode="json"),
        **{k: getattr(p, k) for k in _PENDING_SCALARS},
    }


_PENDING_SCALARS = (
    "ts_us",
    "seq",
    "deadline_us",
    "click_us",
    "conversion_us",
    "dwell_us",
    "dwell_seconds",
)


def handle(
    event: Impression | Click | Conversion | Dwell | Item,
    state: JoinerState,
    features: FeatureState,
    now: datetime | None = None,
) -> list[Output]:
    """Apply one event; return examples that became final and any rejection, in order.
    ``now`` (the wall clock, live mode only) also bounds how far ahead an event may be."""
    if isinstance(event, Item):
        features.observe(event)  # catalog data: no event id, no event-time progress
        return []
    state.counters.events += 1
    ts = to_micros(event.ts)
    if event.event_id in state._seen:
        state.counters.duplicates += 1
        return []
    mark = state.watermark_us
    if mark is not None and ts + state._horizon_us < mark:
        return [state._reject(event, "stale", "older than the dedupe horizon behind the watermark")]
    ahead = _too_far_ahead(state, ts, now)
    if ahead:
        return [state._reject(event, "too_far_ahead", f"timestamp too far ahead: {ahead}")]
    state._remember(event.event_id, ts)
    state._max_us = ts if state._max_us is None else max(state._max_us, ts)
    out: list[Output] = list(state._close())
    if isinstance(event, Impression):
        state._add(event, features.snapshot(event))  # snapshot first: no label leakage
        features.observe(event)
    else:
        result = state._join(event)
        if not isinstance(result, Rejection):
            features.observe(event)
        if result is not None:
            out.append(result)
    out.extend(state._close())  # an impression already behind the watermark closes now
    return out


def _too_far_ahead(state: JoinerState, ts: int, now: datetime | None) -> str:
    """Why ``ts`` is too far ahead to be believed ('' when it is not)."""
    config = state.config
    if state._max_us is not None and ts > state._max_us + _us(config.max_ahead):
        return (
            f"more than {config.max_ahead} past the partition's newest event {_ts(state._max_us)}"
        )
    if now is not None and ts > to_micros(now) + _us(config.max_ahead_of_clock):
        return f"more than {config.max_ahead_of_clock} past the wall clock {now}"
    return ""


def advance(state: JoinerState, now_ts: datetime) -> list[Example]:
    """Move event time to ``now_ts`` (e.g. a partition heartbeat) and close due windows."""
    now = to_micros(now_ts)
    state._max_us = now if state._max_us is None else max(state._max_us, now)
    return state._close()


def flush(state: JoinerState) -> list[Example]:
    """Close every pending impression (end of a log); ``ready_ts`` is its window end."""
    live = sorted(
        (p for entries in state._pending.values() for p in entries),
        key=lambda p: (p.deadline_us, p.seq),
    )
    out = [state._emit(p, p.deadline_us, "window") for p in live]
    state._deadlines.clear()  # every entry left in it is dead now
    return out


def joiner_config(config: DriftrecConfig) -> JoinerConfig:
    """The joiner's windows as ``config`` sets them; ids are remembered for a day at least."""
    click = timedelta(seconds=config.click_window_s)
    conversion = timedelta(seconds=config.conversion_window_s)
    return JoinerConfig(
        click,
        conversion,
        dedupe_horizon=max(timedelta(hours=24), conversion),
        max_ahead=timedelta(seconds=config.max_ahead_s),
        max_ahead_of_clock=timedelta(seconds=config.max_ahead_of_clock_s),
    )
