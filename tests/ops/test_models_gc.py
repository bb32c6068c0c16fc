"""`driftrec models gc [--dry-run]` against the real Redis, through the CLI's ``main``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
from driftrec.online_update.embeddings import RedisVectorStore
from driftrec.online_update.registry import ModelRegistry
from driftrec.ops import settings as settings_module
from driftrec.ops.cli import main

pytestmark = pytest.mark.integration


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch, redis_prefix: str, tmp_path: Path
) -> Iterator[tuple[str, Path]]:
    monkeypatch.setenv("DRIFTREC_REDIS_PREFIX", redis_prefix)
    monkeypatch.setenv("DRIFTREC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DRIFTREC_REGISTRY_KEEP_CANDIDATES", "1")
    monkeypatch.setenv("DRIFTREC_REGISTRY_KEEP_ACTIVE_S", "0")
    monkeypatch.setenv("DRIFTREC_EMBEDDING_GRACE_S", "0")
    settings_module.get_settings.cache_clear()
    yield redis_prefix, tmp_path
    settings_module.get_settings.cache_clear()


def test_gc_dry_run_shows_what_would_go_then_gc_deletes_it(
    env: tuple[str, Path], redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix, data_dir = env
    registry = ModelRegistry(redis_client, data_dir / "registry", f"{prefix}registry:")
    vectors = RedisVectorStore(redis_client, f"{prefix}emb:")
    for version in ("e1", "e2", "e3", "e4"):
        vectors.declare(version, encoder="h", dim=2, model="hashing:2", state="complete")
        vectors.put(version, ["i"], np.ones((1, 2), np.float32))
        vectors.set_active(version)  # e4 active, e3 previous
    artifact = data_dir / "ckpt.pt"
    artifact.write_bytes(b"weights")
    names = []
    for k, embedding in enumerate(["e1", "e1", "e2", "e4", "e4"]):
        info = registry.publish(
            artifact,
            parent=None,
            examples_seen=k,
            offsets={},
            metrics={},
            embedding_version=embedding,
            config_fingerprint="f",
        )
        names.append(info.version)
    registry.promote(names[0], reason="t")  # v1 previous (trained on e1), v4 active
    registry.promote(names[3], reason="t")

    assert main(["models", "gc", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would delete v000002 (artifact and Redis entries)" in out
    assert "would delete v000003" in out
    assert "would delete e2 (vectors and metadata)" in out
    assert "keep    e1  protected" in out  # the previous model was trained on it
    assert len(registry.list_versions()) == 5 and len(vectors.stored_versions()) == 4

    assert main(["models", "gc"]) == 0
    assert "deleted v000002" in capsys.readouterr().out
    assert [v.version for v in registry.list_versions()] == [names[0], names[3], names[4]]
    assert len(list((data_dir / "registry").iterdir())) == 3
    assert vectors.stored_versions() == ["e1", "e3", "e4"]
    assert registry.rollback().version == names[0]
