"""The multi-task model: encoder -> backbone (shared-bottom, MMoE or PLE) -> one tower per task.

``MultiTaskModel(config)(batch)`` returns raw outputs ``[B, T]`` (columns in
``config.tasks`` order): logits for binary tasks, the predicted label value for
regression tasks. ``driftrec.models.losses.predict`` turns them into predictions.

Beside the deep towers sits a wide part (``driftrec.models.wide``): per-task id biases
and a linear term over the dense inputs, added to the towers' output. The dense inputs
reach both parts standardised by running statistics (buffers of the model, moved only
by ``observe_batch``, which the learner calls after learning from a batch; so are the
statistics of the wide part's text score).

Parameters fall into four update groups (``parameter_groups``): ``"embedding"``
(sparse id tables), ``"shared"`` (text projection, bottom, shared experts),
``"head"`` (gates, task-specific experts, towers) and ``"wide"`` (the wide part, empty
without one). The online learner updates heads and the wide part on every step and the
rest on a slower cadence.

>>> import torch
>>> from driftrec.models.config import ModelConfig
>>> model = MultiTaskModel(ModelConfig(arch="ple", text_dim=8, n_dense=0, user_buckets=10))
>>> sorted(model.parameter_groups())
['embedding', 'head', 'shared', 'wide']
"""

from __future__ import annotations

import torch
from driftrec.models.batch import Batch
from driftrec.models.config import ModelConfig
from driftrec.models.encoders import FeatureEncoder
from driftrec.models.layers import BatchedLinear, BatchedMLP, CGCLayer
from driftrec.models.wide import RunningStandardiser, WidePart
from torch import nn

__all__ = ["GatedExperts", "MultiTaskModel", "SharedBottom"]


class SharedBottom(nn.Module):
    """Caruana's hard parameter sharing: one MLP feeds every tower."""

    def __init__(self, in_dim: int, config: ModelConfig) -> None:
        super().__init__()
        self.n_tasks = config.n_tasks
        self.bottom = BatchedMLP(1, in_dim, config.bottom_sizes, final_activation=True)
        self.out_dim = self.bottom.out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h: torch.Tensor = self.bottom(x)  # [1, B, H]
        return h.expand(self.n_tasks, -1, -1)

    def groups(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return list(self.parameters()), []

    def last_shared(self) -> BatchedLinear:
        return self.bottom.last


class GatedExperts(nn.Module):
    """MMoE (Ma et al. 2018: shared experts, one softmax gate per task) or PLE (Tang et
    al. 2020: stacked CGC layers with shared and task-specific experts)."""

    def __init__(self, in_dim: int, config: ModelConfig) -> None:
        super().__init__()
        t = config.n_tasks
        if config.arch == "mmoe":
            specs = [(config.n_experts, 0, False)]
        else:
            n = config.ple_layers
            specs = [
                (config.ple_shared_experts, config.ple_task_experts, i < n - 1) for i in range(n)
            ]
        layers = []
        for n_shared, n_task, shared_gate in specs:
            layer = CGCLayer(
                in_dim, t, n_shared, n_task, config.expert_sizes, shared_gate=shared_gate
            )
            layers.append(layer)
            in_dim = layer.out_dim
        self.layers = nn.ModuleList(layers)
        self.out_dim = in_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def _cgc(self) -> list[CGCLayer]:
        return [layer for layer in self.layers if isinstance(layer, CGCLayer)]

    def groups(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        shared: list[torch.Tensor] = []
        head: list[torch.Tensor] = []
        for layer in self._cgc():
            shared += list(layer.shared_experts.parameters())
            head += list(layer.gates.parameters())
            if layer.task_experts is not None:
                head += list(layer.task_experts.parameters())
        return shared, head

    def last_shared(self) -> BatchedLinear:
        return self._cgc()[-1].shared_experts.last


class MultiTaskModel(nn.Module):
    """Encoder, backbone and towers built from one ``ModelConfig``, seeded by ``config.seed``."""

    label_offset: torch.Tensor
    label_count: torch.Tensor

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        # Fork the global RNG so building a model neither reads nor disturbs it.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.encoder = FeatureEncoder(config)
            d = self.encoder.out_dim
            backbone: SharedBottom | GatedExperts = (
                SharedBottom(d, config)
                if config.arch == "shared-bottom"
                else GatedExperts(d, config)
            )
            self.backbone = backbone
            self.towers = BatchedMLP(
                config.n_tasks, backbone.out_dim, (*config.tower_sizes, 1), final_activation=False
            )
            # Built last (and zero-initialised): the deep part's initial weights do not
            # depend on whether the model has a wide part.
            self.wide = WidePart(config) if config.wide else None
        self.dense_norm = (
            RunningStandardiser(config.n_dense, horizon=config.norm_horizon)
            if config.standardise_dense
            else None
        )
        # Regression towers learn a residual around a running mean of their label: a tower
        # that starts at 0 against labels around 3 would send huge early gradients into
        # the shared layers and embeddings of the observed (e.g. clicked) rows only.
        self.register_buffer("label_offset", torch.zeros(config.n_tasks))
        self.register_buffer("label_count", torch.zeros(config.n_tasks))

    def forward(self, batch: Batch) -> torch.Tensor:
        dense = batch.dense if self.dense_norm is None else self.dense_norm(batch.dense)
        h = self.backbone(self.encoder(batch, dense))  # [T, B, H]
        out: torch.Tensor = self.towers(h).squeeze(-1).transpose(0, 1)  # [B, T]
        if self.wide is not None:
            out = out + self.wide(batch, dense)
        return out + self.label_offset

    def observe_dense(self, dense: torch.Tensor) -> None:
        """Merge a batch's raw dense inputs into the running statistics (no-op without)."""
        if self.dense_norm is not None:
            self.dense_norm.observe(dense)

    def observe_batch(self, batch: Batch) -> None:
        """``observe_dense(batch.dense)`` and, with a text score, merge its scores too."""
        self.observe_dense(batch.dense)
        if self.wide is not None and self.wide.text_score is not None:
            self.wide.text_score.observe(batch)

    @torch.no_grad()
    def observe_labels(
        self, sums: torch.Tensor, counts: torch.Tensor, horizon: int = 10_000
    ) -> None:
        """Move the regression offsets towards the label mean of a batch (``sums`` and
        ``counts`` of observed labels per task): a running mean over the last ~``horizon``
        rows. Binary tasks keep offset 0."""
        regression = torch.tensor([not t.binary for t in self.config.tasks])
        counts = torch.where(regression, counts, torch.zeros_like(counts))
        self.label_count += counts
        rate = counts / self.label_count.clamp(min=1.0, max=float(horizon))
        means = sums / counts.clamp_min(1.0)
        self.label_offset += rate.clamp(max=1.0) * (means - self.label_offset)

    def parameter_groups(self) -> dict[str, list[torch.Tensor]]:
        """Disjoint parameter lists covering every parameter once."""
        enc = self.encoder
        embedding: list[torch.Tensor] = [enc.user.weight, enc.item.weight, enc.category.weight]
        shared = [p for m in (enc.text_proj, enc.interest_proj) if m for p in m.parameters()]
        backbone_shared, backbone_head = self.backbone.groups()
        return {
            "embedding": embedding,
            "shared": shared + backbone_shared,
            "head": backbone_head + list(self.towers.parameters()),
            "wide": [] if self.wide is None else list(self.wide.parameters()),
        }

    def last_shared_weight(self) -> nn.Parameter:
        """The last shared layer's weight: GradNorm measures task gradients here."""
        return self.backbone.last_shared().weight
