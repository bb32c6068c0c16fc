"""The trainer: the one writer of a model, fed raw messages of the examples topic by the
stream's agent. Deduplicates, learns, follows embedding versions, checkpoints, publishes.
"""

from __future__ import annotations

from driftrec.online_update.training.pointer import CheckpointPointer
from driftrec.online_update.training.trainer import (
    FencedOut,
    PendingCheckpoint,
    Trainer,
    default_learner_config,
)

__all__ = [
    "CheckpointPointer",
    "FencedOut",
    "PendingCheckpoint",
    "Trainer",
    "default_learner_config",
]
