"""``ModelConfig``: every hyper-parameter of a multi-task model, frozen and fingerprinted.

Model constructors take one of these rather than a dozen arguments; a
checkpoint stores it (``to_dict``) and refuses to load into a model whose
``fingerprint`` differs.

>>> cfg = ModelConfig(arch="ple", n_dense=4)
>>> ModelConfig.from_dict(cfg.to_dict()) == cfg
True
>>> cfg.fingerprint() == ModelConfig(arch="mmoe", n_dense=4).fingerprint()
False
>>> older = {k: v for k, v in cfg.to_dict().items() if k != "text_score"}  # before the field
>>> ModelConfig.from_dict(older).text_score, ModelConfig.from_dict(older).to_dict() == older
(False, True)
>>> ModelConfig(arch="transformer")
Traceback (most recent call last):
...
driftrec.core.errors.ConfigError: ModelConfig.arch must be one of ('shared-bottom', 'mmoe', 'ple'), got 'transformer'
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from typing import Any, Literal

from driftrec.core import ConfigError
from driftrec.models.tasks import TASKS, TaskSpec, validate_tasks

__all__ = ["ARCHS", "Arch", "ModelConfig", "fingerprint"]

#: Fields added after checkpoints existed, with the value that gives the model those
#: checkpoints were written by: ``from_dict`` fills a missing one with it and ``to_dict``
#: leaves a field at that value out, so an older checkpoint's config (and fingerprint)
#: still reads as the model it was.
_ADDED: dict[str, object] = {"text_score": False}

Arch = Literal["shared-bottom", "mmoe", "ple"]
ARCHS: tuple[str, ...] = ("shared-bottom", "mmoe", "ple")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and sizes of a multi-task model (defaults: small, fast on 2 CPU cores)."""

    arch: Arch = "mmoe"
    tasks: tuple[TaskSpec, ...] = TASKS
    #: Hashed-id table sizes; ids are reduced modulo these.
    user_buckets: int = 1 << 16
    item_buckets: int = 1 << 16
    category_buckets: int = 1024
    #: Width of the user, item and category embeddings.
    id_dim: int = 16
    #: Std of the initial id embeddings: small, so an unseen item is scored by its text.
    id_init_std: float = 0.01
    #: Width of ``Batch.text`` / ``Batch.interest`` (384 = all-MiniLM-L6-v2).
    text_dim: int = 384
    text_proj_dim: int = 32
    #: One projection for item text and user interest (same embedding space) or one each.
    share_text_projection: bool = True
    #: False = ablation: ``text``, ``has_text`` and ``interest`` are ignored.
    use_text: bool = True
    #: Wide part only: a per-task weight on the standardised ``text . interest`` score
    #: (``models.wide.TextScore``); ignored without ``use_text`` or ``wide``.
    text_score: bool = True
    #: Add user*item and interest*text element-wise products to the features.
    interactions: bool = True
    #: len(stream.features.DENSE_FEATURES) today; models/ must not import driftrec.stream/.
    n_dense: int = 12
    #: Hidden sizes of the shared bottom (arch "shared-bottom").
    bottom_sizes: tuple[int, ...] = (128, 64)
    #: Hidden sizes of every expert (MMoE and PLE); the last is the expert output width.
    expert_sizes: tuple[int, ...] = (64,)
    #: MMoE experts, all shared.
    n_experts: int = 4
    #: PLE: CGC layers, shared experts per layer, task-specific experts per task per layer.
    ple_layers: int = 2
    ple_shared_experts: int = 2
    ple_task_experts: int = 1
    tower_sizes: tuple[int, ...] = (32,)
    #: Standardise ``Batch.dense`` with running statistics (``models.wide``) before use.
    standardise_dense: bool = True
    #: Rows the running dense statistics average over (a running mean beyond that).
    norm_horizon: int = 100_000
    #: A wide (first-order) part per task: id biases + a linear term over the dense inputs.
    wide: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ConfigError(f"ModelConfig.arch must be one of {ARCHS}, got {self.arch!r}")
        validate_tasks(self.tasks)
        positive = (
            "user_buckets",
            "item_buckets",
            "category_buckets",
            "id_dim",
            "text_dim",
            "text_proj_dim",
            "n_experts",
            "ple_layers",
            "ple_shared_experts",
            "norm_horizon",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"ModelConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.n_dense < 0 or self.ple_task_experts < 0 or self.id_init_std < 0:
            raise ConfigError("ModelConfig.n_dense, ple_task_experts and id_init_std must be >= 0")
        for name in ("bottom_sizes", "expert_sizes", "tower_sizes"):
            sizes = getattr(self, name)
            if not sizes or any(s < 1 for s in sizes):
                raise ConfigError(f"ModelConfig.{name} needs at least one size >= 1, got {sizes}")

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (tuples become lists, tasks become dicts)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _ADDED and value == _ADDED[f.name]:
                continue
            if f.name == "tasks":
                value = [t.to_dict() for t in value]
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of ``to_dict``; unknown keys raise ``ConfigError``."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown ModelConfig fields {sorted(unknown)}")
        values: dict[str, Any] = {k: v for k, v in _ADDED.items() if k not in data}
        for key, value in data.items():
            if key == "tasks":
                value = tuple(TaskSpec(**t) for t in value)
            elif isinstance(value, list):
                value = tuple(value)
            values[key] = value
        return cls(**values)

    def fingerprint(self) -> str:
        return fingerprint(self.to_dict())


def fingerprint(data: dict[str, Any]) -> str:
    """Short stable hash of a JSON-able config dict."""
    blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
