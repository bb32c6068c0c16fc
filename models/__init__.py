"""Multi-task PyTorch models: pure functions of tensors (no faust, kafka or redis here).

``ModelConfig`` -> ``MultiTaskModel``; ``TASKS`` declares the tasks once;
``driftrec.models.losses`` turns outputs into predictions and losses; ``driftrec.models.balancing``
combines the per-task losses.
"""

from __future__ import annotations

from driftrec.models.balancing import (
    BALANCING_METHODS,
    BalancingMethod,
    TaskBalancer,
    make_balancer,
)
from driftrec.models.batch import Batch
from driftrec.models.config import ARCHS, Arch, ModelConfig, fingerprint
from driftrec.models.encoders import check_batch
from driftrec.models.layers import CGCLayer
from driftrec.models.losses import mask_of, predict, task_losses
from driftrec.models.mtl import MultiTaskModel, SharedBottom
from driftrec.models.tasks import TASKS, TaskSpec

__all__ = [
    "ARCHS",
    "BALANCING_METHODS",
    "TASKS",
    "Arch",
    "BalancingMethod",
    "Batch",
    "CGCLayer",
    "ModelConfig",
    "MultiTaskModel",
    "SharedBottom",
    "TaskBalancer",
    "TaskSpec",
    "check_batch",
    "fingerprint",
    "make_balancer",
    "mask_of",
    "predict",
    "task_losses",
]
