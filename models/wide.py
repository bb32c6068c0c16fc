"""Standardised dense inputs and the wide (first-order) part of the multi-task model.

``RunningStandardiser`` keeps a running mean and variance of each dense input column
(buffers, so they travel with every ``state_dict`` and checkpoint) and maps a column to
``(x - mean) / std``, clipped to ``+-clip`` standard deviations. Only ``observe`` moves the
statistics, and only the learner calls it, after a batch's update steps: scoring, serving
and a loaded checkpoint use them frozen. The mean is a running average over the last
``horizon`` rows (an exact average until then), so a slow shift of the inputs is followed
without a single odd batch moving much. A column seen without variance maps to 0 until
it varies.

``WidePart`` is one logit (or residual, for a regression task) per task added to the deep
towers' output: a bias per hashed user, item and category plus a linear term over the
standardised dense inputs, all zero at the start so a new model is exactly its deep part.
Its tables have sparse gradients; the learner steps it with its own optimiser (Adagrad)
and learning rate on every step, because per-user and per-item tendencies are first-order
effects a linear model learns from a handful of examples, long before a deep model has
taken enough steps to carry them in its embeddings.

``TextScore`` (with ``ModelConfig.text_score`` and text in use) adds one more first-order
term to the wide part: the item's text vector scored against the user's interest vector
directly, ``text . interest`` (the mean cosine of the item to the user's recent clicks),
standardised by its own running statistics and weighted per task. It needs no projection
to be learned first, so an item nobody has clicked yet is ranked by how close its text is
to what this user clicks, from the first steps on; rows without text or without a click
history score 0.

>>> import torch
>>> norm = RunningStandardiser(2, horizon=1_000)
>>> norm(torch.tensor([[3.0, 5.0]])).tolist()  # nothing observed yet: x - 0, std 1
[[3.0, 5.0]]
>>> norm.observe(torch.tensor([[1.0, 5.0], [3.0, 5.0]]))
>>> norm(torch.tensor([[3.0, 5.0]])).tolist()  # column 2 never varied: 0
[[1.0, 0.0]]
"""

from __future__ import annotations

import torch
from driftrec.models.batch import Batch
from driftrec.models.config import ModelConfig
from torch import nn

__all__ = ["RunningStandardiser", "TextScore", "WidePart"]


class RunningStandardiser(nn.Module):
    """Per-column running mean / variance; ``forward`` standardises, ``observe`` updates."""

    count: torch.Tensor
    mean: torch.Tensor
    var: torch.Tensor

    def __init__(self, n: int, *, horizon: int = 100_000, clip: float = 5.0) -> None:
        super().__init__()
        self.horizon = horizon
        self.clip = clip
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("var", torch.ones(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.count.item() == 0:
            return x
        std = self.var.sqrt()
        z = (x - self.mean) / std.clamp_min(1e-6)
        z = torch.where(std > 1e-6, z, torch.zeros_like(z))
        return z.clamp(-self.clip, self.clip)

    @torch.no_grad()
    def observe(self, x: torch.Tensor) -> None:
        """Merge the rows of ``x`` ``[B, n]`` into the statistics (Chan et al.'s update,
        with the old statistics weighing at most ``horizon`` rows)."""
        k = x.shape[0]
        if k == 0:
            return
        old = float(min(self.count.item(), float(self.horizon)))
        batch_mean = x.mean(dim=0)
        batch_var = x.var(dim=0, unbiased=False)
        total = old + k
        delta = batch_mean - self.mean
        self.mean += delta * (k / total)
        if old == 0:
            self.var.copy_(batch_var)
        else:
            self.var.copy_(
                (old * self.var + k * batch_var + delta.square() * old * k / total) / total
            )
        self.count += k


class TextScore(nn.Module):
    """Per-task weight on the standardised ``text . interest`` of each row (0 without either)."""

    def __init__(self, n_tasks: int) -> None:
        super().__init__()
        self.norm = RunningStandardiser(1)
        # Zero at the start (a new model is its deep part); no bias: the score is centred.
        self.weight = nn.Linear(1, n_tasks, bias=False)
        nn.init.zeros_(self.weight.weight)

    @staticmethod
    def raw(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """``([B, 1] text . interest, [B, 1] mask of rows with both vectors)``."""
        score = (batch.text * batch.interest).sum(dim=1, keepdim=True)
        known = (batch.has_text > 0) & (batch.interest.abs().sum(dim=1) > 0)
        return score, known.unsqueeze(1)

    def forward(self, batch: Batch) -> torch.Tensor:
        score, known = self.raw(batch)
        z = torch.where(known, self.norm(score), torch.zeros_like(score))
        out: torch.Tensor = self.weight(z)
        return out

    @torch.no_grad()
    def observe(self, batch: Batch) -> None:
        """Merge the scores of the rows with text and interest into the statistics."""
        score, known = self.raw(batch)
        self.norm.observe(score[known.squeeze(1)])


class WidePart(nn.Module):
    """Per-task first-order logits: id biases plus a linear term over the dense inputs."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        t = config.n_tasks
        # One table for the three id kinds (users, then items, then categories): a step
        # costs one sparse update instead of three.
        self.item_offset = config.user_buckets
        self.category_offset = config.user_buckets + config.item_buckets
        rows = self.category_offset + config.category_buckets
        self.bias = nn.Embedding(rows, t, sparse=True, _weight=torch.zeros(rows, t))
        # No dense inputs, no linear term (torch warns about initialising empty weights).
        self.linear = nn.Linear(config.n_dense, t) if config.n_dense else None
        if self.linear is not None:
            nn.init.zeros_(self.linear.weight)
            nn.init.zeros_(self.linear.bias)
        self.text_score = TextScore(t) if config.use_text and config.text_score else None

    def forward(self, batch: Batch, dense: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` from the batch's ids and its (standardised) dense inputs."""
        cfg = self.config
        ids = torch.stack(
            (
                torch.remainder(batch.user, cfg.user_buckets),
                torch.remainder(batch.item, cfg.item_buckets) + self.item_offset,
                torch.remainder(batch.category, cfg.category_buckets) + self.category_offset,
            ),
            dim=1,
        )  # [B, 3]
        out: torch.Tensor = self.bias(ids).sum(dim=1)
        if self.linear is not None:
            out = out + self.linear(dense)
        if self.text_score is not None:
            out = out + self.text_score(batch)
        return out
