"""Feature state kept in event time, and the dense features derived from its snapshots.

The one place a feature is defined: the joiner snapshots ``FeatureState`` when an
impression arrives (before the impression counts, so nothing leaks from the label),
the snapshot travels on the examples topic, and training, offline evaluation and
serving all turn snapshots into numbers with ``dense_features``. Serving asks for one
user against many candidate items at once: ``lookup_many`` gives the same values as
``lookup`` per item, as columns (``CandidateFeatures``), without building and validating
one ``ExampleFeatures`` per candidate.

Recent CTR is exponentially decayed with half-life ``h``: after processing events
``e_1..e_k`` of an item, its decayed impression count as of time ``t`` is
``sum(2 ** (-(R - ts_i) / h))`` over its impressions, with ``R = max(t, latest ts of
any impression or click of the item)`` (so an out-of-order event never gets a weight
above one); clicks likewise. O(1) state per item.

State stays bounded: ``evict_inactive`` forgets users and items (and their catalog
entries) with no event within ``ttl`` of event time; a returning user starts afresh.

>>> from datetime import datetime, timedelta, timezone
>>> from driftrec.core.schemas import Click, Impression
>>> t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
>>> state = FeatureState(FeatureConfig(ctr_half_life=timedelta(hours=1)))
>>> state.observe(Impression(event_id="a", user_id="u", item_id="i", ts=t0))
>>> state.observe(Click(event_id="b", user_id="u", item_id="i", ts=t0))
>>> snap = state.lookup("u", "i", t0 + timedelta(hours=1))
>>> snap.item_impressions, snap.item_recent_clicks, snap.recent_clicks
(1, 0.5, ('i',))
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from driftrec.core import Click, ConfigError, Conversion, Dwell, ExampleFeatures, Impression, Item

__all__ = [
    "CLOCK_FEATURES",
    "DENSE_FEATURES",
    "CandidateFeatures",
    "FeatureConfig",
    "FeatureState",
    "dense_features",
    "dense_matrix",
    "to_micros",
]

#: Column order of ``Batch.dense``.
DENSE_FEATURES: tuple[str, ...] = (
    "log1p_position",
    "hour_sin",
    "hour_cos",
    "log1p_user_impressions",
    "log1p_user_clicks",
    "user_ctr",
    "log1p_item_impressions",
    "log1p_item_clicks",
    "item_ctr",
    "log1p_item_recent_impressions",
    "item_recent_ctr",
    "history_fill",
)

#: Dense columns that follow the clock: two windows shorter than a day cover different
#: hours by construction, so label-free drift (PSI against a reference window) leaves
#: them out; in a replay at 2000x a minute of reference is 33 hours of event time and the
#: current window a few, and their PSI read 8 ("large") with nothing drifting.
CLOCK_FEATURES: frozenset[str] = frozenset({"hour_sin", "hour_cos"})

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


def to_micros(ts: datetime) -> int:
    """Exact integer microseconds since the epoch (windows compare ints, not floats)."""
    return (ts - _EPOCH) // _MICRO


@dataclass(frozen=True)
class FeatureConfig:
    """How much history features keep and how CTRs are smoothed.

    ``ctr_prior`` / ``ctr_prior_weight`` are a Beta prior: a smoothed CTR is
    ``(clicks + prior * weight) / (impressions + weight)``.
    """

    history_size: int = 20
    ctr_half_life: timedelta = timedelta(hours=1)
    ctr_prior: float = 0.05
    ctr_prior_weight: float = 20.0
    ttl: timedelta | None = None  # forget users and items idle this long (None: never)

    def __post_init__(self) -> None:
        if not 1 <= self.history_size <= 1024:
            raise ConfigError(f"history_size must be in 1..1024, got {self.history_size}")
        if self.ctr_half_life <= timedelta(0):
            raise ConfigError(f"ctr_half_life must be positive, got {self.ctr_half_life}")
        if self.ttl is not None and self.ttl <= timedelta(0):
            raise ConfigError(f"ttl must be positive or None, got {self.ttl}")
        if not 0.0 <= self.ctr_prior <= 1.0 or self.ctr_prior_weight <= 0.0:
            raise ConfigError("ctr_prior must be in [0, 1] and ctr_prior_weight positive")


@dataclass(frozen=True)
class CandidateFeatures:
    """``FeatureState.lookup`` of one user against B items at one time, as columns.

    Serving scores ~100 candidates per request: arrays and one user row instead of B
    validated ``ExampleFeatures``. ``rows()`` gives those objects (equal to ``lookup``'s).
    """

    user_impressions: int
    user_clicks: int
    #: The user's most recently clicked item ids, oldest first.
    recent_clicks: tuple[str, ...]
    #: ``[B, 4]`` float64: impressions, clicks, decayed impressions, decayed clicks.
    item_counts: np.ndarray
    #: Catalog category per item ("" while unknown).
    categories: list[str]

    def __len__(self) -> int:
        return len(self.categories)

    def rows(self) -> list[ExampleFeatures]:
        """One ``ExampleFeatures`` per item (validated: for tests and non-hot paths)."""
        return [
            ExampleFeatures(
                user_impressions=self.user_impressions,
                user_clicks=self.user_clicks,
                item_impressions=int(impressions),
                item_clicks=int(clicks),
                item_recent_impressions=float(recent_impressions),
                item_recent_clicks=float(recent_clicks),
                category=category,
                recent_clicks=self.recent_clicks,
            )
            for (impressions, clicks, recent_impressions, recent_clicks), category in zip(
                self.item_counts.tolist(), self.categories, strict=True
            )
        ]

    def counts(self) -> np.ndarray:
        """``[B, 7]`` float64 in ``dense_matrix``'s column order."""
        n = len(self)
        user = np.broadcast_to(
            np.array([self.user_impressions, self.user_clicks], np.float64), (n, 2)
        )
        history = np.full((n, 1), len(self.recent_clicks), np.float64)
        return np.hstack([user, self.item_counts, history])


@dataclass
class _User:
    impressions: int = 0
    clicks: int = 0
    # (ts_us, item_id) sorted by event time; ties keep arrival order.
    recent: list[tuple[int, str]] = field(default_factory=list)
    last_us: int = 0  # latest event time of any of the user's events


@dataclass
class _ItemCounts:
    impressions: int = 0
    clicks: int = 0
    decayed_impressions: float = 0.0
    decayed_clicks: float = 0.0
    ref_us: int | None = None  # time the decayed counts are expressed at


class FeatureState:
    """Per-user and per-item counters plus the item catalog, updated in event time."""

    def __init__(self, config: FeatureConfig | None = None) -> None:
        self.config = config or FeatureConfig()
        self._half_life_us = self.config.ctr_half_life / _MICRO
        self._users: dict[str, _User] = {}
        self._items: dict[str, _ItemCounts] = {}
        self._catalog: dict[str, tuple[int, str]] = {}  # item_id -> (ts_us, category)
        #: Keys (see ``delta``) changed since the last ``delta``: what a snapshot writes.
        self._changed: set[str] = set()

    def _decay(self, age_us: int) -> float:
        return math.pow(2.0, -age_us / self._half_life_us)

    def observe(self, event: Impression | Click | Conversion | Dwell | Item) -> None:
        """Count one accepted event; conversions and dwell carry no feature today."""
        if isinstance(event, Item):
            ts = to_micros(event.ts)
            known = self._catalog.get(event.item_id)
            if known is None or ts >= known[0]:  # last write wins by event time
                self._catalog[event.item_id] = (ts, event.category)
                self._changed.add(f"c|{event.item_id}")
            return
        if not isinstance(event, Impression | Click):
            return
        ts = to_micros(event.ts)
        user = self._users.setdefault(event.user_id, _User())
        user.last_us = max(user.last_us, ts)
        self._changed.update((f"u|{event.user_id}", f"i|{event.item_id}"))
        item = self._items.setdefault(event.item_id, _ItemCounts())
        if item.ref_us is None or ts > item.ref_us:
            if item.ref_us is not None:
                factor = self._decay(ts - item.ref_us)
                item.decayed_impressions *= factor
                item.decayed_clicks *= factor
            item.ref_us = ts
            weight = 1.0
        else:
            weight = self._decay(item.ref_us - ts)
        if isinstance(event, Impression):
            user.impressions += 1
            item.impressions += 1
            item.decayed_impressions += weight
            return
        user.clicks += 1
        item.clicks += 1
        item.decayed_clicks += weight
        bisect.insort_right(user.recent, (ts, event.item_id), key=lambda entry: entry[0])
        del user.recent[: -self.config.history_size]

    def lookup(self, user_id: str, item_id: str, ts: datetime) -> ExampleFeatures:
        """Features of (user, item) as of ``ts`` from what has been observed so far."""
        user = self._users.get(user_id) or _User()
        impressions, clicks, recent_impressions, recent_clicks = self._item_counts(
            item_id, to_micros(ts)
        )
        return ExampleFeatures(
            user_impressions=user.impressions,
            user_clicks=user.clicks,
            item_impressions=impressions,
            item_clicks=clicks,
            item_recent_impressions=recent_impressions,
            item_recent_clicks=recent_clicks,
            category=self.category(item_id),
            recent_clicks=tuple(item_id for _, item_id in user.recent),
        )

    def lookup_many(self, user_id: str, item_ids: Sequence[str], ts: datetime) -> CandidateFeatures:
        """``lookup(user_id, i, ts)`` for every ``i`` in ``item_ids``, as columns."""
        user = self._users.get(user_id) or _User()
        ts_us = to_micros(ts)
        counts = np.array([self._item_counts(i, ts_us) for i in item_ids], np.float64)
        return CandidateFeatures(
            user_impressions=user.impressions,
            user_clicks=user.clicks,
            recent_clicks=tuple(item_id for _, item_id in user.recent),
            item_counts=counts.reshape(-1, 4),
            categories=[self.category(i) for i in item_ids],
        )

    def _item_counts(self, item_id: str, ts_us: int) -> tuple[int, int, float, float]:
        """Impressions, clicks and both decayed counts of an item as of ``ts_us``."""
        item = self._items.get(item_id)
        if item is None:
            return 0, 0, 0.0, 0.0
        factor = 1.0
        if item.ref_us is not None:
            factor = self._decay(max(0, ts_us - item.ref_us))
        return (
            item.impressions,
            item.clicks,
            item.decayed_impressions * factor,
            item.decayed_clicks * factor,
        )

    def snapshot(self, impression: Impression) -> ExampleFeatures:
        """Features for ``impression``; call before ``observe(impression)`` (no leakage)."""
        return self.lookup(impression.user_id, impression.item_id, impression.ts)

    def category(self, item_id: str) -> str:
        known = self._catalog.get(item_id)
        return "" if known is None else known[1]

    def evict_inactive(self, now: datetime) -> int:
        """Forget users and items with no event since ``now - ttl``; returns how many."""
        if self.config.ttl is None:
            return 0
        cutoff = to_micros(now - self.config.ttl)
        users = [uid for uid, u in self._users.items() if u.last_us < cutoff]
        items = [iid for iid, c in self._items.items() if (c.ref_us or 0) < cutoff]
        for uid in users:
            del self._users[uid]
            self._changed.add(f"u|{uid}")
        for iid in items:
            del self._items[iid]
            self._catalog.pop(iid, None)
            self._changed.update((f"i|{iid}", f"c|{iid}"))
        return len(users) + len(items)

    def sizes(self) -> dict[str, int]:
        """Entries held (to check and monitor that state stays bounded)."""
        return {"users": len(self._users), "items": len(self._items), "catalog": len(self._catalog)}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able state for a checkpoint or a changelog table."""
        return {
            "version": 1,
            "users": {
                uid: [u.impressions, u.clicks, [list(r) for r in u.recent], u.last_us]
                for uid, u in self._users.items()
            },
            "items": {
                iid: [c.impressions, c.clicks, c.decayed_impressions, c.decayed_clicks, c.ref_us]
                for iid, c in self._items.items()
            },
            "catalog": {iid: list(entry) for iid, entry in self._catalog.items()},
        }

    def subset(self, user_ids: Iterable[str], item_ids: Iterable[str]) -> dict[str, Any]:
        """``to_dict()`` restricted to these users and items (unknown ids are left out).

        A feature store writes these entries; ``from_dict`` on them gives a state whose
        ``lookup`` for these ids equals this one's.
        """
        users = {u: self._users[u] for u in user_ids if u in self._users}
        wanted = set(item_ids)
        items = {i: self._items[i] for i in wanted if i in self._items}
        return {
            "version": 1,
            "users": {
                uid: [u.impressions, u.clicks, [list(r) for r in u.recent], u.last_us]
                for uid, u in users.items()
            },
            "items": {
                iid: [c.impressions, c.clicks, c.decayed_impressions, c.decayed_clicks, c.ref_us]
                for iid, c in items.items()
            },
            "catalog": {iid: list(self._catalog[iid]) for iid in wanted if iid in self._catalog},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], config: FeatureConfig | None = None) -> FeatureState:
        """Inverse of ``to_dict``."""
        if data.get("version") != 1:
            raise ConfigError(f"unknown feature state version {data.get('version')!r}")
        state = cls(config)
        keep = state.config.history_size
        for uid, (impressions, clicks, recent, *last) in data["users"].items():
            entries = [(int(ts), str(iid)) for ts, iid in recent][-keep:]
            # Entries written before users carried their last event time: use the newest known.
            last_us = int(last[0]) if last else max((ts for ts, _ in entries), default=0)
            state._users[uid] = _User(impressions, clicks, entries, last_us)
        for iid, (impressions, clicks, d_imp, d_click, ref) in data["items"].items():
            state._items[iid] = _ItemCounts(impressions, clicks, d_imp, d_click, ref)
        for iid, (ts, category) in data["catalog"].items():
            state._catalog[iid] = (int(ts), str(category))
        return state

    def mark_all_changed(self) -> None:
        """Make the next ``delta`` write the whole state (for a store that lost it)."""
        self._changed.update(f"u|{user_id}" for user_id in self._users)
        self._changed.update(f"i|{item_id}" for item_id in self._items)
        self._changed.update(f"c|{item_id}" for item_id in self._catalog)

    def ids(self) -> tuple[list[str], list[str]]:
        """Every user and item this state holds."""
        return list(self._users), list(self._items.keys() | self._catalog.keys())

    def delta(self) -> tuple[dict[str, str], list[str]]:
        """What changed since the last call: keys ``u|<user>``, ``i|<item>``, ``c|<item>``
        (entries as in ``to_dict``) to write, and keys of forgotten entries to delete."""
        users = [key[2:] for key in self._changed if key.startswith("u|")]
        data = self.subset(users, [key[2:] for key in self._changed if key[0] in "ic"])
        write: dict[str, str] = {}
        for kind, section in (("u", "users"), ("i", "items"), ("c", "catalog")):
            write.update({f"{kind}|{key}": json.dumps(v) for key, v in data[section].items()})
        delete = [key for key in self._changed if key not in write]
        self._changed.clear()
        return write, delete

    @classmethod
    def from_delta(
        cls, fields: dict[str, str], config: FeatureConfig | None = None
    ) -> FeatureState:
        """Rebuild a state from the keys its deltas wrote (other keys are ignored)."""
        data: dict[str, Any] = {"version": 1, "users": {}, "items": {}, "catalog": {}}
        sections = {"u": "users", "i": "items", "c": "catalog"}
        for key, value in fields.items():
            kind, _, name = key.partition("|")
            if kind in sections:
                data[sections[kind]][name] = json.loads(value)
        return cls.from_dict(data, config)


def _smoothed(clicks: np.ndarray, impressions: np.ndarray, config: FeatureConfig) -> np.ndarray:
    prior_clicks = config.ctr_prior * config.ctr_prior_weight
    result: np.ndarray = (clicks + prior_clicks) / (impressions + config.ctr_prior_weight)
    return result


def dense_features(
    impressions: Sequence[Impression],
    features: Sequence[ExampleFeatures],
    config: FeatureConfig,
) -> np.ndarray:
    """``[B, len(DENSE_FEATURES)]`` float32 matrix, columns in ``DENSE_FEATURES`` order.

    Hour of day is read in the impression timestamp's own offset (the user's wall
    clock when the producer records it).
    """
    if len(impressions) != len(features):
        raise ConfigError(f"{len(impressions)} impressions but {len(features)} feature rows")
    counts = np.array(
        [
            (
                f.user_impressions,
                f.user_clicks,
                f.item_impressions,
                f.item_clicks,
                f.item_recent_impressions,
                f.item_recent_clicks,
                len(f.recent_clicks),
            )
            for f in features
        ],
        dtype=np.float64,
    ).reshape(-1, 7)
    clock = np.array([clock_row(i.position, i.ts) for i in impressions], np.float64)
    return dense_matrix(counts, clock.reshape(-1, 4), config)


def clock_row(position: int, ts: datetime) -> tuple[int, int, int, int]:
    """The impression's part of ``dense_matrix``'s input: position, hour, minute, second."""
    return position, ts.hour, ts.minute, ts.second


def dense_matrix(counts: np.ndarray, clock: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """The dense features from raw columns; ``dense_features`` and serving both end here.

    ``counts`` is ``[B, 7]``: user impressions, user clicks, item impressions, item
    clicks, decayed item impressions, decayed item clicks, history length
    (``CandidateFeatures.counts``); ``clock`` is ``[B, 4]`` rows of ``clock_row``.
    """
    u_imp, u_click, i_imp, i_click, r_imp, r_click, n_hist = counts.T
    day_fraction = (clock[:, 1:] @ np.array([3600.0, 60.0, 1.0])) / 86400.0
    angle = 2.0 * np.pi * day_fraction
    columns = [
        np.log1p(clock[:, 0]),
        np.sin(angle),
        np.cos(angle),
        np.log1p(u_imp),
        np.log1p(u_click),
        _smoothed(u_click, u_imp, config),
        np.log1p(i_imp),
        np.log1p(i_click),
        _smoothed(i_click, i_imp, config),
        np.log1p(r_imp),
        _smoothed(r_click, r_imp, config),
        n_hist / config.history_size,
    ]
    return np.stack(columns, axis=1).astype(np.float32)
