"""Prequential (test-then-train) metrics per task, rolling over the last W observed rows.

Binary tasks: rolling ROC AUC (``river.metrics.RollingROCAUC``, exact on its
window), rolling and cumulative log-loss. Regression tasks: rolling and
cumulative MAE. A task's ``mask`` (dwell: clicked rows only) decides which rows
count. Rolling means are a numpy ring buffer, fed a whole batch at once and
equal to sklearn on the same window (``river.utils.Rolling(LogLoss())`` gives
the same numbers at ~1.7 us per row, which is 10% of the learner's budget).
The cumulative AUC is binned (4096 logit bins, documented approximation,
|error| ~1e-3); everything else is exact.

``state()`` / ``load_state()`` carry the window contents and cumulative sums as
arrays, so a restored learner reports the very same metrics (the AUC window is
replayed into a fresh river object; nothing is pickled).

>>> import numpy as np
>>> from driftrec.models.tasks import TASKS
>>> m = PrequentialMetrics(TASKS, window=4)
>>> _ = m.update({"click": np.array([0., 1, 1, 0]), "conversion": np.zeros(4),
...               "dwell": np.array([0, 2.0, 1, 0])},
...              {"click": np.array([.2, .8, .6, .4]), "conversion": np.full(4, .1),
...               "dwell": np.array([0, 1.5, 1.5, 0])})
>>> m.summary()["click.auc"], m.summary()["dwell.mae"], m.summary()["dwell.n"]
(1.0, 0.5, 2.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from driftrec.models import TaskSpec
from river.metrics import RollingROCAUC

__all__ = ["AUC_BINS", "PrequentialMetrics", "TaskMetrics", "per_example_loss", "roc_auc"]

AUC_BINS = 4096
_EPS = 1e-15  # river's LogLoss clip
_LOGIT_RANGE = 16.0


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Exact ROC AUC (Mann-Whitney, ties counted half); None without both classes.

    >>> roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    0.75
    """
    y = np.asarray(labels) > 0.5
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        return None
    _, inverse, counts = np.unique(np.asarray(scores), return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    ranks = (upper - (counts - 1) / 2.0)[inverse]  # average rank of each tie group, 1-based
    return float((ranks[y].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def per_example_loss(task: TaskSpec, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Log-loss per row (binary task) or absolute error (regression), float64."""
    y = y.astype(np.float64)
    p = p.astype(np.float64)
    if not task.binary:
        err: np.ndarray = np.abs(p - y)
        return err
    p = np.clip(p, _EPS, 1.0 - _EPS)
    loss: np.ndarray = -(y * np.log(p) + (1.0 - y) * np.log1p(-p))
    return loss


class TaskMetrics:
    """Metrics of one task; ``update`` takes only the rows the task observes."""

    def __init__(self, task: TaskSpec, window: int) -> None:
        self.task = task
        self.window = window
        self._auc = RollingROCAUC(window_size=window)  # type: ignore[no-untyped-call]  # river is untyped
        # Columns: label, prediction, per-row loss.
        self._buf = np.zeros((window, 3))
        self.count = 0
        self.loss_sum = 0.0
        self._hist = np.zeros((2, AUC_BINS), dtype=np.int64)  # negatives, positives

    def update(self, y: np.ndarray, p: np.ndarray) -> np.ndarray:
        """Add rows; return their per-row losses (see ``per_example_loss``)."""
        loss = per_example_loss(self.task, y, p)
        n = len(loss)
        if n == 0:
            return loss
        rows = np.stack([y, p, loss], axis=1)[-self.window :]
        pos = (self.count + n - len(rows)) % self.window
        head = min(len(rows), self.window - pos)
        self._buf[pos : pos + head] = rows[:head]
        self._buf[: len(rows) - head] = rows[head:]
        self.count += n
        self.loss_sum += float(loss.sum())
        if self.task.binary:
            self._feed_auc(rows)
            np.add.at(self._hist, (y.astype(np.int64), _bin(p)), 1)
        return loss

    def _feed_auc(self, rows: np.ndarray) -> None:
        # river takes one row per call; RollingROCAUC buffers them and flushes in bulk.
        for yt, pt in zip(rows[:, 0].astype(int).tolist(), rows[:, 1].tolist(), strict=True):
            self._auc.update(yt, pt)  # type: ignore[no-untyped-call]  # river is untyped

    def _window(self) -> np.ndarray:
        """Rows currently in the window, oldest first."""
        if self.count <= self.window:
            return self._buf[: self.count]
        return np.roll(self._buf, -(self.count % self.window), axis=0)

    def summary(self) -> dict[str, float]:
        name = self.task.name
        win = self._window()
        mean = float(win[:, 2].mean()) if len(win) else math.nan
        total = self.loss_sum / self.count if self.count else math.nan
        if not self.task.binary:
            return {
                f"{name}.mae": mean,
                f"{name}.mae_cumulative": total,
                f"{name}.n": float(self.count),
            }
        both = len(win) and 0 < win[:, 0].sum() < len(win)
        # river reports 0.0 for a one-class window; the AUC is undefined there.
        auc = float(self._auc.get()) if both else math.nan  # type: ignore[no-untyped-call]  # river is untyped
        return {
            f"{name}.auc": auc,
            f"{name}.logloss": mean,
            f"{name}.auc_cumulative": _binned_auc(self._hist),
            f"{name}.logloss_cumulative": total,
            f"{name}.n": float(self.count),
        }

    def state(self) -> dict[str, np.ndarray]:
        return {
            "window": self._window().copy(),
            "count": np.array(self.count),
            "loss_sum": np.array(self.loss_sum),
            "hist": self._hist.copy(),
        }

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        win = np.asarray(state["window"], dtype=np.float64).reshape(-1, 3)
        self.count = int(state["count"])
        self.loss_sum = float(state["loss_sum"])
        self._hist = np.asarray(state["hist"], dtype=np.int64).copy()
        # Lay the rows out so that _window() returns them, oldest first, at this count.
        self._buf = np.zeros((self.window, 3))
        if self.count <= self.window:
            self._buf[: len(win)] = win
        else:
            self._buf = np.roll(win, self.count % self.window, axis=0)
        self._auc = RollingROCAUC(window_size=self.window)  # type: ignore[no-untyped-call]  # river is untyped
        if self.task.binary:
            self._feed_auc(win)


def _bin(p: np.ndarray) -> np.ndarray:
    q = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    z = np.clip(np.log(q) - np.log1p(-q), -_LOGIT_RANGE, _LOGIT_RANGE)
    idx = ((z + _LOGIT_RANGE) / (2 * _LOGIT_RANGE) * AUC_BINS).astype(np.int64)
    out: np.ndarray = np.minimum(idx, AUC_BINS - 1)
    return out


def _binned_auc(hist: np.ndarray) -> float:
    neg, pos = hist[0].astype(np.float64), hist[1].astype(np.float64)
    n_neg, n_pos = neg.sum(), pos.sum()
    if n_neg == 0 or n_pos == 0:
        return math.nan
    below = np.cumsum(neg) - neg  # negatives strictly in lower bins
    return float((pos * (below + 0.5 * neg)).sum() / (n_neg * n_pos))


class PrequentialMetrics:
    """``TaskMetrics`` for every task; labels are keyed by ``Batch`` field, predictions by task."""

    def __init__(self, tasks: Sequence[TaskSpec], window: int) -> None:
        self.tasks = tuple(tasks)
        self.window = window
        self.per_task = {t.name: TaskMetrics(t, window) for t in self.tasks}

    def update(
        self, labels: Mapping[str, np.ndarray], predictions: Mapping[str, np.ndarray]
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Add one batch; per task, return (observed row positions, their losses)."""
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for task in self.tasks:
            y, p = labels[task.label], predictions[task.name]
            rows = np.arange(len(y))
            if task.mask is not None:
                rows = np.flatnonzero(labels[task.mask] > 0.5)
                y, p = y[rows], p[rows]
            out[task.name] = (rows, self.per_task[task.name].update(y, p))
        return out

    def summary(self) -> dict[str, float]:
        """Flat ``{"<task>.<metric>": value}``; NaN where a metric is not defined yet."""
        result: dict[str, float] = {}
        for metrics in self.per_task.values():
            result.update(metrics.summary())
        return result

    def state(self) -> dict[str, dict[str, np.ndarray]]:
        return {name: m.state() for name, m in self.per_task.items()}

    def load_state(self, state: Mapping[str, Mapping[str, np.ndarray]]) -> None:
        for name, metrics in self.per_task.items():
            metrics.load_state(state[name])
