"""Readiness, liveness, the body limit and empty rankings, each state against a real Redis.

The Redis-lost and Redis-back-empty states need a Redis this test may stop: a private
``redis-server`` without persistence on a free port (the shared one is left alone).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from driftrec.ops.bench.serve_world import TINY_MODEL, World, drop_prefix, seed_world
from driftrec.ops.infra.process import wait_until
from driftrec.ops.serving import create_app
from driftrec.ops.settings import Settings
from pydantic import SecretStr

from tests.ops.real_processes import free_port

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette prefers httpx2, which is not installed
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration


class PrivateRedis:
    """A redis-server of this test's own, with no persistence: a restart comes back empty."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.tmp = tmp
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            pytest.skip("redis-server is not installed")
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir"]
        self.proc = subprocess.Popen(
            [server, *args, str(self.tmp), "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        assert wait_until(answers, 10.0, 0.05), "private redis-server did not start"
        client.close()

    def pause(self) -> None:
        """SIGSTOP: connections stay open and nothing answers (a hung server)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None:
            self.resume()  # a stopped process would hold its port until it runs again
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def _settings(live: Settings, tmp: Path, url: str | None = None) -> Settings:
    return live.model_copy(
        update={
            "redis_url": url or live.redis_url,
            "redis_prefix": f"test:{uuid.uuid4().hex[:10]}:",
            "data_dir": tmp,
            "admin_token": SecretStr("t"),
            "max_request_bytes": 64 * 1024,
        }
    )


def _seed(settings: Settings) -> World:
    return seed_world(settings, items=30, users=5, events=200, versions=2, model=TINY_MODEL)


def _health(api: TestClient) -> tuple[int, dict[str, object]]:
    r = api.get("/healthz")
    return r.status_code, r.json()


def _reasons(api: TestClient) -> str:
    return " | ".join(str(reason) for reason in api.get("/healthz").json()["reasons"])


def test_redis_lost_then_back_empty_is_unready_and_never_an_empty_ranking(
    live_settings: Settings, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    settings = _settings(live_settings, tmp_path, private_redis.url)
    world = _seed(settings)
    with TestClient(create_app(settings, poll_s=0.1)) as api:
        status, body = _health(api)
        assert status == 200 and body["status"] == "ok", body
        assert body["serving"] == world.versions[0] and body["item_vectors"] == 30

        private_redis.stop()
        status, body = _health(api)
        assert status == 503 and body["status"] == "unready"
        assert "Redis is unreachable" in _reasons(api)
        assert api.get("/livez").status_code == 200  # the process itself is fine
        r = api.post("/recommend", json={"user_id": "user0", "item_ids": ["item1"]})
        assert r.status_code == 503

        private_redis.start()  # same port, nothing in it
        assert wait_until(lambda: "no active model version" in _reasons(api), 10.0, 0.05)
        status, body = _health(api)
        assert status == 503 and "no item vectors" in _reasons(api)
        r = api.post("/recommend", json={"user_id": "user0"})
        assert r.status_code == 503 and "no candidates" in r.json()["detail"]


def test_a_hung_redis_gets_503_after_the_timeout_not_a_held_request(
    live_settings: Settings, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    settings = _settings(live_settings, tmp_path, private_redis.url).model_copy(
        update={"redis_timeout_s": 0.5}
    )
    _seed(settings)
    request = {"user_id": "user0", "item_ids": ["item1", "item2"]}
    with TestClient(create_app(settings, poll_s=0.1)) as api:
        assert api.post("/recommend", json=request).status_code == 200
        private_redis.pause()
        try:
            started = time.monotonic()
            r = api.post("/recommend", json=request)
            took = time.monotonic() - started
            assert r.status_code == 503, r.text
            assert took < 2.5, f"the request waited {took:.1f} s on a hung Redis"
            status, body = _health(api)
            assert status == 503 and "Redis is unreachable" in _reasons(api), body
        finally:
            private_redis.resume()
        assert wait_until(
            lambda: api.post("/recommend", json=request).status_code == 200, 10.0, 0.1
        ), api.post("/recommend", json=request).text


def test_no_model_and_no_vectors_are_unready(live_settings: Settings, tmp_path: Path) -> None:
    settings = _settings(live_settings, tmp_path)
    try:
        with TestClient(create_app(settings, poll_s=0.1)) as api:
            status, body = _health(api)
            assert status == 503 and "no model loaded" in _reasons(api)
            assert "no active model version" in _reasons(api)
        world = _seed(settings)
        client = redis.Redis.from_url(settings.redis_url)
        client.delete(f"{settings.redis_prefix}emb:v:{world.embedding_version}")
        client.close()
        with TestClient(create_app(settings, poll_s=0.1)) as api:
            status, body = _health(api)
            assert status == 503 and body["serving"] == world.versions[0]
            assert body["reasons"] == [
                f"no item vectors for embedding version {world.embedding_version!r}: "
                "the embedder has not written any, or they were deleted"
            ]
    finally:
        drop_prefix(settings)


@pytest.fixture(scope="module")
def ready(live_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    settings = _settings(live_settings, tmp_path_factory.mktemp("health"))
    yield _seed(settings)
    drop_prefix(settings)


def test_recommend_names_its_candidate_source_and_refuses_empty_lists(ready: World) -> None:
    with TestClient(create_app(ready.settings)) as api:
        assert _health(api)[0] == 200
        r = api.post("/recommend", json={"user_id": "user1", "k": 3})
        assert r.status_code == 200 and r.json()["candidate_source"] == "recent items"
        r = api.post("/recommend", json={"user_id": "user1", "item_ids": ["item2"]})
        assert r.status_code == 200 and r.json()["candidate_source"] == "request"
        r = api.post("/recommend", json={"user_id": "user1", "item_ids": []})
        assert r.status_code == 422 and "item_ids" in r.json()["detail"]


def test_bodies_over_the_limit_are_413(ready: World) -> None:
    huge = b'{"user_id": "u", "item_ids": ["' + b"x" * (100 * 1024) + b'"]}'

    def chunks() -> Iterator[bytes]:  # no content-length: counted as it arrives
        for start in range(0, len(huge), 8192):
            yield huge[start : start + 8192]

    with TestClient(create_app(ready.settings)) as api:
        headers = {"content-type": "application/json"}
        r = api.post("/recommend", content=huge, headers=headers)
        assert r.status_code == 413 and "DRIFTREC_MAX_REQUEST_BYTES" in r.json()["detail"]
        r = api.post("/score", content=chunks(), headers=headers)
        assert r.status_code == 413, r.text
        r = api.post("/recommend", json={"user_id": "user1", "item_ids": ["item1"]})
        assert r.status_code == 200
