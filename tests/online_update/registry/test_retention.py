"""Registry retention against the real Redis: bounded disk and keys, rollback still works.

``test_300_checkpoints_stay_bounded`` runs 300 checkpoints of a small real model through
``publish`` (retention on), promoting most of them and rolling back now and then, and
checks after every one that the artifact files and the registry's Redis keys stay under
the bounds the policy implies, then that rolling back to the previous version loads.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from driftrec.models import ModelConfig
from driftrec.models.synthetic import StreamSpec, SyntheticStream
from driftrec.online_update.learning import LearnerConfig, OnlineLearner, load_checkpoint
from driftrec.online_update.learning.checkpoint import save_checkpoint
from driftrec.online_update.registry import (
    ModelRegistry,
    RegistryError,
    RetentionPolicy,
    VersionInfo,
)
from driftrec.online_update.registry.retention import plan

CFG = LearnerConfig(
    model=ModelConfig(text_dim=8, n_dense=3, user_buckets=50, item_buckets=50, category_buckets=5),
    metric_window=64,
)


def _publish(
    registry: ModelRegistry, learner: OnlineLearner, path: Path, parent: str | None
) -> VersionInfo:
    save_checkpoint(learner, path, embedding_version="emb-1")
    return registry.publish(
        path,
        parent=parent,
        examples_seen=learner.examples_seen,
        offsets={},
        metrics={},
        embedding_version="emb-1",
        config_fingerprint=learner.config.fingerprint(),
    )


@pytest.mark.integration
def test_300_checkpoints_stay_bounded(
    redis_client: redis.Redis, redis_prefix: str, tmp_path: Path
) -> None:
    # keep_active_s=0: checkpoints come faster here than any real period; the period
    # itself is tested with a moved clock below.
    policy = RetentionPolicy(keep_candidates=4, keep_active_s=0)
    registry = ModelRegistry(redis_client, tmp_path / "artifacts", redis_prefix, retention=policy)
    stream = SyntheticStream(StreamSpec(text_dim=8, n_dense=3, n_users=20, n_items=30))
    learner = OnlineLearner(CFG)
    rng = random.Random(3)
    parent = None
    most_files = most_keys = rollbacks = 0
    for k in range(300):
        if k % 5 == 0:  # learning dominates the run time; the checkpoints are what is tested
            learner.learn_many(stream.batch(32))
        info = _publish(registry, learner, tmp_path / "checkpoint.pt", parent)
        if rng.random() < 0.7:
            registry.promote(info.version, reason="test")
            parent = info.version
        elif k > 10 and rng.random() < 0.2 and registry.history():
            registry.rollback(reason="test")
            rollbacks += 1
        files = list((tmp_path / "artifacts").iterdir())
        keys = list(redis_client.scan_iter(match=f"{redis_prefix}*", count=1000))
        most_files, most_keys = max(most_files, len(files)), max(most_keys, len(keys))

    assert rollbacks > 0
    assert int(redis_client.get(f"{redis_prefix}seq") or 0) == 300
    # active + previous + the 4 newest
    assert most_files <= 6, most_files
    # one hash per version, plus seq, index, active, history and the events stream (which
    # is bounded by its own length: test_versions.py)
    assert most_keys <= most_files + 5, (most_keys, most_files)
    versions = registry.list_versions()
    assert len(versions) == len(list((tmp_path / "artifacts").iterdir()))
    assert {Path(v.artifact) for v in versions} == set((tmp_path / "artifacts").iterdir())
    assert redis_client.llen(f"{redis_prefix}history") <= len(versions)

    active, previous = registry.active_version_name(), registry.history()[0]
    assert registry.rollback(reason="after retention").version == previous
    restored, _ = load_checkpoint(registry.open_artifact(previous))
    assert restored.examples_seen > 0
    assert registry.get(active).status == "rejected"


@pytest.mark.integration
def test_active_and_previous_are_never_deleted(
    redis_client: redis.Redis, redis_prefix: str, tmp_path: Path
) -> None:
    registry = ModelRegistry(redis_client, tmp_path / "artifacts", redis_prefix)
    learner = OnlineLearner(CFG)
    first = _publish(registry, learner, tmp_path / "c.pt", None)
    second = _publish(registry, learner, tmp_path / "c.pt", first.version)
    registry.promote(first.version, reason="t")
    registry.promote(second.version, reason="t")
    for _ in range(3):
        _publish(registry, learner, tmp_path / "c.pt", second.version)
    strict = RetentionPolicy(keep_candidates=1, keep_active_s=0)
    later = datetime.now(UTC) + timedelta(days=1)
    dry = registry.collect_garbage(strict, dry_run=True, now=later)
    assert dry.keep == {"v000002": "active", "v000001": "previous", "v000005": "newest"}
    assert dry.delete == ["v000003", "v000004"]
    assert len(registry.list_versions()) == 5  # a dry run deletes nothing
    done = registry.collect_garbage(strict, now=later)
    assert done.delete == ["v000003", "v000004"]
    assert [v.version for v in registry.list_versions()] == ["v000001", "v000002", "v000005"]
    assert len(list((tmp_path / "artifacts").iterdir())) == 3
    with pytest.raises(RegistryError):
        registry.get("v000003")
    # a parent that retention deleted is still a version this registry numbered
    assert _publish(registry, learner, tmp_path / "c.pt", "v000003").parent == "v000003"
    with pytest.raises(RegistryError, match="not in this registry"):
        _publish(registry, learner, tmp_path / "c.pt", "v000999")
    assert registry.rollback().version == first.version


def test_plan_keeps_versions_active_within_the_period() -> None:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    rows = [(f"v{k:06d}", now - timedelta(minutes=10 * k)) for k in range(1, 8)]
    found = plan(
        rows,
        active=None,
        previous=None,
        policy=RetentionPolicy(keep_candidates=1, keep_active_s=1800),
        now=now,
    )
    assert list(found.keep) == ["v000007", "v000001", "v000002", "v000003"]
    assert found.delete == ["v000004", "v000005", "v000006"]
