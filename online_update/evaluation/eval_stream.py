"""Replay a click log as the evaluator sees it: impressions to score, then examples to learn.

The log goes through the stream's own code: ``driftrec.features.joiner.handle`` (``flush`` at the
end) with a ``FeatureState``, and ``driftrec.features.vectorise.FeatureEncoder`` for the tensors.
``replay_log`` yields two kinds of mini-batch, in the order a live system meets them:

- ``ToScore``: impressions in log order, unlabelled, with the feature snapshot the
  joiner takes for them (``FeatureState.snapshot`` is a pure lookup, so the snapshot
  taken here just before ``handle`` is the one the joiner stores). This is the moment
  serving would score them.
- ``ToLearn``: labelled examples in the joiner's emission order.

Every row of a ``ToLearn`` was in an earlier ``ToScore``: pending impressions are
scored before any examples are released. Scoring at impression time matters: the
joiner emits a negative when its click window closes but a clicked impression only
when its conversion window closes (or all outcomes are in), so at emission time a
row's age relative to its batch neighbours reveals its label, and an online model
scored then can learn to read it (a river LR reached a click AUC above the Bayes
optimum of the synthetic log that way).

Item text vectors come from a ``TextEncoder``, fed the text the embedding worker embeds
(``driftrec.online_update.embeddings.embed_batch.item_text``); each item is queued when the catalog
announces it and the queue is encoded in one call before the next lookup.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from driftrec.core import Example, ExampleFeatures, Impression, Item
from driftrec.features import (
    FeatureEncoder,
    FeatureState,
    JoinerConfig,
    JoinerState,
    Rejection,
    flush,
    handle,
)
from driftrec.models import Batch
from driftrec.online_update.embeddings import TextEncoder, item_text
from driftrec.producers import Record, Rejected

__all__ = ["ItemTexts", "StreamCounts", "ToLearn", "ToScore", "replay_log"]


class ItemTexts:
    """Item id -> text vector; ``observe`` queues an item, ``lookup`` encodes the queue."""

    def __init__(self, encoder: TextEncoder) -> None:
        self.encoder = encoder
        self.dim = encoder.dim
        self._row: dict[str, int] = {}
        self._vectors = np.zeros((1024, self.dim), dtype=np.float32)
        self._pending: dict[str, str] = {}

    def observe(self, item: Item) -> None:
        self._pending[item.item_id] = item_text(item)

    def _encode_pending(self) -> None:
        ids, texts = list(self._pending), list(self._pending.values())
        self._pending.clear()
        vectors = self.encoder.encode(texts, batch_size=128)
        for item_id, vector in zip(ids, vectors, strict=True):
            row = self._row.setdefault(item_id, len(self._row))
            if row >= len(self._vectors):
                grown = np.zeros((2 * len(self._vectors), self.dim), dtype=np.float32)
                grown[: len(self._vectors)] = self._vectors
                self._vectors = grown
            self._vectors[row] = vector

    def lookup(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``driftrec.features.vectorise.TextLookup``: vectors and whether each id is known."""
        if self._pending:
            self._encode_pending()
        rows = np.array([self._row.get(i, -1) for i in ids], dtype=np.int64)
        known = rows >= 0
        return self._vectors[np.where(known, rows, 0)], known


@dataclass(frozen=True)
class ToScore:
    """Impressions ``first .. first + len(batch) - 1`` (numbered in log order), unlabelled."""

    batch: Batch
    first: int


@dataclass(frozen=True)
class ToLearn:
    """Labelled examples and, per row, where its impression sits in the log."""

    batch: Batch
    #: The impression's number, as in ``ToScore`` (0 = the log's first impression).
    impression: np.ndarray
    #: Events (items and rejected rows not counted) read before the impression.
    event_index: np.ndarray
    #: Impressions of the same item read before this one.
    item_rank: np.ndarray
    #: Whether a dwell event joined the row (its dwell label is real, not a 0 filler).
    has_dwell: np.ndarray


@dataclass
class StreamCounts:
    events: int = 0
    impressions: int = 0
    examples: int = 0
    rejected: int = 0  # unreadable rows plus events the joiner refused


def replay_log(
    records: Iterable[Record],
    texts: ItemTexts,
    *,
    batch_size: int,
    joiner: JoinerConfig | None = None,
    counts: StreamCounts | None = None,
    on_event: Callable[[int], None] | None = None,
) -> Iterator[ToScore | ToLearn]:
    """The log as ``ToScore`` and ``ToLearn`` batches of at most ``batch_size`` rows."""
    counts = counts if counts is not None else StreamCounts()
    state, features = JoinerState(joiner), FeatureState()
    vectorise = FeatureEncoder(texts.dim, features.config)
    where: dict[str, tuple[int, int, int]] = {}  # event id -> impression no, event no, rank
    item_seen: dict[str, int] = {}
    unscored: list[tuple[Impression, ExampleFeatures]] = []
    ready: list[Example] = []

    def score() -> ToScore:
        impressions, snapshots = zip(*unscored, strict=True)
        first = counts.impressions - len(unscored)
        unscored.clear()
        return ToScore(vectorise.to_batch(impressions, snapshots, texts.lookup), first)

    def learn(examples: list[Example]) -> ToLearn:
        meta = np.array([where.pop(e.impression.event_id) for e in examples], dtype=np.int64)
        dwell = np.array([e.dwell_seconds is not None for e in examples], dtype=bool)
        counts.examples += len(examples)
        batch = vectorise.examples_to_batch(examples, texts.lookup)
        return ToLearn(batch, meta[:, 0], meta[:, 1], meta[:, 2], dwell)

    for record in records:
        if isinstance(record, Rejected):
            counts.rejected += 1
            continue
        if isinstance(record, Item):
            texts.observe(record)
            handle(record, state, features)
            continue
        if isinstance(record, Impression) and record.event_id not in where:
            rank = item_seen.get(record.item_id, 0)
            item_seen[record.item_id] = rank + 1
            where[record.event_id] = (counts.impressions, counts.events, rank)
            counts.impressions += 1
            unscored.append((record, features.snapshot(record)))
        counts.events += 1
        if on_event is not None:
            on_event(1)
        for out in handle(record, state, features):
            if isinstance(out, Rejection):
                counts.rejected += 1
                where.pop(out.event.event_id, None)  # a refused impression never emits
            else:
                ready.append(out)
        if len(unscored) >= batch_size:
            yield score()
        while len(ready) >= batch_size:
            if unscored:
                yield score()
            yield learn(ready[:batch_size])
            del ready[:batch_size]
    ready.extend(flush(state))
    if unscored:
        yield score()
    for lo in range(0, len(ready), batch_size):
        yield learn(ready[lo : lo + batch_size])
