"""The one declaration of the learning tasks: ``TaskSpec`` and the default ``TASKS``.

The task list drives everything that is per task: one tower each, the losses,
the prequential metrics and the drift detectors. Add a task here (and a label
field on ``Batch``) and every one of those follows.

>>> [t.name for t in TASKS]
['click', 'conversion', 'dwell']
>>> TASKS[1].parent, TASKS[2].mask
('click', 'click')
>>> task_index(TASKS, "dwell")
2
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from driftrec.core import ConfigError

__all__ = ["LABEL_FIELDS", "TASKS", "LossKind", "TaskSpec", "task_index", "validate_tasks"]

LossKind = Literal["bce", "mse"]

#: ``Batch`` fields a task may read its label (or mask) from.
LABEL_FIELDS: tuple[str, ...] = ("click", "conversion", "dwell")


@dataclass(frozen=True)
class TaskSpec:
    """One task.

    ``name`` keys predictions and metrics; ``label`` is the ``Batch`` field with the
    target; ``loss`` is ``"bce"`` (binary, prediction is a probability) or ``"mse"``
    (regression on the label's own scale); ``weight`` is the fixed loss weight (also
    the prior for the learned balancers).

    ``parent`` makes the task ESMM-style: the tower predicts the conditional
    probability and the task's prediction is ``p(parent) * p(self | parent)``, trained
    against ``label`` over every row (no sample-selection bias). ``mask`` restricts
    loss and metrics to rows where that label field is 1 (dwell is only observed on
    clicks).
    """

    name: str
    label: str
    loss: LossKind
    weight: float = 1.0
    parent: str | None = None
    mask: str | None = None

    @property
    def binary(self) -> bool:
        return self.loss == "bce"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "loss": self.loss,
            "weight": self.weight,
            "parent": self.parent,
            "mask": self.mask,
        }


TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("click", "click", "bce", 1.0),
    # ESMM: the conversion tower is pCVR; pCTCVR = pCTR * pCVR is fit on all impressions.
    TaskSpec("conversion", "conversion", "bce", 1.0, parent="click"),
    # Dwell is log1p(seconds), known only for clicked rows.
    TaskSpec("dwell", "dwell", "mse", 0.5, mask="click"),
)


def task_index(tasks: Sequence[TaskSpec], name: str) -> int:
    """Column of task ``name`` in the model's ``[B, T]`` outputs."""
    for i, task in enumerate(tasks):
        if task.name == name:
            return i
    raise ConfigError(f"no task named {name!r}; known tasks: {[t.name for t in tasks]}")


def validate_tasks(tasks: Sequence[TaskSpec]) -> None:
    """Raise ``ConfigError`` unless ``tasks`` is a usable task list."""
    if not tasks:
        raise ConfigError("at least one task is needed; use models.TASKS")
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ConfigError(f"task names must be unique, got {names}")
    for i, task in enumerate(tasks):
        if task.loss not in ("bce", "mse"):
            raise ConfigError(f"task {task.name}: loss must be 'bce' or 'mse', got {task.loss!r}")
        for field in (task.label, task.mask):
            if field is not None and field not in LABEL_FIELDS:
                raise ConfigError(
                    f"task {task.name}: {field!r} is not a Batch label field {LABEL_FIELDS}"
                )
        if not task.weight >= 0.0:
            raise ConfigError(f"task {task.name}: weight must be >= 0, got {task.weight}")
        if task.parent is not None:
            parents = [t for t in tasks[:i] if t.name == task.parent]
            if not parents or not parents[0].binary or not task.binary or parents[0].parent:
                raise ConfigError(
                    f"task {task.name}: parent {task.parent!r} must be an earlier binary task "
                    "without a parent of its own, and the child must be binary too"
                )
