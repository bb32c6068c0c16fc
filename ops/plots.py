"""PNG charts for the command line (matplotlib with the Agg backend: no display needed).

>>> import tempfile, numpy as np
>>> from pathlib import Path
>>> out = Path(tempfile.mkdtemp()) / "auc.png"
>>> curves = {"online": (np.array([100, 200]), np.array([0.6, 0.7]))}
>>> plot_rolling_auc(curves, [150], out, window=100).read_bytes()[:4]
b'\\x89PNG'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = ["plot_rolling_auc"]

#: Fixed colours so a system looks the same in every chart.
_COLOURS = {
    "online": "tab:blue",
    "static": "tab:red",
    "periodic": "tab:orange",
    "river_lr": "tab:gray",
    "river_fm": "tab:purple",
    "online_no_text": "tab:green",
    "oracle": "tab:brown",  # the log's true click probabilities (synthetic logs)
}


def plot_rolling_auc(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    drift_points: Sequence[int],
    path: Path,
    *,
    window: int,
    title: str = "Prequential click AUC",
) -> Path:
    """Rolling click AUC per system against the log's event index, drifts as dashed lines.

    ``curves`` maps a system to (event index at each window end, AUC); NaN points (a
    window with one class only) leave gaps. Writes ``path`` (parents created) and
    returns it.
    """
    import matplotlib

    matplotlib.use("Agg")  # before pyplot: never try to open a window
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5), dpi=110)
    try:
        for name, (x, y) in curves.items():
            ax.plot(x, y, label=name, color=_COLOURS.get(name), linewidth=1.4)
        for i, point in enumerate(drift_points):
            ax.axvline(
                point,
                color="black",
                linestyle="--",
                linewidth=1.0,
                label="drift" if i == 0 else None,
            )
        ax.set_xlabel("event index of the impression")
        ax.set_ylabel(f"click AUC (last {window:,} examples)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize="small")
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)
    return path
