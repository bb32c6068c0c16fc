"""The serving API against the real Redis: recommend, score, admin, health and metrics.

Each test seeds its own world (catalog, vectors, features, tiny model versions) under a
fresh Redis prefix and artifact directory with ops.bench.serve.seed_world, and talks to
the app through FastAPI's TestClient (which runs the app's lifespan: the model holder).
"""

from __future__ import annotations

import math
import threading
import uuid
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from driftrec.online_update.embeddings.vector_store import RedisVectorStore
from driftrec.ops.bench.serve_world import TINY_MODEL as TINY
from driftrec.ops.bench.serve_world import World, drop_prefix, seed_world
from driftrec.ops.serving import create_app
from driftrec.ops.serving.schemas import BlendWeights
from driftrec.ops.serving.scoring import blend
from driftrec.ops.settings import Settings
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

with warnings.catch_warnings():
    # Starlette now prefers the httpx2 package, which is not installed; httpx still works.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def world_settings(live: Settings, prefix: str, tmp: Path, token: str | None = TOKEN) -> Settings:
    return live.model_copy(
        update={
            "redis_prefix": prefix,
            "data_dir": tmp,
            "admin_token": None if token is None else SecretStr(token),
        }
    )


def seeded(settings: Settings) -> World:
    return seed_world(settings, items=40, users=8, events=400, versions=3, model=TINY)


@pytest.fixture(scope="module")
def shared(live_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One world for the tests that change nothing in the registry."""
    prefix = f"test:{uuid.uuid4().hex[:10]}:"
    settings = world_settings(live_settings, prefix, tmp_path_factory.mktemp("serve"))
    yield seeded(settings)
    drop_prefix(settings)


@pytest.fixture(scope="module")
def api(shared: World) -> Iterator[TestClient]:
    with TestClient(create_app(shared.settings, poll_s=0.2)) as client:
        yield client


@pytest.fixture
def world(live_settings: Settings, redis_prefix: str, tmp_path: Path) -> Iterator[World]:
    """A world of its own, for tests that promote or roll back."""
    settings = world_settings(live_settings, redis_prefix, tmp_path)
    yield seeded(settings)
    drop_prefix(settings)


def test_recommend_ranks_candidates_with_per_task_scores(api: TestClient, shared: World) -> None:
    world = shared
    candidates = world.items[:20]
    r = api.post("/recommend", json={"user_id": "user0", "item_ids": candidates, "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == world.versions[0]
    assert body["candidates"] == 20 and len(body["items"]) == 5
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True)
    everything = api.post("/score", json={"user_id": "user0", "item_ids": candidates}).json()
    assert max(i["score"] for i in everything["items"]) == scores[0]
    for item in body["items"]:
        assert item["item_id"] in candidates
        assert 0.0 <= item["conversion"] <= item["click"] <= 1.0  # ESMM: pCTCVR <= pCTR
        assert item["dwell_s"] >= 0.0
        preds = {
            "click": np.array([item["click"]]),
            "conversion": np.array([item["conversion"]]),
            "dwell": np.log1p(np.array([item["dwell_s"]])),
        }
        assert blend(preds, BlendWeights())[3][0] == pytest.approx(item["score"])


def test_score_keeps_request_order_and_weights_change_the_blend(api: TestClient) -> None:
    ids = ["item3", "item1", "item3", "item2"]
    r = api.post("/score", json={"user_id": "user1", "item_ids": ids})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [i["item_id"] for i in items] == ids
    assert items[0] == items[2]
    only_clicks = {"click": 1, "conversion": 0, "dwell": 0}
    r = api.post("/score", json={"user_id": "user1", "item_ids": ids, "weights": only_clicks})
    assert [i["score"] for i in r.json()["items"]] == pytest.approx(
        [i["click"] for i in r.json()["items"]]
    )


def test_unknown_users_and_items_get_valid_answers(api: TestClient, shared: World) -> None:
    world = shared
    # "fresh" has a text vector but no features yet; "ghost-item" has nothing at all.
    client = RedisVectorStore(api.app.state.services.client, f"{world.settings.redis_prefix}emb:")
    client.put(world.embedding_version, ["fresh"], np.ones((1, TINY.text_dim), np.float32) / 4)
    ids = ["ghost-item", "fresh", "item0"]
    for user in ("ghost-user", "user0"):
        r = api.post("/recommend", json={"user_id": user, "item_ids": ids, "k": 3})
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        assert sorted(i["item_id"] for i in items) == sorted(ids)
        assert all(math.isfinite(i["score"]) for i in items)


def test_no_candidates_means_the_newest_catalog_items(api: TestClient, shared: World) -> None:
    world = shared
    r = api.post("/recommend", json={"user_id": "user2", "item_ids": None, "recent": 5, "k": 5})
    assert r.status_code == 200, r.text
    assert r.json()["candidates"] == 5
    assert {i["item_id"] for i in r.json()["items"]} == set(world.items[-5:])
    r = api.post("/recommend", json={"user_id": "user2", "item_ids": []})
    assert r.status_code == 422  # an empty ranking would look like an answer


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"item_ids": ["item1"]}, "user_id"),
        ({"user_id": "", "item_ids": ["item1"]}, "user_id"),
        ({"user_id": "u", "item_ids": [f"i{k}" for k in range(1001)]}, "item_ids"),
        ({"user_id": "u", "item_ids": ["item1"], "k": 0}, "k"),
        ({"user_id": "u", "item_ids": "item1"}, "item_ids"),
        ({"user_id": "u", "itemids": ["item1"]}, "itemids"),
        ({"user_id": "u", "item_ids": ["item1"], "ts": "2024-01-01T00:00:00"}, "ts"),
        ({"user_id": "u", "item_ids": [], "weights": {"click": -1}}, "click"),
    ],
)
def test_malformed_requests_get_a_422_naming_the_field(
    api: TestClient, body: dict[str, object], field: str
) -> None:
    r = api.post("/recommend", json=body)
    assert r.status_code == 422
    assert r.json()["detail"].startswith("invalid request: ")
    assert field in r.json()["detail"]


def test_broken_bodies_and_wrong_methods_are_4xx(api: TestClient) -> None:
    r = api.post("/score", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "JSON" in r.json()["detail"]
    assert api.get("/recommend").status_code == 405
    assert api.post("/nowhere", json={}).status_code == 404


def test_admin_endpoints_need_the_token(world: World) -> None:
    with TestClient(create_app(world.settings, poll_s=0.2)) as api:
        check_admin(api, world)


def check_admin(api: TestClient, world: World) -> None:
    target = world.versions[1]
    r = api.post(f"/models/{target}/promote")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    r = api.post(f"/models/{target}/promote", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 403
    assert api.post("/models/rollback", headers={"Authorization": "Basic x"}).status_code == 401
    assert api.get("/models").json()["active"] == world.versions[0]  # nothing changed

    r = api.post(f"/models/{target}/promote", headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json() == {"active": target, "previous": world.versions[0]}
    assert api.post("/models/v999/promote", headers=AUTH).status_code == 404
    r = api.post("/models/rollback", headers=AUTH)
    assert r.json() == {"active": world.versions[0], "previous": target}
    r = api.post("/models/rollback", headers=AUTH)
    assert r.status_code == 409 and "nothing to roll back to" in r.json()["detail"]


def test_admin_is_disabled_without_a_configured_token(shared: World) -> None:
    world = shared
    settings = world.settings.model_copy(update={"admin_token": None})
    with TestClient(create_app(settings)) as api:
        r = api.post(f"/models/{world.versions[1]}/promote", headers=AUTH)
        assert r.status_code == 403 and "DRIFTREC_ADMIN_TOKEN" in r.json()["detail"]
        assert api.post("/models/rollback").status_code == 403


def test_models_and_health(api: TestClient, shared: World) -> None:
    world = shared
    models = api.get("/models").json()
    assert [v["version"] for v in models["versions"]] == world.versions
    assert models["active"] == models["serving"] == world.versions[0]
    health = api.get("/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "ok" and health.json()["serving"] == world.versions[0]


def test_no_active_version_is_a_503_not_a_crash(
    live_settings: Settings, redis_prefix: str, tmp_path: Path
) -> None:
    settings = world_settings(live_settings, redis_prefix, tmp_path)
    with TestClient(create_app(settings)) as api:
        r = api.post("/recommend", json={"user_id": "u", "item_ids": ["i"]})
        assert r.status_code == 503 and "promote" in r.json()["detail"]
        assert api.get("/healthz").status_code == 503
    drop_prefix(settings)


def test_metrics_are_prometheus_text(shared: World) -> None:
    with TestClient(create_app(shared.settings)) as api:
        check_metrics(api, shared)


def check_metrics(api: TestClient, world: World) -> None:
    for _ in range(3):
        api.post("/recommend", json={"user_id": "user0", "item_ids": ["item1", "item2"]})
    api.post("/recommend", json={"user_id": "user0"} | {"k": -1})
    api.post("/models/v000001/promote")  # 401, labelled by template
    text = api.get("/metrics").text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    count = ("driftrec_http_requests_total", "endpoint", "method", "status")

    def requests(endpoint: str, status: str) -> float:
        labels = (("endpoint", endpoint), ("method", "POST"), ("status", status))
        return samples.get((count[0], labels), 0.0)

    assert requests("/recommend", "200") == 3
    assert requests("/recommend", "422") == 1
    assert requests("/models/{version}/promote", "401") == 1
    buckets = ("driftrec_http_request_duration_seconds_count", (("endpoint", "/recommend"),))
    assert samples[buckets] == 4
    assert samples[("driftrec_model_active", (("version", world.versions[0]),))] == 1
    assert samples[("driftrec_model_swaps_total", ())] == 1


@pytest.mark.parametrize("threads", [1, 2])
def test_requests_score_on_their_own_lane_while_health_answers(shared: World, threads: int) -> None:
    # Scoring is GIL-bound: `scoring_threads` requests score at once, the rest queue,
    # and health, liveness and metrics still answer while every lane thread is busy.
    settings = shared.settings.model_copy(update={"scoring_threads": threads})
    app = create_app(settings, poll_s=0.2)
    scorer = app.state.services.scorer
    score, lock, release = scorer.score, threading.Lock(), threading.Event()
    entered = threading.Semaphore(0)
    inside = peak = 0

    def held_score(*args: Any, **kwargs: Any) -> Any:
        nonlocal inside, peak
        with lock:
            inside += 1
            peak = max(peak, inside)
        entered.release()
        try:
            assert release.wait(30), "the test never released the lane"
            return score(*args, **kwargs)
        finally:
            with lock:
                inside -= 1

    scorer.score = held_score
    body = {"user_id": "user0", "item_ids": shared.items[:10], "k": 3}
    with TestClient(app) as client, ThreadPoolExecutor(threads + 2) as pool:
        answers = [pool.submit(client.post, "/recommend", json=body) for _ in range(threads + 2)]
        for _ in range(threads):
            assert entered.acquire(timeout=30), f"{threads} requests should be scoring"
        assert client.get("/livez").status_code == 200
        assert client.get("/healthz").status_code == 200
        assert client.get("/metrics").status_code == 200
        release.set()
        statuses = [answer.result(timeout=60).status_code for answer in answers]
    assert statuses == [200] * (threads + 2)
    assert peak == threads
