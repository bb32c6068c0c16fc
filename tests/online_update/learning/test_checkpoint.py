"""Checkpoint files: atomic, code-free, self-describing, strict about configs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from driftrec.core.errors import DriftrecError
from driftrec.models import ModelConfig
from driftrec.models.synthetic import StreamSpec, SyntheticStream
from driftrec.online_update.learning import checkpoint as ckpt
from driftrec.online_update.learning.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_for_prediction,
    read_extra,
    read_meta,
    save_checkpoint,
)
from driftrec.online_update.learning.drift import Alarm
from driftrec.online_update.learning.learner import LearnerConfig, OnlineLearner

CFG = LearnerConfig(
    model=ModelConfig(text_dim=8, n_dense=3, user_buckets=50, item_buckets=50, category_buckets=5),
    balancing="uncertainty",
    metric_window=64,
)


@pytest.fixture
def learner() -> OnlineLearner:
    stream = SyntheticStream(StreamSpec(text_dim=8, n_dense=3, n_users=20, n_items=30))
    learner = OnlineLearner(CFG)
    for _ in range(3):
        learner.learn_many(stream.batch(40))
    return learner


def test_file_is_plain_tensors_and_json(learner: OnlineLearner, tmp_path: Path) -> None:
    path = tmp_path / "a" / "model.pt"
    meta = save_checkpoint(
        learner, path, offsets={"driftrec.examples:3": 1200}, embedding_version="minilm@v2"
    )
    payload = torch.load(path, weights_only=True)  # no pickled code or river objects
    assert set(payload) == {
        "meta",
        "model",
        "balancer",
        "optimizers",
        "pending",
        "metrics",
        "extra",
    }
    stored = json.loads(payload["meta"])
    json.dumps(stored, allow_nan=False)  # strict JSON: undefined metrics are null
    assert stored["offsets"] == {"driftrec.examples:3": 1200}
    assert stored["embedding_version"] == "minilm@v2"
    assert stored["examples_seen"] == 120 and stored["fingerprint"] == CFG.fingerprint()
    assert LearnerConfig.from_dict(stored["config"]) == CFG
    assert read_meta(path) == meta
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temp file left


def test_extra_state_travels_with_the_checkpoint(learner: OnlineLearner, tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    ids = torch.tensor([7, -3, 2**62], dtype=torch.int64)
    save_checkpoint(learner, path, extra={"applied": ids})
    assert torch.equal(read_extra(path)["applied"], ids)
    save_checkpoint(learner, path)
    assert read_extra(path) == {}


def test_load_without_config_uses_the_stored_one(learner: OnlineLearner, tmp_path: Path) -> None:
    learner.drift.alarms.append(Alarm("adwin", "click", 77))
    save_checkpoint(learner, tmp_path / "m.pt")
    restored, _ = load_checkpoint(tmp_path / "m.pt")
    assert restored.config == CFG and restored.batches_seen == 3
    assert restored.alarms == [Alarm("adwin", "click", 77)]
    assert restored.summary() == pytest.approx(learner.summary(), nan_ok=True)


@pytest.mark.parametrize("arch", ["shared-bottom", "mmoe", "ple"])
def test_a_learner_loaded_for_prediction_predicts_what_the_saved_one_did(
    arch: str, tmp_path: Path
) -> None:
    config = dataclasses.replace(CFG, model=dataclasses.replace(CFG.model, arch=arch))
    stream = SyntheticStream(StreamSpec(text_dim=8, n_dense=3, n_users=20, n_items=30))
    learner = OnlineLearner(config)
    for _ in range(3):
        learner.learn_many(stream.batch(40))
    save_checkpoint(learner, tmp_path / "m.pt")
    loaded, meta = load_for_prediction(tmp_path / "m.pt")
    assert meta.fingerprint == config.fingerprint()
    assert not [
        n for n, t in [*loaded.model.named_parameters(), *loaded.model.named_buffers()] if t.is_meta
    ]
    probe = stream.batch(64)
    expected, got = learner.predict_many(probe), loaded.predict_many(probe)
    for task in config.model.task_names:
        np.testing.assert_array_equal(got[task], expected[task])


def test_a_checkpoint_whose_model_does_not_fit_its_config_is_refused(
    learner: OnlineLearner, tmp_path: Path
) -> None:
    save_checkpoint(learner, tmp_path / "m.pt")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    del payload["model"]["wide.bias.weight"]
    torch.save(payload, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="does not fit its config"):
        load_for_prediction(tmp_path / "m.pt")


def test_a_checkpoint_from_before_the_text_score_still_loads_as_the_model_it_was(
    tmp_path: Path,
) -> None:
    # Such a checkpoint's config has no "text_score" key: written here by a learner
    # without the score, whose config (and fingerprint) leaves the field out.
    old = dataclasses.replace(CFG, model=dataclasses.replace(CFG.model, text_score=False))
    stream = SyntheticStream(StreamSpec(text_dim=8, n_dense=3, n_users=20, n_items=30))
    learner = OnlineLearner(old)
    learner.learn_many(stream.batch(40))
    save_checkpoint(learner, tmp_path / "old.pt")
    stored = torch.load(tmp_path / "old.pt", weights_only=True)
    assert "text_score" not in json.loads(stored["meta"])["config"]["model"]
    restored, meta = load_checkpoint(tmp_path / "old.pt")
    assert restored.config == old and meta.fingerprint == old.fingerprint()
    assert not any("text_score" in k for k in restored.model.state_dict())
    probe = stream.batch(16)
    assert restored.predict_many(probe)["click"] == pytest.approx(
        learner.predict_many(probe)["click"]
    )


def test_a_failed_write_leaves_the_previous_checkpoint(
    learner: OnlineLearner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "m.pt"
    first = save_checkpoint(learner, path)

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(learner, path)
    assert read_meta(path) == first
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_unreadable_files_raise_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint"):
        read_meta(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(tmp_path / "junk.pt")
    assert issubclass(CheckpointError, DriftrecError)


def test_code_in_a_pickle_is_refused(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("pwned",))

    torch.save({"meta": "{}", "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError):
        read_meta(tmp_path / "evil.pt")


def test_bad_offsets_are_refused(learner: OnlineLearner, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="offsets"):
        save_checkpoint(learner, tmp_path / "m.pt", offsets={"t:0": "12"})  # type: ignore[dict-item]


def test_tampered_state_is_a_checkpoint_error(learner: OnlineLearner, tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    save_checkpoint(learner, path)
    payload = torch.load(path, weights_only=True)
    payload["model"].pop(next(iter(payload["model"])))
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_checkpoint(path)


def test_metric_windows_continue_exactly(learner: OnlineLearner, tmp_path: Path) -> None:
    save_checkpoint(learner, tmp_path / "m.pt")
    restored, _ = load_checkpoint(tmp_path / "m.pt")
    batch = SyntheticStream(StreamSpec(text_dim=8, n_dense=3, seed=9)).batch(50)
    a, b = learner.learn_many(batch), restored.learn_many(batch)
    assert b.metrics == pytest.approx(a.metrics, nan_ok=True)
    assert all(np.array_equal(a.predictions[k], b.predictions[k]) for k in a.predictions)
    assert dataclasses.asdict(read_meta(tmp_path / "m.pt"))["batches_seen"] == 3
