"""Turn impressions plus feature snapshots into the model's ``Batch`` tensors.

Training (examples with labels), offline evaluation and serving (no labels) all
call ``FeatureEncoder``; ids are hashed with a stable hash so every process and
every restart maps an id to the same row of an embedding table. ``to_batch`` reads rows
of objects, ``candidates_to_batch`` one user's candidates as columns (serving's hot
path); both gather the same raw columns and hand them to one assembly step, so a
feature cannot be computed two ways.

>>> import numpy as np
>>> from datetime import datetime, timezone
>>> from driftrec.core.schemas import ExampleFeatures, Impression
>>> vectors = {"i1": np.ones(4, dtype=np.float32)}
>>> def lookup(ids):
...     known = np.array([i in vectors for i in ids])
...     rows = np.stack([vectors.get(i, np.zeros(4, np.float32)) for i in ids])
...     return rows, known
>>> imp = Impression(event_id="e", user_id="u", item_id="i2",
...                  ts=datetime(2024, 1, 1, tzinfo=timezone.utc))
>>> batch = FeatureEncoder(text_dim=4).to_batch(
...     [imp], [ExampleFeatures(recent_clicks=("i1",))], lookup)
>>> batch.has_text.tolist(), batch.interest.tolist(), batch.dense.shape[1] == len(DENSE_FEATURES)
([0.0], [[1.0, 1.0, 1.0, 1.0]], True)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import lru_cache

import numpy as np
import torch
from driftrec.core import ConfigError, Example, ExampleFeatures, Impression
from driftrec.features.state import (
    DENSE_FEATURES,
    CandidateFeatures,
    FeatureConfig,
    clock_row,
    dense_features,
    dense_matrix,
)
from driftrec.models import Batch

__all__ = ["DENSE_FEATURES", "FeatureEncoder", "TextLookup", "stable_hash"]

#: ``text_lookup(item_ids) -> (vectors [N, T] float32, known [N] bool)``.
TextLookup = Callable[[Sequence[str]], tuple[np.ndarray, np.ndarray]]

_INT63 = (1 << 63) - 1


@lru_cache(maxsize=1 << 18)
def stable_hash(value: str, namespace: str = "") -> int:
    """Non-negative int64 from blake2b, identical across processes and runs.

    >>> stable_hash("u1", "user") == stable_hash("u1", "user") != stable_hash("u1", "item")
    True
    """
    digest = hashlib.blake2b(value.encode(), digest_size=8, person=namespace.encode()[:16])
    return int.from_bytes(digest.digest(), "little") & _INT63


def _hashed(values: Sequence[str], namespace: str) -> torch.Tensor:
    return torch.tensor([stable_hash(v, namespace) for v in values], dtype=torch.int64)


def _repeated_hash(value: str, n: int, namespace: str) -> torch.Tensor:
    """``_hashed([value] * n, namespace)`` with one hash (serving's user column)."""
    return torch.full((n,), stable_hash(value, namespace), dtype=torch.int64)


def _float32(column: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(column, dtype=np.float32))


class FeatureEncoder:
    """Vectorises rows into a ``Batch``; ``text_dim`` must match the text embeddings."""

    def __init__(self, text_dim: int, config: FeatureConfig | None = None) -> None:
        if text_dim < 1:
            raise ConfigError(f"text_dim must be positive, got {text_dim}")
        self.text_dim = text_dim
        self.config = config or FeatureConfig()

    def to_batch(
        self,
        impressions: Sequence[Impression],
        features: Sequence[ExampleFeatures],
        text_lookup: TextLookup,
    ) -> Batch:
        """Unlabelled batch (serving, prediction); row i is ``impressions[i]``."""
        if len(impressions) != len(features):
            raise ConfigError(f"{len(impressions)} impressions but {len(features)} feature rows")
        groups: dict[tuple[str, ...], int] = {}
        owner = [groups.setdefault(f.recent_clicks, len(groups)) for f in features]
        return self._assemble(
            _hashed([i.user_id for i in impressions], "user"),
            [i.item_id for i in impressions],
            [f.category for f in features],
            (list(groups), np.asarray(owner, np.int64)),
            dense_features(impressions, features, self.config),
            text_lookup,
        )

    def candidates_to_batch(
        self,
        user_id: str,
        item_ids: Sequence[str],
        features: CandidateFeatures,
        ts: datetime,
        text_lookup: TextLookup,
    ) -> Batch:
        """``to_batch`` of impressions ``(user_id, item, ts, position 0)`` for each item
        with ``features.rows()``, equal to it, without building those objects."""
        n = len(item_ids)
        if len(features) != n:
            raise ConfigError(f"{n} candidates but {len(features)} feature rows")
        clock = np.tile(np.array(clock_row(0, ts), np.float64), (n, 1))
        return self._assemble(
            _repeated_hash(user_id, n, "user"),
            item_ids,
            features.categories,
            ([features.recent_clicks], np.zeros(n, np.int64)),
            dense_matrix(features.counts(), clock, self.config),
            text_lookup,
        )

    def _assemble(
        self,
        users: torch.Tensor,
        item_ids: Sequence[str],
        categories: Sequence[str],
        histories: tuple[list[tuple[str, ...]], np.ndarray],
        dense: np.ndarray,
        text_lookup: TextLookup,
    ) -> Batch:
        """The ``Batch`` of raw columns; ``users`` is the hashed user column, ``histories``
        (distinct recent-click tuples, row -> index of its tuple)."""
        text, has_text, interest = self._text(item_ids, *histories, text_lookup)
        return Batch(
            user=users,
            item=_hashed(item_ids, "item"),
            category=_hashed(categories, "category"),
            text=torch.from_numpy(text),
            has_text=torch.from_numpy(has_text),
            interest=torch.from_numpy(interest),
            dense=torch.from_numpy(dense),
        )

    def examples_to_batch(self, examples: Sequence[Example], text_lookup: TextLookup) -> Batch:
        """Labelled batch: click, conversion and dwell = log1p(seconds), 0 when absent."""
        unlabelled = self.to_batch(
            [e.impression for e in examples], [e.features for e in examples], text_lookup
        )
        labels = np.array(
            [
                (e.clicked, e.converted, -1.0 if e.dwell_seconds is None else e.dwell_seconds)
                for e in examples
            ],
            dtype=np.float64,
        ).reshape(-1, 3)
        dwell = np.where(labels[:, 2] >= 0.0, np.log1p(np.maximum(labels[:, 2], 0.0)), 0.0)
        return Batch(
            user=unlabelled.user,
            item=unlabelled.item,
            category=unlabelled.category,
            text=unlabelled.text,
            has_text=unlabelled.has_text,
            interest=unlabelled.interest,
            dense=unlabelled.dense,
            click=_float32(labels[:, 0]),
            conversion=_float32(labels[:, 1]),
            dwell=_float32(dwell),
        )

    def _lookup(self, ids: list[str], text_lookup: TextLookup) -> tuple[np.ndarray, np.ndarray]:
        if not ids:
            return np.zeros((0, self.text_dim), np.float32), np.zeros(0, bool)
        vectors, known = text_lookup(ids)
        vectors = np.asarray(vectors, dtype=np.float32)
        known = np.asarray(known, dtype=bool)
        if vectors.shape != (len(ids), self.text_dim) or known.shape != (len(ids),):
            raise ConfigError(
                f"text_lookup returned vectors {vectors.shape} and mask {known.shape} for "
                f"{len(ids)} ids; expected ({len(ids)}, {self.text_dim}) and ({len(ids)},): "
                "check the encoder's text_dim against the embedding model"
            )
        # Unknown rows must read as zeros whatever the lookup put there.
        return np.where(known[:, None], vectors, np.float32(0.0)), known

    def _text(
        self,
        item_ids: Sequence[str],
        groups: list[tuple[str, ...]],
        owner: np.ndarray,
        text_lookup: TextLookup,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Item text, has_text and interest (mean text of known recent clicks, else zeros)
        of each row; row r's recent clicks are ``groups[owner[r]]``.

        Each distinct history is averaged once (``np.add.reduceat`` over contiguous
        groups) and rows index the result: serving scores many candidates for one user,
        and ``np.add.at`` over rows x history x dims cost ~40 ms for 100 candidates.
        """
        index: dict[str, int] = {}
        rows = [index.setdefault(i, len(index)) for i in item_ids]
        history = [index.setdefault(c, len(index)) for g in groups for c in g]
        lengths = np.array([len(g) for g in groups], dtype=np.int64)
        vectors, known = self._lookup(list(index), text_lookup)
        row_index = np.asarray(rows, dtype=np.int64)
        text = vectors[row_index]
        has_text = known[row_index].astype(np.float32)
        totals = np.zeros((len(groups), self.text_dim), np.float64)
        counts = np.zeros(len(groups), np.float64)
        if history:
            history_index = np.asarray(history, dtype=np.int64)
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
            filled = lengths > 0
            totals[filled] = np.add.reduceat(
                vectors[history_index].astype(np.float64), starts[filled], axis=0
            )
            counts[filled] = np.add.reduceat(
                known[history_index].astype(np.float64), starts[filled]
            )
        # Cast each history's mean once, then index: serving repeats one history per row.
        interest = (totals / np.maximum(counts, 1.0)[:, None]).astype(np.float32)[owner]
        return np.ascontiguousarray(text, dtype=np.float32), has_text, interest
