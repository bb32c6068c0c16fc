"""Scoring candidates: features from Redis, the shared encoder, the model, the blend.

The request path has exactly the training path's feature code, without its per-row
objects: ``RedisFeatureStore.read_candidates`` rebuilds ``FeatureState`` entries and
calls ``lookup_many`` (the user and every candidate from one Redis round trip), and
``FeatureEncoder.candidates_to_batch`` turns those columns into a ``Batch`` with the
assembly step ``to_batch`` uses, with text vectors from ``RedisVectorStore``. The request
body is validated once by the API; nothing per candidate is validated again. A second
round trip reads the vectors of candidates and recent clicks the cache does not hold
(``Scorer``), so a warm request makes one.

Item counts come from the user's events partition (``user_shard`` over ``partitions``),
as in the joiner's snapshots the model was trained on.

Candidates are shown at position 0 (their position is what ranking decides) and at the
features' event time. A user or item nobody has seen gets empty-history features and,
if the vector store has no vector for it, no text (``has_text`` 0): the model then
scores it from its id embedding (near zero for an unseen id), category and priors.

>>> import numpy as np
>>> preds = {"click": np.array([0.1]), "conversion": np.array([0.02]),
...          "dwell": np.log1p(np.array([30.0]))}
>>> [round(float(v[0]), 4) for v in blend(preds, BlendWeights())]
[0.1, 0.02, 30.0, 0.39]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import torch
from driftrec.features import TextLookup
from driftrec.models import Batch
from driftrec.online_update.embeddings import RedisVectorStore
from driftrec.ops.serving.model_holder import LoadedModel
from driftrec.ops.serving.schemas import BlendWeights, ItemScore
from driftrec.stream import RedisFeatureStore, user_shard

__all__ = ["Scored", "Scorer", "blend"]


def blend(
    preds: dict[str, np.ndarray], weights: BlendWeights
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(pCTR, pCTCVR, dwell seconds, blended score); a task the model lacks counts 0."""
    n = len(next(iter(preds.values()))) if preds else 0
    zeros = np.zeros(n, dtype=np.float64)
    click = preds.get("click", zeros).astype(np.float64)
    ctcvr = preds.get("conversion", zeros).astype(np.float64)
    dwell_s = np.maximum(np.expm1(preds.get("dwell", zeros).astype(np.float64)), 0.0)
    score = (
        weights.click * click
        + weights.conversion * ctcvr
        + weights.dwell * dwell_s / (dwell_s + weights.dwell_scale_s)
    )
    return click, ctcvr, dwell_s, score


@dataclass(frozen=True)
class Scored:
    """Per-item predictions of one request, in candidate order."""

    version: str
    as_of: datetime
    item_ids: list[str]
    click: np.ndarray
    conversion: np.ndarray
    dwell_s: np.ndarray
    score: np.ndarray

    def items(self, order: Sequence[int] | None = None) -> list[ItemScore]:
        rows = range(len(self.item_ids)) if order is None else order
        return [
            ItemScore(
                item_id=self.item_ids[j],
                click=float(self.click[j]),
                conversion=float(self.conversion[j]),
                dwell_s=float(self.dwell_s[j]),
                score=float(self.score[j]),
            )
            for j in rows
        ]

    def top(self, k: int) -> list[int]:
        """Rows of the ``k`` best scores, best first (ties keep candidate order)."""
        return [int(j) for j in np.argsort(-self.score, kind="stable")[:k]]


class _VectorCache:
    """Item vectors found for one (model version, embedding version); replaced whole."""

    def __init__(self, key: tuple[str, str], limit: int) -> None:
        self.key = key
        self.limit = limit
        self.rows: dict[str, np.ndarray] = {}


class Scorer:
    """Scores candidates with a ``LoadedModel``; thread-safe (shares only Redis pools).

    Item text vectors do not depend on the user: the vectors found for the served
    (model version, embedding version) are kept in memory, up to ``cache_items`` items,
    and dropped whole when a swap (or a refresh) changes that pair, so a warm request
    reads only the features from Redis. An item without a vector yet is not cached (its
    vector is read again until the embedder has written it); a vector rewritten within
    the same version (changed item text) is picked up at the next swap.
    """

    def __init__(
        self,
        features: RedisFeatureStore,
        vectors: RedisVectorStore,
        partitions: int,
        *,
        cache_items: int = 50_000,
    ) -> None:
        self.features = features
        self.vectors = vectors
        self.partitions = partitions
        self.cache_items = cache_items
        self._cache: _VectorCache | None = None

    def score(
        self,
        model: LoadedModel,
        user_id: str,
        item_ids: list[str],
        ts: datetime | None,
        weights: BlendWeights,
    ) -> Scored:
        batch, as_of = self.batch(model, user_id, item_ids, ts)
        preds: dict[str, np.ndarray] = {}
        if item_ids:
            with torch.inference_mode():
                preds = model.learner.predict_many(batch)
        click, ctcvr, dwell_s, score = blend(preds, weights)
        return Scored(model.version, as_of, item_ids, click, ctcvr, dwell_s, score)

    def batch(
        self, model: LoadedModel, user_id: str, item_ids: list[str], ts: datetime | None
    ) -> tuple[Batch, datetime]:
        """The model input ``score`` builds for these candidates, and its event time."""
        shard = user_shard(user_id, self.partitions)
        features, as_of = self.features.read_candidates(user_id, item_ids, ts, shard=shard)
        batch = model.encoder.candidates_to_batch(
            user_id, item_ids, features, as_of, self._lookup(model)
        )
        return batch, as_of

    def _lookup(self, model: LoadedModel) -> TextLookup:
        version, dim = model.embedding_version, model.encoder.text_dim
        cache = self._cache
        if version is not None and (cache is None or cache.key != (model.version, version)):
            cache = self._cache = _VectorCache((model.version, version), self.cache_items)

        def lookup(ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
            out, found = np.zeros((len(ids), dim), np.float32), np.zeros(len(ids), bool)
            if version is None or cache is None:
                return out, found
            rows = cache.rows
            missing = [i for i in dict.fromkeys(ids) if i not in rows]
            if missing:
                vectors, known = self.vectors.get(version, missing, dim)
                fetched = {i: v for i, v, k in zip(missing, vectors, known, strict=True) if k}
                if len(rows) + len(fetched) > cache.limit:
                    cache.rows = rows = {}  # full: start over (other requests keep theirs)
                rows.update(fetched)
            hits = [rows.get(i) for i in ids]
            found = np.fromiter((row is not None for row in hits), bool, len(ids))
            if found.any():  # one gather in C, not a row assignment per candidate
                out[found] = np.stack([row for row in hits if row is not None])
            return out, found

        return lookup
