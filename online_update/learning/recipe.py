"""The learner recipe: one ``DriftrecConfig`` -> the ``LearnerConfig`` every process uses.

The live trainer (``stream/train_agent.py``) and ``driftrec eval`` both call
``learner_config`` on the settings, so the model an evaluation reports on is the model
the stream trains: same architecture, balancer, learning rates, step schedule, wide part
and normalisation (set them with ``DRIFTREC_LEARNER_*`` / ``DRIFTREC_MODEL_ARCH``; the
eval prints the resulting fingerprint, as does every checkpoint).

>>> from driftrec.core import DriftrecConfig
>>> cfg = learner_config(DriftrecConfig(learner_micro_batch=32), text_dim=8)
>>> cfg.micro_batch, cfg.model.text_dim, cfg.model.n_dense == len(DENSE_FEATURES)
(32, 8, True)
"""

from __future__ import annotations

from driftrec.core import DriftrecConfig
from driftrec.features import DENSE_FEATURES
from driftrec.models import ModelConfig
from driftrec.online_update.learning.learner import LearnerConfig

__all__ = ["learner_config"]


def learner_config(
    config: DriftrecConfig, text_dim: int, *, use_text: bool = True
) -> LearnerConfig:
    """The learner for ``config`` over ``text_dim``-wide text vectors (``use_text=False``:
    the no-text ablation, otherwise identical)."""
    model = ModelConfig(
        arch=config.model_arch,
        text_dim=text_dim,
        n_dense=len(DENSE_FEATURES),
        use_text=use_text,
        standardise_dense=config.learner_standardise,
        norm_horizon=config.learner_norm_horizon,
        wide=config.learner_wide,
        text_score=config.learner_text_score,
        seed=config.learner_seed,
    )
    return LearnerConfig(
        model=model,
        balancing=config.learner_balancing,
        gradnorm_alpha=config.learner_gradnorm_alpha,
        lr_head=config.learner_lr_head,
        lr_shared=config.learner_lr_shared,
        lr_embedding=config.learner_lr_embedding,
        lr_balance=config.learner_lr_balance,
        lr_wide=config.learner_lr_wide,
        micro_batch=config.learner_micro_batch,
        shared_every=config.learner_shared_every,
    )
