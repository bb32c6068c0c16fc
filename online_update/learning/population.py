"""Label-free drift: how far the inputs and the predictions moved from a reference window.

Labels arrive late (a click window is 30 minutes), but the model's inputs and its
predicted click probabilities are there at once: when their distribution moves away from
the one the active model was promoted on, drift is under way before any metric can say
so. The measure is the population stability index (PSI) of the current window against
the reference window, on bins cut at the reference's quantiles:

    PSI = sum over bins of (cur% - ref%) * ln(cur% / ref%)

An empty bin would make the logarithm infinite, so shares are floored at ``EPSILON``
(the common convention). Reading it: below 0.1 nothing moved, 0.1-0.25 a moderate
shift, above 0.25 a large one.

A hand-checked example: reference 0..9, current all in its upper half. The quartile edges
of the reference give bins of 3, 2, 2, 3 rows (30 %, 20 %, 20 %, 30 %); the current
window puts 0 %, 0 %, 20 %, 80 % in them (empty bins count as 0.01 %):

>>> import numpy as np
>>> edges = quantile_edges(np.arange(10.0), bins=4)
>>> shares(np.arange(10.0), edges).tolist()
[0.3, 0.2, 0.2, 0.3]
>>> round(psi(np.arange(10.0), np.array([5.0, 6, 7, 7, 8, 8, 9, 9, 9, 9]), bins=4), 4)
4.4109
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

__all__ = ["EPSILON", "LabelFreeDrift", "label_free_drift", "psi", "quantile_edges", "shares"]

#: Floor of a bin's share, so an empty bin costs a large but finite amount.
EPSILON = 1e-4


def quantile_edges(reference: np.ndarray, bins: int = 10) -> np.ndarray:
    """The inner bin edges: the reference's quantiles, repeated values merged (a feature
    that takes few values, like a position, gets fewer bins rather than empty ones)."""
    qs = np.quantile(np.asarray(reference, dtype=np.float64), np.linspace(0, 1, bins + 1)[1:-1])
    return np.unique(qs)


def shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The share of ``values`` in each bin; a bin holds values >= its lower edge."""
    counts = np.bincount(
        np.searchsorted(edges, np.asarray(values, dtype=np.float64), side="right"),
        minlength=len(edges) + 1,
    )
    return counts / max(len(values), 1)


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """The population stability index of ``current`` against ``reference``."""
    edges = quantile_edges(reference, bins)
    ref = np.maximum(shares(reference, edges), EPSILON)
    cur = np.maximum(shares(current, edges), EPSILON)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


class LabelFreeDrift(BaseModel):
    """Current window against reference window: PSI per feature (largest first), and the
    predicted click probability's distribution in both on shared bins."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reference_rows: int
    current_rows: int
    psi: dict[str, float]
    top_movers: list[str]
    click_psi: float
    click_edges: list[float]
    click_reference: list[float]
    click_current: list[float]


def label_free_drift(
    reference: np.ndarray,
    current: np.ndarray,
    reference_click: np.ndarray,
    current_click: np.ndarray,
    names: Sequence[str],
    *,
    bins: int = 10,
    top: int = 3,
) -> LabelFreeDrift:
    """PSI of every column of ``current`` (rows x features, ``names`` in order) against
    ``reference``, and of the predicted click probabilities. The click histogram uses
    fixed bins of width 1/``bins`` so both windows are drawn on the same axis."""
    by_feature: Mapping[str, float] = {
        name: round(psi(reference[:, j], current[:, j], bins), 5) for j, name in enumerate(names)
    }
    ordered = dict(sorted(by_feature.items(), key=lambda kv: -kv[1]))
    fixed = np.linspace(0, 1, bins + 1)[1:-1]
    return LabelFreeDrift(
        reference_rows=len(reference),
        current_rows=len(current),
        psi=ordered,
        top_movers=[name for name in ordered if ordered[name] >= 0.1][:top],
        click_psi=round(psi(reference_click, current_click, bins), 5),
        click_edges=[round(float(e), 4) for e in fixed],
        click_reference=[round(float(s), 5) for s in shares(reference_click, fixed)],
        click_current=[round(float(s), 5) for s in shares(current_click, fixed)],
    )
