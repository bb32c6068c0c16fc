"""The online learner: predict-then-learn on mini-batches, rolling metrics, drift detectors,
and checkpoints that hold the model, its optimisers and its metrics (never pickled code).
"""

from __future__ import annotations

from driftrec.online_update.learning.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_for_prediction,
    read_extra,
    save_checkpoint,
)
from driftrec.online_update.learning.learner import LearnerConfig, OnlineLearner, StepResult
from driftrec.online_update.learning.metrics import roc_auc
from driftrec.online_update.learning.population import LabelFreeDrift, label_free_drift, psi
from driftrec.online_update.learning.recipe import learner_config

__all__ = [
    "CheckpointError",
    "LabelFreeDrift",
    "LearnerConfig",
    "OnlineLearner",
    "StepResult",
    "label_free_drift",
    "learner_config",
    "load_checkpoint",
    "load_for_prediction",
    "psi",
    "read_extra",
    "roc_auc",
    "save_checkpoint",
]
