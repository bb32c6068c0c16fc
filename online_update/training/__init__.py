"""The trainer: the one writer of a model, fed raw messages of the examples topic by the
stream's agent. Deduplicates, learns, follows embedding versions, checkpoints, publishes.
Its ``LearnerConfig`` comes from the settings through ``learner_config``, the same recipe
``driftrec eval`` runs.
"""

from __future__ import annotations

from driftrec.online_update.learning import learner_config
from driftrec.online_update.training.pointer import CheckpointPointer
from driftrec.online_update.training.trainer import (
    FencedOut,
    PendingCheckpoint,
    Trainer,
)

__all__ = [
    "CheckpointPointer",
    "FencedOut",
    "PendingCheckpoint",
    "Trainer",
    "learner_config",
]
