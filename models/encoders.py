"""``FeatureEncoder``: one ``Batch`` -> one dense feature matrix ``[B, D]``.

Hashed ids go through sparse embedding tables (``sparse=True``: a step touches
only the rows in the batch); the item text and the user interest vector go
through a linear projection; element-wise products give the towers the
user x item and interest x text interactions directly. New id rows start near
zero so an item nobody has seen is scored from its text, not from noise.

>>> import torch
>>> from driftrec.models.config import ModelConfig
>>> enc = FeatureEncoder(ModelConfig(text_dim=8, n_dense=2, user_buckets=10, item_buckets=10))
>>> b = Batch(user=torch.tensor([3, 13]), item=torch.tensor([1, 2]), category=torch.tensor([0, 5]),
...           text=torch.zeros(2, 8), has_text=torch.zeros(2), interest=torch.zeros(2, 8),
...           dense=torch.zeros(2, 2))
>>> enc(b).shape == (2, enc.out_dim)
True
"""

from __future__ import annotations

import torch
from driftrec.core import ConfigError
from driftrec.models.batch import Batch
from driftrec.models.config import ModelConfig
from torch import nn

__all__ = ["FeatureEncoder", "check_batch"]


def check_batch(batch: Batch, config: ModelConfig) -> None:
    """Raise ``ConfigError`` when ``batch`` does not fit ``config`` (shapes, dtypes)."""
    n = len(batch)
    for name in ("item", "category"):
        if getattr(batch, name).shape != (n,):
            raise ConfigError(f"Batch.{name} must have shape [{n}] like Batch.user")
    if batch.dense.shape != (n, config.n_dense):
        raise ConfigError(
            f"Batch.dense has shape {tuple(batch.dense.shape)}, the model expects "
            f"[{n}, {config.n_dense}]: set ModelConfig.n_dense to the feature count"
        )
    if config.use_text:
        for name in ("text", "interest"):
            if getattr(batch, name).shape != (n, config.text_dim):
                raise ConfigError(
                    f"Batch.{name} has shape {tuple(getattr(batch, name).shape)}, the model "
                    f"expects [{n}, {config.text_dim}]: set ModelConfig.text_dim"
                )


class FeatureEncoder(nn.Module):
    """Embeddings + text projection + dense context -> ``[B, out_dim]``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        d = config.id_dim
        self.user = nn.Embedding(config.user_buckets, d, sparse=True)
        self.item = nn.Embedding(config.item_buckets, d, sparse=True)
        self.category = nn.Embedding(config.category_buckets, d, sparse=True)
        for table in (self.user, self.item, self.category):
            nn.init.normal_(table.weight, std=config.id_init_std)
        width = 3 * d + config.n_dense + (d if config.interactions else 0)
        self.text_proj: nn.Linear | None = None
        self.interest_proj: nn.Linear | None = None
        if config.use_text:
            p = config.text_proj_dim
            self.text_proj = nn.Linear(config.text_dim, p)
            if not config.share_text_projection:
                self.interest_proj = nn.Linear(config.text_dim, p)
            width += 2 * p + 1 + (p if config.interactions else 0)
        self.out_dim = width

    def forward(self, batch: Batch, dense: torch.Tensor | None = None) -> torch.Tensor:
        """``dense`` replaces ``batch.dense`` (the model passes it standardised)."""
        cfg = self.config
        u = self.user(torch.remainder(batch.user, cfg.user_buckets))
        i = self.item(torch.remainder(batch.item, cfg.item_buckets))
        c = self.category(torch.remainder(batch.category, cfg.category_buckets))
        parts = [u, i, c]
        if cfg.interactions:
            parts.append(u * i)
        if self.text_proj is not None:
            interest_proj = self.interest_proj or self.text_proj
            t = self.text_proj(batch.text)
            s = interest_proj(batch.interest)
            parts += [t, s, batch.has_text.unsqueeze(1)]
            if cfg.interactions:
                parts.append(t * s)
        parts.append(batch.dense if dense is None else dense)
        return torch.cat(parts, dim=1)
