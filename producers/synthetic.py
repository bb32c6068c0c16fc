"""A seeded synthetic click log whose users' interests drift, yielding reader records.

**What the default world is meant to be** (chosen before any system was measured on it,
and not tuned to any of them): a news/video feed in which a user comes back several
times a day and so has a click history before their interests change, items keep
arriving, and an item's first impressions are its cold start.

- 300 users share one feed; a session starts every 20 s on average, so a user of
  average activity opens the feed about every 100 minutes (activity is heavy-tailed).
  On the 60,000-event log that ``driftrec eval --limit 60000`` generates (about 43 h
  of event time), the median user has 43 impressions (quartiles 20 and 86) and 4 clicks
  (quartiles 2 and 9) before the first drift, and 281 of the 300 users are seen before
  it; on the 200,000-event default (about six days) they have 132 impressions and 12
  clicks. The click-through rate is about 9 %.
- The catalog starts with 300 items and gains 10 new items every 1,000 events (about
  every 43 minutes of event time); the newest batch gets a fifth of the slate slots, so a
  new item passes its 20th impression within about an hour, and an item gets about 60
  impressions in all (median, 60,000 events). An item's first 20 impressions, the
  evaluation's cold-start slice (``EvalConfig.cold_impressions``), are about a third of
  all impressions.
- The drifts are unchanged from the first version of the generator: every user's topic
  interests are swapped at 40 % of the log, and 60 % of the users move gradually to
  swapped interests from 70 % to 85 %.

Earlier defaults (5,000 users, 1,000 initial items, 40 new items every 5,000 events) gave
a user about one click in a 60,000-event log, so nothing learned from a user's history
(the interest vector, a user embedding) had anything to carry, and almost every
impression was among its item's first 50.

The rules (every draw comes from ``numpy`` generators seeded by ``SyntheticConfig.seed``,
so one config always gives byte-identical records, event ids included):

- **Topics** are the first ``n_topics`` of ``synthetic_vocab.TOPICS``. Topic popularity is
  Zipf-like (weight ``1/rank**0.8``, ranks shuffled by the seed).
- **Users** have interests ``theta_u ~ Dirichlet(interest_concentration * popularity)``
  (sparse: most users have one or two favourite topics) and an activity weight
  ``~ LogNormal(0, 1)``; each session picks its user with probability ∝ activity.
- **Items** have a topic (uniform), a latent quality ``q ~ N(0, quality_sd)`` and a title and
  text written from that topic's vocabulary. ``Item.category`` is the topic name, except for
  a ``category_noise`` share of items that carry a uniformly drawn *wrong* topic name (the
  title still reflects the true topic). ``new_items_batch`` items arrive every
  ``new_items_every`` events; the newest batch fills a ``fresh_share`` of slate slots.
- **Sessions** start as a Poisson process (mean gap ``session_gap_s``). A session shows a
  slate of ``slate_min..slate_max`` distinct items at positions ``0..k-1``, one impression
  every ~2 s. The logging policy is uniform random over the catalog (plus the freshness
  boost): position is the only confounder of the logged clicks.
- **Click** (position-based model): ``P = (1 + position) ** -position_decay *
  sigmoid(ctr_intercept + affinity_weight * theta_u[topic] + q)``; the click comes
  1 s + LogNormal(ln 4, 0.6) s after its impression.
- **Dwell** (every click): ``LogNormal(ln dwell_median_s + 1.0 * theta_u[topic] + 0.3 * q,
  0.7)`` seconds, capped at one hour; the dwell event is stamped when the user leaves.
- **Conversion** (only after a click): ``P = sigmoid(cvr_intercept + 2 * theta_u[topic] +
  q)``, stamped 60 s + Exp(300 s) after the click.
- **Drift** (``drifts``): at ``at * n_events`` events, ``user_share`` of the users (drawn at
  random) get their interests permuted by a random derangement of the topics — every topic
  hands its interest mass to another. ``abrupt`` swaps at once; ``gradual`` moves each
  affected user linearly from old to new interests over ``span * n_events`` events.

The true click probability of every impression (the position-based model above, the
ceiling any click model can reach on this log) is ``SyntheticLog.click_probabilities()``,
in the order the impressions appear in ``records()``; ``driftrec eval`` scores every system
against it (``oracle_share``).

Records come in timestamp order (items included, each before its first reference);
``n_events`` is the exact number of impression/click/conversion/dwell events. Outcomes
still pending when the cap is reached are dropped, so the last impressions may lack them.
Ids: users ``syn-u<n>``, items ``syn-i<n>``, events ``syn-<config fingerprint>-<n>``.

Sessions are drawn in chunks of 16, and drifts and item batches take effect at the first
chunk after their threshold, so a ``DriftPoint.event_index`` lies up to about a hundred
events past ``at * n_events``: it is the exact number of events yielded before the first
impression drawn under the new interests (outcomes of earlier impressions, already
decided, may still follow it).

>>> config = SyntheticConfig(n_events=400, n_users=30, n_initial_items=40, drifts=())
>>> records = list(SyntheticLog(config).records())
>>> sum(not isinstance(r, Item) for r in records), type(records[0]).__name__
(400, 'Item')
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal, TypeAlias

import numpy as np
import numpy.typing as npt
from driftrec.core import Click, Conversion, Dwell, Impression, Item
from driftrec.producers.records import Record
from driftrec.producers.synthetic_config import (
    DEFAULT_CONFIG,
    DriftSpec,
    SyntheticConfig,
    load_config,
)
from driftrec.producers.synthetic_vocab import TOPICS, make_title

__all__ = [
    "DEFAULT_CONFIG",
    "DriftPoint",
    "DriftSpec",
    "SyntheticConfig",
    "SyntheticLog",
    "load_config",
    "synthetic_records",
]

Floats: TypeAlias = npt.NDArray[np.float64]
Ints: TypeAlias = npt.NDArray[np.int64]
# (ts seconds, seq, kind, user, item, position, value, session, slate size); value: the
# click probability of an impression, the seconds of a dwell, 0 otherwise
_Raw: TypeAlias = tuple[float, int, int, int, int, int, float, int, int]
_IMPRESSION, _CLICK, _CONVERSION, _DWELL, _ITEM = range(5)
_SESSIONS_PER_CHUNK = 16  # state (drift, catalog) changes between chunks of sessions
_MAX_DWELL_S = 3600.0


@dataclass(frozen=True, slots=True)
class DriftPoint:
    """Where a drift took effect: ``event_index`` events (items not counted) came before it."""

    event_index: int
    ts: datetime
    kind: Literal["abrupt", "gradual"]
    description: str


def _sigmoid(x: Floats) -> Floats:
    return 1.0 / (1.0 + np.exp(-x))


def _derangement(rng: np.random.Generator, n: int) -> Ints:
    # Rejection sampling: about e tries; a fixed point would leave a topic's fans unmoved.
    while True:
        perm = rng.permutation(n)
        if not np.any(perm == np.arange(n)):
            return perm


class _World:
    """The mutable state of one generation run; ``run`` yields raw tuples in ts order."""

    def __init__(self, cfg: SyntheticConfig) -> None:
        self.cfg = cfg
        world, self.traffic, self.outcome, self.catalog, self.drift = (
            np.random.default_rng(s) for s in np.random.SeedSequence(cfg.seed).spawn(5)
        )
        self.topics = TOPICS[: cfg.n_topics]
        popularity = 1.0 / (world.permutation(cfg.n_topics) + 1.0) ** 0.8
        alpha = cfg.interest_concentration * popularity / popularity.sum()
        self.theta: Floats = world.dirichlet(alpha, size=cfg.n_users)
        self.theta_to: Floats | None = None
        self.gradual_start, self.gradual_span, self.weight = 0, 1, 0.0
        activity = world.lognormal(0.0, 1.0, cfg.n_users)
        self.user_cdf: Floats = np.cumsum(activity) / activity.sum()
        batches = cfg.n_events // cfg.new_items_every + 2 if cfg.new_items_every else 0
        capacity = cfg.n_initial_items + batches * cfg.new_items_batch
        self.item_topic: Ints = np.zeros(capacity, dtype=np.int64)
        self.item_quality: Floats = np.zeros(capacity)
        self.titles: list[str] = []
        self.texts: list[str] = []
        self.categories: list[str] = []
        self.n_items = 0
        self.fresh_lo = 0
        self.seq = 0
        self.pending = list(cfg.drifts)
        self.points: list[DriftPoint] = []

    def run(self) -> Iterator[_Raw]:
        cfg = self.cfg
        heap: list[_Raw] = []
        count, clock, session = 0, 0.0, 0
        for i in self._add_items(cfg.n_initial_items):
            yield (0.0, -1, _ITEM, -1, i, 0, 0.0, 0, 0)
        self.fresh_lo = self.n_items
        every = cfg.new_items_every if cfg.new_items_batch else 0
        next_batch = every or math.inf
        while True:
            starts = clock + np.cumsum(
                self.traffic.exponential(cfg.session_gap_s, _SESSIONS_PER_CHUNK)
            )
            clock, first = float(starts[-1]), float(starts[0])
            # Nothing generated from here on is earlier than `first`, so these are final.
            while heap and heap[0][0] <= first:
                yield heapq.heappop(heap)
                count += 1
                if count >= cfg.n_events:
                    return
            if count >= next_batch:
                self.fresh_lo = self.n_items
                while count >= next_batch:
                    for i in self._add_items(cfg.new_items_batch):
                        yield (first, -1, _ITEM, -1, i, 0, 0.0, 0, 0)
                    next_batch += every
            self._advance_drifts(count, first)
            for entry in self._sessions(starts, session):
                heapq.heappush(heap, entry)
            session += len(starts)

    def _add_items(self, k: int) -> range:
        rng, n_topics, lo = self.catalog, self.cfg.n_topics, self.n_items
        topic = rng.integers(n_topics, size=k)
        self.item_topic[lo : lo + k] = topic
        self.item_quality[lo : lo + k] = rng.normal(0.0, self.cfg.quality_sd, k)
        wrong = rng.random(k) < self.cfg.category_noise
        label = np.where(wrong, (topic + rng.integers(1, n_topics, size=k)) % n_topics, topic)
        for t, shown in zip(topic.tolist(), label.tolist(), strict=True):
            title, text = make_title(rng, self.topics[t])
            self.titles.append(title)
            self.texts.append(text)
            self.categories.append(self.topics[shown])
        self.n_items += k
        return range(lo, lo + k)

    def _advance_drifts(self, count: int, now: float) -> None:
        if self.theta_to is not None:
            self.weight = min(1.0, (count - self.gradual_start) / self.gradual_span)
            if self.weight >= 1.0:
                self.theta, self.theta_to = self.theta_to, None
        if self.theta_to is not None or not self.pending:
            return
        spec = self.pending[0]
        if count < int(spec.at * self.cfg.n_events):
            return
        self.pending.pop(0)
        n_users, n_topics = self.theta.shape
        users = self.drift.choice(
            n_users, size=max(1, round(spec.user_share * n_users)), replace=False
        )
        perm = _derangement(self.drift, n_topics)
        target = self.theta.copy()
        # target[:, j] = theta[:, perm[j]]: the fans of topic perm[j] now favour topic j.
        target[users] = self.theta[users][:, perm]
        moves = ", ".join(f"{self.topics[perm[j]]}->{self.topics[j]}" for j in range(n_topics))
        who = f"{len(users)} of {n_users} users"
        if spec.kind == "abrupt":
            self.theta = target
            description = f"abrupt: {who} swap topic interests at once ({moves})"
        else:
            self.theta_to, self.gradual_start, self.weight = target, count, 0.0
            self.gradual_span = max(1, round(spec.span * self.cfg.n_events))
            description = (
                f"gradual: {who} move linearly to swapped topic interests over the next "
                f"{self.gradual_span} events ({moves})"
            )
        ts = self.cfg.start + timedelta(seconds=now)
        self.points.append(DriftPoint(count, ts, spec.kind, description))

    def _interests(self, users: Ints) -> Floats:
        if self.theta_to is None:
            return self.theta[users]
        return (1.0 - self.weight) * self.theta[users] + self.weight * self.theta_to[users]

    def _pick_items(self, session_of: Ints, n: int) -> Ints:
        rng = self.traffic
        items = rng.integers(self.n_items, size=n)
        if self.fresh_lo < self.n_items and self.cfg.fresh_share > 0.0:
            fresh = rng.random(n) < self.cfg.fresh_share
            items[fresh] = rng.integers(self.fresh_lo, self.n_items, size=int(fresh.sum()))
        for _ in range(20):  # redraw repeats within a slate; rarely needs a second round
            _, first = np.unique(session_of * self.n_items + items, return_index=True)
            repeat = np.ones(n, dtype=bool)
            repeat[first] = False
            if not repeat.any():
                break
            items[repeat] = rng.integers(self.n_items, size=int(repeat.sum()))
        return items

    def _sessions(self, starts: Floats, session0: int) -> Iterator[_Raw]:
        cfg, traffic, out = self.cfg, self.traffic, self.outcome
        n_sessions = len(starts)
        users = np.minimum(
            np.searchsorted(self.user_cdf, traffic.random(n_sessions), side="right"),
            cfg.n_users - 1,
        )
        sizes = traffic.integers(cfg.slate_min, cfg.slate_max + 1, size=n_sessions)
        n = int(sizes.sum())
        session_of = np.repeat(np.arange(n_sessions), sizes)
        head = np.cumsum(sizes) - sizes
        position = np.arange(n) - head[session_of]
        items = self._pick_items(session_of, n)
        scroll = traffic.exponential(2.0, n)
        scroll[head] = 0.0
        elapsed = np.cumsum(scroll)
        shown = starts[session_of] + elapsed - elapsed[head][session_of]
        topic, quality = self.item_topic[items], self.item_quality[items]
        affinity = self._interests(users)[session_of, topic]
        attraction = _sigmoid(cfg.ctr_intercept + cfg.affinity_weight * affinity + quality)
        examined = (1.0 + position) ** -cfg.position_decay
        p_click = (examined * attraction).tolist()
        c = np.flatnonzero(out.random(n) < examined * attraction)
        clicked = shown[c] + 1.0 + out.lognormal(math.log(4.0), 0.6, len(c))
        dwell_mu = math.log(cfg.dwell_median_s) + affinity[c] + 0.3 * quality[c]
        dwell = np.minimum(out.lognormal(dwell_mu, 0.7), _MAX_DWELL_S).round(3)
        p_convert = _sigmoid(cfg.cvr_intercept + 2.0 * affinity[c] + quality[c])
        converted = (out.random(len(c)) < p_convert).tolist()
        converted_at = (clicked + 60.0 + out.exponential(300.0, len(c))).tolist()
        user_of = users[session_of].tolist()
        item_of, slate = items.tolist(), sizes[session_of].tolist()
        sess = (session_of + session0).tolist()
        for i, (t, pos) in enumerate(zip(shown.tolist(), position.tolist(), strict=True)):
            yield self._raw(
                t, _IMPRESSION, user_of[i], item_of[i], pos, p_click[i], sess[i], slate[i]
            )
        for j, i in enumerate(c.tolist()):
            t, sec, u, it = float(clicked[j]), float(dwell[j]), user_of[i], item_of[i]
            yield self._raw(t, _CLICK, u, it)
            yield self._raw(t + sec, _DWELL, u, it, value=sec)
            if converted[j]:
                yield self._raw(converted_at[j], _CONVERSION, u, it)

    def _raw(
        self, ts: float, kind: int, user: int, item: int, pos: int = 0, value: float = 0.0,
        session: int = 0, slate: int = 0,
    ) -> _Raw:  # fmt: skip
        self.seq += 1
        return (ts, self.seq, kind, user, item, pos, value, session, slate)


class SyntheticLog:
    """A synthetic click log: ``records()`` replays it, ``drift_points`` says where it drifts."""

    def __init__(self, config: SyntheticConfig = DEFAULT_CONFIG) -> None:
        self.config = config
        digest = hashlib.sha256(config.model_dump_json().encode()).hexdigest()
        #: Event ids are ``syn-<fingerprint>-<n>``: replaying one world twice dedupes, while
        #: two different worlds in one topic never collide.
        self.fingerprint = digest[:8]
        self.topics: tuple[str, ...] = TOPICS[: config.n_topics]
        self._drift_points: list[DriftPoint] | None = None

    def records(self) -> Iterator[Record]:
        """Items and events in timestamp order; a fresh, identical pass on every call."""
        world = _World(self.config)
        start, prefix, n = self.config.start, f"syn-{self.fingerprint}-", 0
        for ts, _, kind, user, item, pos, value, session, slate in world.run():
            when = start + timedelta(seconds=ts)
            if kind == _ITEM:
                yield Item(
                    item_id=f"syn-i{item}", title=world.titles[item], text=world.texts[item],
                    category=world.categories[item], ts=when,
                )  # fmt: skip
                continue
            eid, uid, iid = f"{prefix}{n}", f"syn-u{user}", f"syn-i{item}"
            n += 1
            if kind == _IMPRESSION:
                context: dict[str, bool | int | float | str] = {
                    "session": session,
                    "slate_size": slate,
                }
                yield Impression(
                    event_id=eid, user_id=uid, item_id=iid, ts=when, position=pos, context=context
                )
            elif kind == _CLICK:
                yield Click(event_id=eid, user_id=uid, item_id=iid, ts=when)
            elif kind == _DWELL:
                yield Dwell(event_id=eid, user_id=uid, item_id=iid, ts=when, seconds=value)
            else:
                yield Conversion(event_id=eid, user_id=uid, item_id=iid, ts=when)

    def click_probabilities(self) -> Floats:
        """The true click probability of each impression, in ``records()`` order (one pass
        over the raw simulation, no records built)."""
        return np.array(
            [raw[6] for raw in _World(self.config).run() if raw[2] == _IMPRESSION],
            dtype=np.float64,
        )

    @property
    def drift_points(self) -> list[DriftPoint]:
        """Drifts in order of effect; a drift the log ends before reaching is not listed.

        Computed on first access by a quick pass over the raw simulation up to the last
        drift (no records are built), so it needs no prior call to ``records()``.
        """
        if self._drift_points is None:
            world = _World(self.config)
            for _ in world.run():
                if len(world.points) == len(self.config.drifts):
                    break
            self._drift_points = world.points
        return list(self._drift_points)


def synthetic_records(
    source: str | Path = "default", options: Mapping[str, str] | None = None
) -> Iterator[Record]:
    """Records of the synthetic log named by ``source`` (see ``load_config``).

    Config errors raise ``ConfigError`` here, before the first record is drawn.
    """
    return SyntheticLog(load_config(source, options)).records()
