"""Offline prequential evaluation: a click log replayed through the same joiner and
features as the stream, the online learner against static, periodic and river baselines.
"""

from __future__ import annotations

from driftrec.online_update.evaluation.baselines import make_river_fm, river_features
from driftrec.online_update.evaluation.eval_stream import ItemTexts, ToLearn, replay_log
from driftrec.online_update.evaluation.runner import EvalConfig, evaluate_source

__all__ = [
    "EvalConfig",
    "ItemTexts",
    "ToLearn",
    "evaluate_source",
    "make_river_fm",
    "replay_log",
    "river_features",
]
