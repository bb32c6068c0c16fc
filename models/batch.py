"""The tensor contract between the feature code and the models.

A ``Batch`` is what every architecture consumes. Label fields are ``None`` at
serving time. Ids are already hashed to non-negative int64; each embedding
table reduces them modulo its own size.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, cast

import torch

__all__ = ["Batch"]


@dataclass(frozen=True)
class Batch:
    """One mini-batch of B examples (shapes in comments)."""

    user: torch.Tensor  # [B] int64, hashed user id
    item: torch.Tensor  # [B] int64, hashed item id
    category: torch.Tensor  # [B] int64, hashed item category
    text: torch.Tensor  # [B, T] float32, item text embedding (zeros when unknown)
    has_text: torch.Tensor  # [B] float32, 1.0 when ``text`` is a real vector
    interest: torch.Tensor  # [B, T] float32, mean text embedding of the user's recent clicks
    dense: torch.Tensor  # [B, F] float32, context and counters (see stream.features.DENSE_FEATURES)
    click: torch.Tensor | None = None  # [B] float32 in {0, 1}
    conversion: torch.Tensor | None = None  # [B] float32 in {0, 1}; 1 implies click
    dwell: torch.Tensor | None = None  # [B] float32, log1p(seconds); 0 where not clicked

    def __len__(self) -> int:
        return int(self.user.shape[0])

    @property
    def has_labels(self) -> bool:
        return self.click is not None

    def slice(self, start: int, stop: int) -> Batch:
        """Rows ``start:stop`` (views, no copy)."""
        values = {}
        for f in fields(self):
            value = getattr(self, f.name)
            values[f.name] = None if value is None else value[start:stop]
        return Batch(**cast(dict[str, Any], values))  # every field is a tensor or None

    @staticmethod
    def concat(batches: list[Batch]) -> Batch:
        """Stack batches row-wise (all must agree on which labels are present)."""
        values = {}
        for f in fields(Batch):
            parts = [getattr(b, f.name) for b in batches]
            values[f.name] = None if parts[0] is None else torch.cat(parts)
        return Batch(**cast(dict[str, Any], values))  # every field is a tensor or None
