"""Task balancing: how per-task losses become the one scalar that is back-propagated.

One interface, three methods (``make_balancer(method, tasks)``):

- ``"fixed"``: ``sum_t weight_t * L_t`` with the ``TaskSpec`` weights.
- ``"uncertainty"`` (Kendall, Gal & Cipolla 2018): learned log-variances ``s_t``;
  ``sum_t c_t * weight_t * exp(-s_t) * L_t + s_t / 2`` with ``c_t = 1`` for
  classification and ``1/2`` for regression.
- ``"gradnorm"`` (Chen et al. 2018): learned weights ``w_t`` pushed so that the
  gradient norm of ``w_t * L_t`` at the last shared layer tracks
  ``mean_norm * r_t ** alpha``, ``r_t`` being the task's relative inverse training
  rate (``L_t / L_t(0)``, normalised). ``L_t(0)`` is the first loss seen for the
  task. Weights are renormalised to their initial sum after each step.

``combine`` returns the scalar for ``backward()`` (and, for GradNorm, fills the
weights' ``.grad`` itself); the caller steps an optimiser over
``balancer.parameters()`` and then calls ``after_step()``. Tasks without an
observed row in the batch (``valid`` False) are left out of the learned terms.

>>> import torch
>>> from driftrec.models.tasks import TASKS
>>> fixed = make_balancer("fixed", TASKS)
>>> fixed.combine(torch.tensor([1.0, 1.0, 1.0]), torch.tensor([True] * 3), None)
tensor(2.5000)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from driftrec.core import ConfigError
from driftrec.models.tasks import TaskSpec
from torch import nn

__all__ = [
    "BALANCING_METHODS",
    "BalancingMethod",
    "FixedWeights",
    "GradNorm",
    "TaskBalancer",
    "UncertaintyWeighting",
    "make_balancer",
]

BalancingMethod = Literal["fixed", "uncertainty", "gradnorm"]
BALANCING_METHODS: tuple[str, ...] = ("fixed", "uncertainty", "gradnorm")


class TaskBalancer(nn.Module):
    """Common interface; subclasses override ``combine`` and, if learned, ``after_step``."""

    prior: torch.Tensor

    def __init__(self, tasks: Sequence[TaskSpec]) -> None:
        super().__init__()
        self.register_buffer("prior", torch.tensor([t.weight for t in tasks], dtype=torch.float32))

    def combine(
        self, losses: torch.Tensor, valid: torch.Tensor, shared: torch.Tensor | None
    ) -> torch.Tensor:
        """Scalar training loss from per-task ``losses [T]``; ``shared`` is the last shared
        layer's weight (only GradNorm reads it)."""
        raise NotImplementedError

    def weights(self) -> torch.Tensor:
        """Current effective weight of each task's loss ``[T]`` (for reporting)."""
        return self.prior.clone()

    def after_step(self) -> None:
        """Project learned parameters back to their valid set after an optimiser step."""


class FixedWeights(TaskBalancer):
    def combine(
        self, losses: torch.Tensor, valid: torch.Tensor, shared: torch.Tensor | None
    ) -> torch.Tensor:
        return (self.prior * losses).sum()


class UncertaintyWeighting(TaskBalancer):
    scale: torch.Tensor

    def __init__(self, tasks: Sequence[TaskSpec]) -> None:
        super().__init__(tasks)
        self.log_var = nn.Parameter(torch.zeros(len(tasks)))
        scale = [1.0 if t.binary else 0.5 for t in tasks]
        self.register_buffer("scale", torch.tensor(scale) * self.prior)

    def combine(
        self, losses: torch.Tensor, valid: torch.Tensor, shared: torch.Tensor | None
    ) -> torch.Tensor:
        terms = self.scale * torch.exp(-self.log_var) * losses + 0.5 * self.log_var
        return torch.where(valid, terms, torch.zeros_like(terms)).sum()

    def weights(self) -> torch.Tensor:
        return (self.scale * torch.exp(-self.log_var)).detach()


class GradNorm(TaskBalancer):
    initial_loss: torch.Tensor

    def __init__(self, tasks: Sequence[TaskSpec], alpha: float = 1.5) -> None:
        super().__init__(tasks)
        if alpha < 0:
            raise ConfigError(f"GradNorm alpha must be >= 0, got {alpha}")
        self.alpha = alpha
        self.task_weight = nn.Parameter(self.prior.clone())
        self.register_buffer("initial_loss", torch.full((len(tasks),), float("nan")))

    def combine(
        self, losses: torch.Tensor, valid: torch.Tensor, shared: torch.Tensor | None
    ) -> torch.Tensor:
        total = (self.task_weight.detach() * losses).sum()
        if shared is None or not shared.requires_grad:
            return total
        idx = [int(t) for t in torch.nonzero(valid).flatten()]
        if not idx:
            return total
        with torch.no_grad():
            fresh = torch.isnan(self.initial_loss) & valid
            self.initial_loss[fresh] = losses.detach()[fresh]
        # ||d L_t / d W||, once per task; w_t enters linearly so d G_t / d w_t = that norm,
        # which gives the GradNorm gradient without a second-order graph.
        norms = torch.zeros_like(self.prior)
        for t in idx:
            (g,) = torch.autograd.grad(losses[t], shared, retain_graph=True, allow_unused=True)
            if g is not None:
                norms[t] = g.norm()
        with torch.no_grad():
            w = self.task_weight.detach()
            sel = torch.tensor(idx)
            ratio = losses.detach()[sel] / self.initial_loss[sel].clamp_min(1e-12)
            ratio = ratio / ratio.mean().clamp_min(1e-12)
            g_w = w[sel] * norms[sel]
            target = g_w.mean() * ratio.pow(self.alpha)
            grad = torch.zeros_like(w)
            grad[sel] = torch.sign(g_w - target) * norms[sel]
            self.task_weight.grad = grad
        return total

    def weights(self) -> torch.Tensor:
        return self.task_weight.detach().clone()

    def after_step(self) -> None:
        with torch.no_grad():
            w = self.task_weight.clamp_min(1e-3)
            self.task_weight.copy_(w * (self.prior.sum() / w.sum()))


def make_balancer(
    method: BalancingMethod, tasks: Sequence[TaskSpec], *, gradnorm_alpha: float = 1.5
) -> TaskBalancer:
    """The balancer for ``method`` (one of ``BALANCING_METHODS``)."""
    if method == "fixed":
        return FixedWeights(tasks)
    if method == "uncertainty":
        return UncertaintyWeighting(tasks)
    if method == "gradnorm":
        return GradNorm(tasks, alpha=gradnorm_alpha)
    raise ConfigError(f"balancing must be one of {BALANCING_METHODS}, got {method!r}")
