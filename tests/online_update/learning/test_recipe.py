"""The learner recipe: every learner setting reaches the ``LearnerConfig`` the trainer and
the eval build, and nothing else does."""

from __future__ import annotations

import dataclasses

import pytest
from driftrec.core import DriftrecConfig
from driftrec.features import DENSE_FEATURES
from driftrec.online_update.learning import LearnerConfig, learner_config

#: A non-default value for every learner setting.
CHANGED: dict[str, object] = {
    "model_arch": "ple",
    "learner_balancing": "gradnorm",
    "learner_gradnorm_alpha": 0.5,
    "learner_lr_head": 0.02,
    "learner_lr_shared": 0.02,
    "learner_lr_embedding": 0.02,
    "learner_lr_balance": 0.02,
    "learner_lr_wide": 0.02,
    "learner_micro_batch": 7,
    "learner_shared_every": 3,
    "learner_wide": False,
    "learner_text_score": False,
    "learner_standardise": False,
    "learner_norm_horizon": 77,
    "learner_seed": 5,
}


def test_every_learner_setting_is_covered_here() -> None:
    settings = {n for n in DriftrecConfig.model_fields if n.startswith("learner_")}
    assert settings | {"model_arch"} == set(CHANGED)


@pytest.mark.parametrize(("name", "value"), CHANGED.items())
def test_each_setting_changes_the_learner_and_its_fingerprint(name: str, value: object) -> None:
    base = learner_config(DriftrecConfig(), text_dim=16)
    changed = learner_config(DriftrecConfig(**{name: value}), text_dim=16)  # type: ignore[arg-type]
    assert changed.fingerprint() != base.fingerprint()
    flat = {
        **{f.name: getattr(changed, f.name) for f in dataclasses.fields(changed)},
        **{f.name: getattr(changed.model, f.name) for f in dataclasses.fields(changed.model)},
    }
    field = {
        "model_arch": "arch",
        "learner_balancing": "balancing",
        "learner_standardise": "standardise_dense",
    }.get(name, name.removeprefix("learner_"))
    assert flat[field] == value


def test_defaults_are_the_learner_defaults_over_the_stream_features() -> None:
    config = learner_config(DriftrecConfig(), text_dim=384)
    assert config == LearnerConfig()  # nothing of the recipe lives only in the settings
    assert config.model.n_dense == len(DENSE_FEATURES)
    no_text = learner_config(DriftrecConfig(), text_dim=384, use_text=False)
    assert no_text == dataclasses.replace(
        config, model=dataclasses.replace(config.model, use_text=False)
    )
