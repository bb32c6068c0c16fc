"""The dashboard's reads against the real Redis: live status (gone workers, windowed
rates, targets), the history view (rows after a cursor, markers, reference band), the
bounded history streams, and the HTTP routes."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import pytest
import redis
from driftrec.online_update.registry import ModelRegistry, PromotionPolicy
from driftrec.ops.dashboard import read_history_view, read_live_status
from driftrec.ops.dashboard.data import Cursor
from driftrec.ops.serving import create_app
from driftrec.ops.settings import Settings
from driftrec.stream import HistoryKeys, HistoryWriter

with warnings.catch_warnings():
    # Starlette now prefers the httpx2 package, which is not installed; httpx still works.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(live_settings: Settings, redis_prefix: str, tmp_path: Path) -> Settings:
    return live_settings.model_copy(
        update={
            "redis_prefix": redis_prefix,
            "data_dir": tmp_path,
            "heartbeat_timeout_s": 15.0,
            "rate_window_s": 10.0,
            "reference_window_s": 3600.0,
        }
    )


@pytest.fixture
def registry(settings: Settings, redis_client: redis.Redis, tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(
        redis_client, tmp_path / "artifacts", prefix=f"{settings.redis_prefix}registry:"
    )


def publish_and_promote(registry: ModelRegistry, tmp_path: Path, tag: int) -> str:
    path = tmp_path / f"ckpt-{tag}.pt"
    path.write_bytes(f"checkpoint {tag}".encode() * 64)
    info = registry.publish(
        path,
        parent=registry.active_version_name(),
        examples_seen=1000 * tag,
        offsets={},
        metrics={"click.auc": 0.7},
        embedding_version="",
        config_fingerprint="f",
    )
    assert registry.maybe_promote(info, PromotionPolicy(margin=1.0))
    return info.version


def trainer_sample(examples: int, auc: float) -> dict[str, object]:
    return {
        "ts": time.time(),
        "examples_seen": examples,
        "metrics": {"click.auc": auc, "click.logloss": 0.3},
        "freshness_p50_s": 0.5,
        "freshness_p95_s": 9.0,
        "lag": {"0": 12},
        "psi_max": 0.3,
        "click_psi": 0.02,
    }


def test_live_status_drops_stopped_workers_and_judges_targets(
    settings: Settings, redis_client: redis.Redis
) -> None:
    prefix = settings.redis_prefix
    now = time.time()
    joiners = {
        "host:1": {"ts": now, "partitions": [0, 1], "lag": {"0": 4, "1": 6}, "impression": 900},
        "host:2": {"ts": now - 60, "partitions": [0, 1, 2, 3], "impression": 50},
    }
    redis_client.hset(
        f"{prefix}metrics:joiner", mapping={k: json.dumps(v) for k, v in joiners.items()}
    )
    redis_client.set(f"{prefix}metrics:trainer", json.dumps(trainer_sample(400, 0.7)))
    writer = HistoryWriter(redis_client, settings, "host:1")
    for total in (100, 400, 900):
        writer.append(writer.keys.joiner, {"impression": total, "click": 0})
    trainer = HistoryWriter(redis_client, settings, "trainer:1")
    for examples in (0, 100, 400):
        trainer.append(trainer.keys.trainer, {"examples_seen": examples})
    status = read_live_status(redis_client, settings)
    assert [w.id for w in status.workers] == ["host:1"] and status.gone_workers == 1
    # 800 events and 400 examples appeared within the 10 s window.
    assert status.events_rate == pytest.approx(80.0)
    assert status.examples_rate == pytest.approx(40.0)
    assert status.trainer_alive and status.freshness_behind is True  # p95 9 s > 5 s target
    assert status.lag == {"events:0": 4, "events:1": 6, "examples:0": 12}
    assert status.lag_total == 22 and status.lag_behind is False

    # A trainer whose last status is older than the timeout is gone, and so are its numbers.
    stale = {**trainer_sample(400, 0.7), "ts": now - 60}
    redis_client.set(f"{prefix}metrics:trainer", json.dumps(stale))
    status = read_live_status(redis_client, settings)
    assert not status.trainer_alive and status.freshness_p95_s is None
    assert "examples:0" not in status.lag


def test_history_view_reads_on_from_its_cursor_with_markers_and_band(
    settings: Settings, redis_client: redis.Redis, registry: ModelRegistry, tmp_path: Path
) -> None:
    writer = HistoryWriter(redis_client, settings, "trainer:1")
    for examples, auc in ((0, 0.60), (500, 0.70), (1000, 0.80)):
        writer.append(writer.keys.trainer, trainer_sample(examples, auc))
    v1 = publish_and_promote(registry, tmp_path, 1)
    writer.append(
        writer.keys.events,
        {"kind": "drift-alarm", "detector": "adwin", "task": "click", "example_index": 1200},
    )
    writer.append(
        writer.keys.events, {"kind": "embedding-switch", "version": "enc-b", "previous": "enc-a"}
    )
    view = read_history_view(redis_client, registry, settings, Cursor())
    assert [r["click.auc"] for r in view.trainer] == [0.6, 0.7, 0.8]
    assert [r["lag.examples:0"] for r in view.trainer] == [12, 12, 12]
    assert [(m.kind, m.label) for m in view.markers] == [
        ("checkpoint", f"checkpoint {v1} (1,000 examples)"),
        ("auto-promote", f"auto-promote {v1}"),
        ("drift-alarm", "adwin on click at example 1,200"),
        ("embedding-switch", "embeddings enc-a -> enc-b"),
    ]
    assert view.active == v1 and view.reference_window is not None
    band = view.reference["click.auc"]
    assert band.n == 3 and band.mean == pytest.approx(0.7)

    # The next read returns only what came after the cursor (with rates from the lookback).
    writer.append(writer.keys.trainer, trainer_sample(1500, 0.75))
    v2 = publish_and_promote(registry, tmp_path, 2)
    registry.rollback(reason="test")
    later = read_history_view(redis_client, registry, settings, view.cursor)
    assert [r["examples_seen"] for r in later.trainer] == [1500]
    assert later.trainer[0]["examples_rate"] > 0
    assert [m.kind for m in later.markers] == ["checkpoint", "auto-promote", "rollback"]
    assert later.markers[-1].label == f"rollback {v2} -> {v1}"

    pinned = read_history_view(redis_client, registry, settings, Cursor(), pinned=(0, 1))
    assert pinned.reference_window == (0, 1) and pinned.reference == {}


def test_history_streams_are_bounded_in_length_and_time(
    settings: Settings, redis_client: redis.Redis
) -> None:
    key = HistoryKeys.of(settings.redis_prefix).joiner
    short = HistoryWriter(redis_client, settings.model_copy(update={"history_max_len": 100}), "w")
    for n in range(500):
        short.append(key, {"n": n})
    assert 100 <= redis_client.xlen(key) <= 200  # MAXLEN ~ trims in whole nodes
    redis_client.delete(key)
    redis_client.xadd(key, {"worker": "w", "json": "{}"}, id="1-0")  # from 1970
    short.append(key, {"n": 0})
    assert redis_client.xlen(key) == 1  # the one past history_retention_s is gone


def test_routes_serve_the_page_assets_and_json(
    settings: Settings, registry: ModelRegistry, tmp_path: Path
) -> None:
    publish_and_promote(registry, tmp_path, 1)
    with TestClient(create_app(settings, poll_s=0.2)) as api:
        page = api.get("/dashboard")
        assert page.status_code == 200 and "vendor/chart.umd.min.js" in page.text
        for asset in (
            "vendor/chart.umd.min.js",
            "vendor/chartjs-plugin-annotation.min.js",
            "dashboard.js",
        ):
            assert api.get(f"/dashboard/static/{asset}").status_code == 200, asset
        history = api.get("/dashboard/api/history").json()
        assert [m["kind"] for m in history["markers"]] == ["checkpoint", "auto-promote"]
        again = api.get("/dashboard/api/history", params=history["cursor"]).json()
        assert again["markers"] == []
        assert api.get("/dashboard/api/history", params={"trainer": "nope"}).status_code == 422
        assert api.get("/dashboard/api/history", params={"ref_start": 5}).status_code == 422
        status = api.get("/dashboard/api/status").json()
        assert status["active_model"] == history["active"]
