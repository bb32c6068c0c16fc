"""Multi-task PyTorch models: pure functions of tensors (no faust, kafka or redis here).

``ModelConfig`` -> ``MultiTaskModel``; ``TASKS`` declares the tasks once;
``models.losses`` turns outputs into predictions and losses; ``models.balancing``
combines the per-task losses.
"""

from __future__ import annotations

from models.balancing import BALANCING_METHODS, BalancingMethod, TaskBalancer, make_balancer
from models.batch import Batch
from models.config import ARCHS, ModelConfig
from models.losses import predict, task_losses
from models.mtl import MultiTaskModel
from models.tasks import TASKS, TaskSpec

__all__ = [
    "ARCHS",
    "BALANCING_METHODS",
    "TASKS",
    "BalancingMethod",
    "Batch",
    "ModelConfig",
    "MultiTaskModel",
    "TaskBalancer",
    "TaskSpec",
    "make_balancer",
    "predict",
    "task_losses",
]
