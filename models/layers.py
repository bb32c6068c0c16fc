"""Batched building blocks: many small MLPs (experts, towers) evaluated as one ``bmm``.

Per-expert and per-task Python loops dominate the step time of a small model on a
CPU, so every group of parallel MLPs is one weight tensor ``[n, in, out]`` and
activations travel as ``[n, B, features]``.

>>> import torch
>>> layer = BatchedLinear(3, 5, 2)
>>> layer(torch.zeros(4, 5)).shape  # one input shared by the 3 groups
torch.Size([3, 4, 2])
>>> layer(torch.zeros(3, 4, 5)).shape  # one input per group
torch.Size([3, 4, 2])
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["BatchedLinear", "BatchedMLP", "CGCLayer"]


class BatchedLinear(nn.Module):
    """``n`` independent linear maps; input ``[B, in]`` (shared) or ``[n, B, in]``."""

    def __init__(self, n: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)  # nn.Linear's default init, per group
        self.weight = nn.Parameter(torch.empty(n, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n, 1, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            return torch.matmul(x, self.weight) + self.bias
        return torch.baddbmm(self.bias, x, self.weight)


class BatchedMLP(nn.Module):
    """``n`` MLPs of the same shape; ReLU between layers (and after the last if asked)."""

    def __init__(
        self, n: int, in_dim: int, sizes: Sequence[int], *, final_activation: bool
    ) -> None:
        super().__init__()
        dims = [in_dim, *sizes]
        self.layers = nn.ModuleList(BatchedLinear(n, a, b) for a, b in itertools.pairwise(dims))
        self.final_activation = final_activation
        self.out_dim = dims[-1]

    @property
    def last(self) -> BatchedLinear:
        layer = self.layers[-1]
        if not isinstance(layer, BatchedLinear):  # pragma: no cover - built above
            raise TypeError("BatchedMLP holds only BatchedLinear layers")
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last or self.final_activation:
                x = torch.relu(x)
        return x


class CGCLayer(nn.Module):
    """One Customized Gate Control layer (PLE, Tang et al. 2020); MMoE is the special case
    with no task-specific experts and no shared gate.

    Input: ``[B, D]`` (first layer) or ``[T + 1, B, D]`` (per-task groups, shared group
    last). Output: ``[G, B, H]`` with ``G = T + 1`` when ``shared_gate`` else ``T``.
    """

    def __init__(
        self,
        in_dim: int,
        n_tasks: int,
        n_shared: int,
        n_task_experts: int,
        expert_sizes: Sequence[int],
        *,
        shared_gate: bool,
    ) -> None:
        super().__init__()
        self.n_tasks = n_tasks
        self.n_task_experts = n_task_experts
        self.shared_gate = shared_gate
        self.shared_experts = BatchedMLP(n_shared, in_dim, expert_sizes, final_activation=True)
        self.task_experts = (
            BatchedMLP(n_tasks * n_task_experts, in_dim, expert_sizes, final_activation=True)
            if n_task_experts
            else None
        )
        n_experts = n_shared + n_tasks * n_task_experts
        n_gates = n_tasks + int(shared_gate)
        self.gates = BatchedLinear(n_gates, in_dim, n_experts)
        # Task t may mix its own experts and the shared ones; the shared gate mixes all.
        # Not saved, so built on the CPU even when a loader builds the model on ``meta``.
        mask = torch.full((n_gates, 1, n_experts), float("-inf"), device="cpu")
        mask[:, :, n_tasks * n_task_experts :] = 0.0
        for t in range(n_tasks):
            mask[t, :, t * n_task_experts : (t + 1) * n_task_experts] = 0.0
        if shared_gate:
            mask[n_tasks] = 0.0
        self.register_buffer("gate_mask", mask, persistent=False)
        self.out_dim = self.shared_experts.out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            shared_in, task_in, gate_in = x, x, x
        else:
            shared_in = x[-1]
            task_in = x[:-1].repeat_interleave(self.n_task_experts, dim=0)
            gate_in = x if self.shared_gate else x[:-1]
        outs = [self.shared_experts(shared_in)]
        if self.task_experts is not None:
            outs.insert(0, self.task_experts(task_in))
        experts = torch.cat(outs) if len(outs) > 1 else outs[0]  # [E, B, H]
        weights = torch.softmax(self.gates(gate_in) + self.gate_mask, dim=-1)  # [G, B, E]
        return torch.bmm(weights.transpose(0, 1), experts.transpose(0, 1)).transpose(0, 1)
