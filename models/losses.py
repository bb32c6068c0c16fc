"""From raw model outputs to predictions and per-task losses (ESMM for child tasks).

Prediction semantics, per ``TaskSpec``:

- binary task: a probability; for the default tasks ``click`` = pCTR.
- binary task with a ``parent`` (ESMM): ``p(parent) * sigmoid(own output)``, so
  ``conversion`` = pCTCVR = pCTR * pCVR. Its BCE is taken against the conversion
  label over every impression, which is what removes sample-selection bias.
- regression task: the predicted label on the label's scale; for ``dwell`` that is
  log1p(seconds) given a click, clamped at 0 (``numpy.expm1`` gives seconds; note
  that expm1 of a mean log is a median-like value, not the mean of seconds).

>>> import torch
>>> from driftrec.models.tasks import TASKS
>>> raw = torch.tensor([[0.0, 0.0, -1.0]])
>>> predict(TASKS, raw)
tensor([[0.5000, 0.2500, 0.0000]])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from driftrec.core import ConfigError
from driftrec.models.batch import Batch
from driftrec.models.tasks import TaskSpec, task_index

__all__ = ["label_of", "mask_of", "predict", "task_losses"]

_LOG_HALF = -math.log(2.0)


def label_of(batch: Batch, task: TaskSpec) -> torch.Tensor:
    """The label tensor of ``task``; ``ConfigError`` when the batch has none."""
    value = getattr(batch, task.label)
    if value is None:
        raise ConfigError(
            f"task {task.name} needs Batch.{task.label}; learn only from labelled batches"
        )
    return value  # type: ignore[no-any-return]  # Batch fields are Tensor | None


def mask_of(batch: Batch, task: TaskSpec) -> torch.Tensor | None:
    """Boolean rows the task is observed on, or None for every row."""
    if task.mask is None:
        return None
    value = getattr(batch, task.mask)
    if value is None:
        raise ConfigError(f"task {task.name} is masked by Batch.{task.mask}, which is missing")
    return value > 0.5  # type: ignore[no-any-return]  # Batch fields are Tensor | None


def predict(tasks: Sequence[TaskSpec], raw: torch.Tensor) -> torch.Tensor:
    """Predictions ``[B, T]`` from raw outputs ``[B, T]`` (see the module docstring)."""
    cols: list[torch.Tensor] = []
    for j, task in enumerate(tasks):
        if task.binary:
            p = torch.sigmoid(raw[:, j])
            if task.parent is not None:
                p = p * cols[task_index(tasks, task.parent)]
        else:
            p = raw[:, j].clamp_min(0.0)
        cols.append(p)
    return torch.stack(cols, dim=1)


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, accurate at both ends (Maechler 2012)."""
    x = x.clamp_max(-1e-7)
    return torch.where(x > _LOG_HALF, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, bool]:
    if mask is None:
        return values.mean(), bool(values.numel())
    count = int(mask.sum())
    if count == 0:
        # Keep the graph connected so every task contributes a (zero) gradient.
        return (values * 0.0).sum(), False
    return values[mask].sum() / count, True


def task_losses(
    tasks: Sequence[TaskSpec], raw: torch.Tensor, batch: Batch
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss per task ``[T]`` and whether each task had any observed row ``[T]`` (bool)."""
    losses: list[torch.Tensor] = []
    valid: list[bool] = []
    for j, task in enumerate(tasks):
        y = label_of(batch, task)
        out = raw[:, j]
        if not task.binary:
            per_row = (out - y).square()
        elif task.parent is None:
            per_row = F.binary_cross_entropy_with_logits(out, y, reduction="none")
        else:
            log_p = F.logsigmoid(raw[:, task_index(tasks, task.parent)]) + F.logsigmoid(out)
            per_row = -(y * log_p + (1.0 - y) * _log1mexp(log_p))
        loss, ok = _masked_mean(per_row, mask_of(batch, task))
        losses.append(loss)
        valid.append(ok)
    return torch.stack(losses), torch.tensor(valid)
