"""Pure computations over the history: rates over a sliding window, the reference window
and its band. Times are milliseconds on Redis's clock (the history's stream ids).

Rates come from cumulative counters that several workers write, each restarting at 0
with its process; so a rate is the sum of each worker's increases inside the window,
divided by the window, and a counter that went down counts from 0 (as Prometheus'
``rate`` does). A worker that stopped adds nothing once its last sample leaves the
window, so a rate falls to 0 instead of staying at its last value.

>>> points = [(0, "a", 0.0), (1000, "a", 10.0), (2000, "a", 30.0), (3000, "a", 5.0)]
>>> increments(points)
[(0, 0.0), (1000, 10.0), (2000, 20.0), (3000, 5.0)]
>>> windowed_rates(increments(points), [2000, 3000, 9000], window_ms=2000)
[15.0, 12.5, 0.0]
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict

__all__ = ["Band", "increments", "reference_band", "reference_window", "windowed_rates"]


def increments(points: Iterable[tuple[int, str, float]]) -> list[tuple[int, float]]:
    """(ms, worker, cumulative value) in time order -> (ms, increase since that worker's
    previous sample); a worker's first sample adds 0, a reset counts from 0."""
    last: dict[str, float] = {}
    out = []
    for ms, worker, value in points:
        previous = last.get(worker)
        step = 0.0 if previous is None else value - previous if value >= previous else value
        last[worker] = value
        out.append((ms, step))
    return out


def windowed_rates(
    steps: Sequence[tuple[int, float]], at_ms: Sequence[int], window_ms: int
) -> list[float]:
    """Per second, the increase in ``(t - window_ms, t]`` for each ``t`` of ``at_ms``."""
    times = [ms for ms, _ in steps]
    prefix = [0.0]
    for _, step in steps:
        prefix.append(prefix[-1] + step)
    out = []
    for t in at_ms:
        hi = bisect.bisect_right(times, t)
        lo = bisect.bisect_right(times, t - window_ms)
        out.append((prefix[hi] - prefix[lo]) / (window_ms / 1000.0))
    return out


class Band(BaseModel):
    """A metric's value over the reference window: its mean, and mean +- one standard
    deviation as the band the chart draws."""

    model_config = ConfigDict(frozen=True)

    start_ms: int
    end_ms: int
    n: int
    mean: float
    low: float
    high: float


def reference_band(
    points: Iterable[tuple[int, float | None]], start_ms: int, end_ms: int
) -> Band | None:
    """The band of the values sampled in ``[start_ms, end_ms]`` (None and NaN skipped);
    None when the window holds no value.

    >>> reference_band([(0, 0.6), (10, 0.7), (20, 0.8), (30, None), (40, 0.1)], 0, 30)
    Band(start_ms=0, end_ms=30, n=3, mean=0.7, low=0.61835, high=0.78165)
    """
    values = [
        v for ms, v in points if start_ms <= ms <= end_ms and v is not None and not math.isnan(v)
    ]
    if not values:
        return None
    mean = math.fsum(values) / len(values)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))
    return Band(
        start_ms=start_ms,
        end_ms=end_ms,
        n=len(values),
        mean=round(mean, 6),
        low=round(mean - std, 6),
        high=round(mean + std, 6),
    )


def reference_window(
    activations: Iterable[tuple[int, str]],
    active: str | None,
    span_ms: int,
    pinned: tuple[int, int] | None = None,
) -> tuple[int, int] | None:
    """The reference window: ``pinned`` when given, else the ``span_ms`` before the
    latest activation (ms, version) of the ``active`` version; None when unknown.

    >>> reference_window([(1000, "v1"), (5000, "v2"), (9000, "v1")], "v1", 2000)
    (7000, 9000)
    >>> reference_window([(1000, "v1")], "v2", 2000) is None
    True
    """
    if pinned is not None:
        return pinned
    times = [ms for ms, version in activations if version == active]
    if not times:
        return None
    return max(times) - span_ms, max(times)
