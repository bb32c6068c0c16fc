"""Concept-drift alarms on the per-example prequential loss stream of each task.

Two detectors from ``river.drift`` run per task: ADWIN (adaptive window, a
change in the mean loss) and Page-Hinkley (cumulative deviation). Only a rise
of the loss is a drift worth an alarm: a falling loss is the model learning.
Page-Hinkley runs in ``mode="up"``; an ADWIN detection counts when the mean of
the window it keeps is higher than before the detection. Each ``Alarm`` names
the global 0-based index of the example on which the detector fired.

Detectors keep no state in checkpoints: after a restore they start afresh
(the alarms already raised are kept in the checkpoint's JSON metadata).

>>> import numpy as np
>>> monitor = DriftMonitor(["click"], ph_threshold=20.0)
>>> rng = np.random.default_rng(0)
>>> low, high = rng.exponential(0.3, 2000), rng.exponential(1.5, 2000)
>>> alarms = monitor.update("click", np.concatenate([low, high]), np.arange(4000))
>>> sorted({a.detector for a in alarms}), all(a.example_index >= 2000 for a in alarms)
(['adwin', 'page-hinkley'], True)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from river import drift

__all__ = ["DETECTORS", "Alarm", "DriftMonitor"]

DETECTORS: tuple[str, ...] = ("adwin", "page-hinkley")


@dataclass(frozen=True)
class Alarm:
    """A detector fired for ``task`` at stream example ``example_index``."""

    detector: str
    task: str
    example_index: int

    def to_dict(self) -> dict[str, Any]:
        return {"detector": self.detector, "task": self.task, "example_index": self.example_index}


class DriftMonitor:
    """ADWIN + Page-Hinkley for every named task."""

    def __init__(
        self,
        tasks: Iterable[str],
        *,
        adwin_delta: float = 0.002,
        ph_threshold: float = 50.0,
        ph_delta: float = 0.05,
        ph_min_instances: int = 30,
    ) -> None:
        self.tasks = tuple(tasks)
        self.adwin_delta = adwin_delta
        self.ph_threshold = ph_threshold
        self.ph_delta = ph_delta
        self.ph_min_instances = ph_min_instances
        self.alarms: list[Alarm] = []
        self.reset()

    def reset(self) -> None:
        """Fresh detectors (alarms already raised are kept)."""
        self._adwin = {
            t: drift.ADWIN(delta=self.adwin_delta)  # type: ignore[no-untyped-call]  # river is untyped
            for t in self.tasks
        }
        self._ph = {
            t: drift.PageHinkley(
                min_instances=self.ph_min_instances,
                delta=self.ph_delta,
                threshold=self.ph_threshold,
                mode="up",
            )
            for t in self.tasks
        }
        self._adwin_tally = {t: (0.0, 0) for t in self.tasks}

    def update(
        self, task: str, losses: np.ndarray, example_index: Sequence[int] | np.ndarray
    ) -> list[Alarm]:
        """Feed per-example ``losses`` of ``task`` (in stream order); return the new alarms."""
        if task not in self._adwin:
            return []
        adwin, ph = self._adwin[task], self._ph[task]
        values = np.asarray(losses, dtype=np.float64)
        indices = np.asarray(example_index).tolist()
        new: list[Alarm] = []
        # River's ADWIN restarts empty after a detection, so its window before a detection is
        # every value since the last one: running sums we keep (its properties cost ~1 us).
        total, width = self._adwin_tally[task]
        start = 0  # values[start:j] are in the window on top of (total, width)
        for j, x in enumerate(values.tolist()):
            adwin.update(x)  # type: ignore[no-untyped-call]  # river is untyped
            if adwin.drift_detected:
                before = (total + float(values[start : j + 1].sum())) / (width + j + 1 - start)
                if adwin.estimation > before:
                    new.append(Alarm("adwin", task, int(indices[j])))
                total, width, start = 0.0, 0, j + 1
            ph.update(x)  # type: ignore[no-untyped-call]  # river is untyped
            if ph.drift_detected:
                new.append(Alarm("page-hinkley", task, int(indices[j])))
        self._adwin_tally[task] = (total + float(values[start:].sum()), width + len(values) - start)
        self.alarms.extend(new)
        return new
