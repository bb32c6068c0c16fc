"""The model registry against the real Redis `driftrec up` started (no mocks).

Each test gets its own key prefix and artifact directory and deletes its keys afterwards.
The pure promotion rule is tested without Redis at the end.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import threading
from pathlib import Path

import pytest
import redis
from driftrec.core.errors import DriftrecError, InfraError
from driftrec.online_update.registry.promotion import (
    ActiveChange,
    ActiveSubscription,
    PromotionPolicy,
    decide,
)
from driftrec.online_update.registry.versions import ModelRegistry, RegistryError, VersionInfo
from driftrec.ops.models_cmd import models_list, models_promote, models_rollback, models_show
from driftrec.ops.settings import Settings
from redis.backoff import NoBackoff
from redis.retry import Retry

integration = pytest.mark.integration


@pytest.fixture
def client(redis_client: redis.Redis) -> redis.Redis:
    return redis_client  # keys under redis_prefix are removed by that fixture


@pytest.fixture
def registry(client: redis.Redis, redis_prefix: str, tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(client, tmp_path / "artifacts", prefix=redis_prefix)


def checkpoint(tmp_path: Path, tag: int) -> Path:
    """A small artifact with real bytes; the registry never looks inside."""
    path = tmp_path / f"ckpt-{tag}.pt"
    path.write_bytes(bytes(range(256)) * 4 + f"checkpoint {tag}".encode())
    return path


def publish(
    registry: ModelRegistry,
    tmp_path: Path,
    tag: int,
    auc: float | None = 0.7,
    parent: str | None = None,
) -> VersionInfo:
    return registry.publish(
        checkpoint(tmp_path, tag),
        parent=parent,
        examples_seen=1000 * tag,
        offsets={"driftrec.examples:0": 100 * tag},
        metrics={"click.auc": auc, "dwell.mae": 3.0},
        embedding_version="emb-1",
        config_fingerprint="cfg-abc",
    )


def drain(sub: ActiveSubscription, timeout: float = 0.5) -> list[ActiveChange]:
    """Every change announced so far (stops after ``timeout`` seconds of silence)."""
    out = []
    while (change := sub.poll(timeout)) is not None:
        out.append(change)
    return out


# ---- publishing and reading ---------------------------------------------------------------


@integration
def test_publish_copies_artifact_and_stores_json_metadata(
    registry: ModelRegistry, client: redis.Redis, redis_prefix: str, tmp_path: Path
) -> None:
    one = publish(registry, tmp_path, 1)
    two = publish(registry, tmp_path, 2, parent=one.version)
    assert (one.version, two.version) == ("v000001", "v000002")
    assert two.parent == "v000001" and one.status == two.status == "candidate"
    assert one.created_at.tzinfo is not None and one.created_at <= two.created_at

    source = checkpoint(tmp_path, 1).read_bytes()
    artifact = Path(one.artifact)
    assert artifact.parent == (tmp_path / "artifacts").resolve()
    assert artifact.read_bytes() == source
    assert one.sha256 == hashlib.sha256(source).hexdigest()
    # Only the two artifacts: no temp files left behind by the atomic copy.
    assert sorted(p.name for p in (tmp_path / "artifacts").iterdir()) == sorted(
        [Path(one.artifact).name, Path(two.artifact).name]
    )

    # Metadata is plain JSON in Redis, never pickle.
    meta = json.loads(client.hget(f"{redis_prefix}version:v000001", "meta"))
    assert meta["sha256"] == one.sha256 and meta["offsets"] == {"driftrec.examples:0": 100}
    assert client.zrange(f"{redis_prefix}index", 0, -1, withscores=True) == [
        (b"v000001", 1.0),
        (b"v000002", 2.0),
    ]
    assert registry.get("v000001") == one and registry.get("2") == two == registry.get("v2")
    assert registry.list_versions() == [one, two]
    assert registry.active() is None and registry.active_version_name() is None


@integration
def test_publish_rejects_bad_input_without_leaving_files(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    with pytest.raises(RegistryError, match="no checkpoint file"):
        registry.publish(
            tmp_path / "nope.pt",
            parent=None,
            examples_seen=1,
            offsets={},
            metrics={},
            embedding_version="",
            config_fingerprint="",
        )
    with pytest.raises(RegistryError, match="parent version v000042"):
        publish(registry, tmp_path, 1, parent="v000042")
    with pytest.raises(RegistryError, match="cannot publish"):
        registry.publish(
            checkpoint(tmp_path, 1),
            parent=None,
            examples_seen=1,
            offsets={"p0": "not an offset"},  # type: ignore[dict-item]
            metrics={},
            embedding_version="",
            config_fingerprint="",
        )
    assert registry.list_versions() == []
    assert not (tmp_path / "artifacts").exists() or not any((tmp_path / "artifacts").iterdir())
    with pytest.raises(RegistryError, match="no version v000007"):
        registry.get("v000007")


@integration
def test_nan_metric_is_stored_as_none(registry: ModelRegistry, tmp_path: Path) -> None:
    info = publish(registry, tmp_path, 1, auc=math.nan)
    assert info.metrics["click.auc"] is None
    assert registry.get(info.version) == info


@integration
def test_works_with_a_decoding_client(
    live_settings: Settings, client: redis.Redis, redis_prefix: str, tmp_path: Path
) -> None:
    text_client = redis.Redis.from_url(live_settings.redis_url, decode_responses=True)
    registry = ModelRegistry(text_client, tmp_path / "a", prefix=redis_prefix)
    one, two = publish(registry, tmp_path, 1), publish(registry, tmp_path, 2)
    registry.promote(one.version, reason="t")
    registry.promote(two.version, reason="t")
    assert registry.rollback().version == one.version
    assert [v.status for v in registry.list_versions()] == ["active", "rejected"]
    text_client.close()


# ---- promotion ----------------------------------------------------------------------------


@integration
def test_auto_promotion_follows_the_policy(registry: ModelRegistry, tmp_path: Path) -> None:
    policy = PromotionPolicy(metric="click.auc", margin=0.01)
    first = publish(registry, tmp_path, 1, auc=0.70)
    assert registry.maybe_promote(first, policy)  # nothing active yet
    better = publish(registry, tmp_path, 2, auc=0.75)
    assert registry.maybe_promote(better, policy)
    assert registry.active_version_name() == better.version
    assert registry.get(first.version).status == "retired"

    worse = publish(registry, tmp_path, 3, auc=0.73)  # 0.02 below: more than the margin
    assert not registry.maybe_promote(worse, policy)
    assert registry.get(worse.version).status == "candidate"
    assert registry.active_version_name() == better.version

    slightly = publish(registry, tmp_path, 4, auc=0.745)  # within the margin
    assert registry.maybe_promote(slightly, policy)
    assert registry.maybe_promote(slightly, policy)  # already active: still True, no switch
    assert registry.history() == [better.version, first.version]

    blind = publish(registry, tmp_path, 5, auc=None)  # active has a value, candidate none
    assert not registry.maybe_promote(blind, policy)
    mae = PromotionPolicy(metric="dwell.mae", higher_is_better=False, margin=0.5)
    assert registry.maybe_promote(blind, mae)  # same MAE: not worse
    unknown = PromotionPolicy(metric="conversion.auc")
    assert registry.maybe_promote(worse, unknown)  # the active version lacks the metric
    assert registry.active_version_name() == worse.version


@integration
def test_same_window_metrics_replace_the_stale_stored_ones(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    policy = PromotionPolicy(metric="click.auc", margin=0.01)
    old = publish(registry, tmp_path, 1, auc=0.80)  # measured before a drift
    assert registry.maybe_promote(old, policy)
    new = publish(registry, tmp_path, 2, auc=0.62)  # measured after it: looks worse
    stale = ("v999999", {"click.auc": 0.62}, {"click.auc": 0.40})  # names another version
    assert not registry.maybe_promote(new, policy, stale)
    fair = (old.version, {"click.auc": 0.62}, {"click.auc": 0.40})  # same recent examples
    assert registry.maybe_promote(new, policy, fair)
    assert registry.active_version_name() == new.version


@integration
def test_promote_and_rollback_walk_the_history(registry: ModelRegistry, tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        registry.rollback()
    v1, v2, v3 = (publish(registry, tmp_path, i) for i in (1, 2, 3))
    for v in (v1, v2, v3):
        assert registry.promote(v.version, reason="test").status == "active"
    assert registry.history() == ["v000002", "v000001"]

    back = registry.rollback()
    assert back.version == "v000002" and back.status == "active"
    assert registry.get("v000003").status == "rejected"
    assert registry.rollback().version == "v000001"
    assert registry.history() == []
    assert [v.status for v in registry.list_versions()] == ["active", "rejected", "rejected"]
    with pytest.raises(RegistryError, match="nothing to roll back to") as caught:
        registry.rollback()
    assert isinstance(caught.value, DriftrecError)
    assert registry.active_version_name() == "v000001"

    with pytest.raises(RegistryError, match="no version v000009"):
        registry.promote("v000009", reason="test")


@integration
def test_every_switch_is_announced(registry: ModelRegistry, tmp_path: Path) -> None:
    v1, v2 = publish(registry, tmp_path, 1), publish(registry, tmp_path, 2)
    with registry.subscribe() as sub:
        assert sub.poll(0.05) is None
        registry.redis.publish(registry.channel, b"not json")  # ignored, not fatal
        registry.promote(v1.version, reason="first")
        registry.promote(v1.version, reason="again")  # no-op: nothing published
        registry.promote(v2.version, reason="second")
        registry.rollback(reason="bad clicks")
        changes = drain(sub, 0.3)
    assert [(c.version, c.previous, c.reason) for c in changes] == [
        ("v000001", None, "first"),
        ("v000002", "v000001", "second"),
        ("v000001", "v000002", "bad clicks"),
    ]
    assert all(c.ts.tzinfo is not None for c in changes)
    assert changes[0].ts <= changes[1].ts <= changes[2].ts


# ---- artifacts ------------------------------------------------------------------------------


@integration
def test_corrupted_or_missing_artifact_is_refused(registry: ModelRegistry, tmp_path: Path) -> None:
    v1, v2, v3 = (publish(registry, tmp_path, i) for i in (1, 2, 3))
    assert registry.open_artifact(v1.version) == Path(v1.artifact)
    registry.promote(v1.version, reason="t")
    registry.promote(v2.version, reason="t")

    data = bytearray(Path(v1.artifact).read_bytes())
    data[100] ^= 0x01
    Path(v1.artifact).write_bytes(bytes(data))
    with pytest.raises(RegistryError, match="sha256 mismatch: re-publish or roll back"):
        registry.open_artifact(v1.version)
    with pytest.raises(RegistryError, match="sha256 mismatch"):
        registry.rollback()  # its target is the corrupted v1
    assert registry.active_version_name() == v2.version and registry.history() == [v1.version]

    Path(v3.artifact).unlink()
    with pytest.raises(RegistryError, match="missing: re-publish or roll back"):
        registry.open_artifact(v3.version)
    with pytest.raises(RegistryError, match="missing"):
        registry.promote(v3.version, reason="t")
    with pytest.raises(RegistryError, match="missing"):
        registry.maybe_promote(v3, PromotionPolicy())  # the rule says yes; the checksum says no
    assert registry.active_version_name() == v2.version


@integration
def test_concurrent_promotes_leave_a_consistent_pointer_and_history(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    versions = [publish(registry, tmp_path, i).version for i in range(1, 5)]
    start = threading.Barrier(6)
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        start.wait()
        try:
            for _ in range(15):
                registry.promote(rng.choice(versions), reason=f"thread {seed}")
        except BaseException as error:  # surfaced in the main thread below
            errors.append(error)

    with registry.subscribe() as sub:
        threads = [threading.Thread(target=worker, args=(s,)) for s in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        changes = drain(sub)
    assert errors == []
    assert changes, "at least the first promotion switches the active version"
    # The announcements form one unbroken chain: switches were serialised.
    assert changes[0].previous is None
    for before, after in itertools.pairwise(changes):
        assert after.previous == before.version != after.version
    active = registry.active_version_name()
    assert active == changes[-1].version
    assert registry.history() == [c.previous for c in reversed(changes[1:])]
    statuses = {v.version: v.status for v in registry.list_versions()}
    assert [v for v, s in statuses.items() if s == "active"] == [active]


@integration
def test_concurrent_auto_promotions_never_switch_to_a_clearly_worse_version(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    aucs = [0.60, 0.85, 0.70, 0.90, 0.65, 0.80]
    infos = [publish(registry, tmp_path, i + 1, auc=a) for i, a in enumerate(aucs)]
    policy = PromotionPolicy(margin=0.01)
    start = threading.Barrier(len(infos))

    def worker(info: VersionInfo) -> None:
        start.wait()
        for _ in range(5):
            registry.maybe_promote(info, policy)

    with registry.subscribe() as sub:
        threads = [threading.Thread(target=worker, args=(i,)) for i in infos]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        changes = drain(sub)
    auc = {i.version: i.metrics["click.auc"] for i in infos}
    # Each switch was decided against the version it actually replaced (compare-and-set).
    for change in changes:
        if change.previous is not None:
            assert auc[change.version] >= auc[change.previous] - policy.margin  # type: ignore[operator]
    assert registry.active_version_name() == infos[3].version  # the best one, 0.90


# ---- CLI helpers ----------------------------------------------------------------------------


@integration
def test_cli_functions(registry: ModelRegistry, tmp_path: Path) -> None:
    assert models_list(registry) == ["no model versions published yet"]
    v1 = publish(registry, tmp_path, 1, auc=0.7)
    publish(registry, tmp_path, 2, auc=None, parent=v1.version)
    assert models_promote(registry, "1") == "v000001 is now active"
    assert models_promote(registry, "v000002") == "v000002 is now active (was v000001)"
    assert models_promote(registry, "v000002") == "v000002 was already active"

    header, first, second = models_list(registry)
    assert "version" in header and "click.auc" in header
    assert first.split()[:2] == ["v000001", "retired"] and first.split()[-1] == "0.7000"
    assert second.split()[:3] == ["*", "v000002", "active"]
    assert second.split()[-3:] == ["-", "parent", "v000001"]
    shown = json.loads(models_show(registry, "v000002"))
    assert shown == registry.get("v000002").model_dump(mode="json")

    assert models_rollback(registry) == "rolled back to v000001 (v000002 is now rejected)"
    with pytest.raises(RegistryError):
        models_rollback(registry)


def test_cli_reports_unreachable_redis(tmp_path: Path) -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    registry = ModelRegistry(dead, tmp_path)
    with pytest.raises(InfraError, match="driftrec up"):
        models_list(registry)


# ---- the promotion rule (pure) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("candidate", "active", "higher", "promote"),
    [
        ({"m": 0.50}, None, True, True),  # nothing active
        ({"m": 0.70}, {"m": 0.70}, True, True),
        ({"m": 0.691}, {"m": 0.70}, True, True),  # within the margin
        ({"m": 0.689}, {"m": 0.70}, True, False),  # worse by more than the margin
        ({"m": None}, {"m": 0.70}, True, False),  # candidate lacks the metric
        ({"m": math.nan}, {"m": 0.70}, True, False),
        ({}, {"m": 0.70}, True, False),
        ({"m": 0.50}, {"m": math.nan}, True, True),  # active lacks the metric
        ({"m": 0.50}, {}, True, True),
        ({"m": None}, {"m": None}, True, True),
        ({"m": 3.009}, {"m": 3.0}, False, True),  # lower is better, within the margin
        ({"m": 3.011}, {"m": 3.0}, False, False),
        ({"m": 2.0}, {"m": 3.0}, False, True),
    ],
)
def test_decide(
    candidate: dict[str, float | None],
    active: dict[str, float | None] | None,
    higher: bool,
    promote: bool,
) -> None:
    policy = PromotionPolicy(metric="m", higher_is_better=higher, margin=0.01)
    decision = decide(candidate, active, policy)
    assert decision.promote is promote
    assert decision.reason


def test_policy_validates_its_fields() -> None:
    assert PromotionPolicy().metric == "click.auc"
    with pytest.raises(ValueError, match="greater than or equal"):
        PromotionPolicy(margin=-0.1)


@integration
def test_events_record_every_publish_and_switch_in_order(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    v1 = publish(registry, tmp_path, 1)
    assert registry.maybe_promote(v1, PromotionPolicy())
    v2 = publish(registry, tmp_path, 2, parent=v1.version)
    registry.promote(v2.version, reason="by hand")
    registry.rollback(reason="oops")
    events = registry.events()
    seen = [(e.kind, e.version, e.previous) for e in events]
    assert seen == [
        ("checkpoint", v1.version, None),
        ("auto-promote", v1.version, None),
        ("checkpoint", v2.version, None),
        ("promote", v2.version, v1.version),
        ("rollback", v1.version, v2.version),
    ], seen
    assert events[3].reason == "by hand" and events[0].examples_seen == v1.examples_seen
    assert [e.ms for e in events] == sorted(e.ms for e in events)
    # Reading on from an id returns only what came after it.
    assert [e.kind for e in registry.events(after=events[2].id)] == ["promote", "rollback"]


@integration
def test_events_stream_is_bounded(client: redis.Redis, redis_prefix: str, tmp_path: Path) -> None:
    small = ModelRegistry(client, tmp_path / "artifacts", prefix=redis_prefix, events_max_len=1)
    for tag in range(300):
        publish(small, tmp_path, tag)
    # MAXLEN ~ trims whole radix-tree nodes (100 entries by default), never below the bound.
    assert 1 <= client.xlen(f"{redis_prefix}events") <= 200


@integration
def test_last_activation_reads_back_across_batches(registry: ModelRegistry, tmp_path: Path) -> None:
    v1 = publish(registry, tmp_path, 1)
    registry.promote(v1.version, reason="first")
    for tag in range(2, 8):  # checkpoints after the activation, more than one batch of them
        publish(registry, tmp_path, tag)
    activated = registry.last_activation(v1.version, batch=2)
    promote = [e for e in registry.events() if e.kind == "promote"]
    assert activated == promote[0].ms
    assert registry.last_activation("v999999", batch=2) is None
