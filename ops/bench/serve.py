"""`driftrec bench serve`: /recommend latency at concurrency 8, then again during hot swaps.

One run, against the real Redis, under a fresh key prefix and a temporary data dir:

1. ``seed_world``: a catalog of ``items`` items (text vectors from ``HashingTextEncoder``
   at the model's ``text_dim``, categories, recent-items set), features written through
   ``RedisFeatureStore`` from a ``FeatureState`` that saw random impressions and clicks,
   and ``versions`` model versions trained a little further each (the default
   ``ModelConfig``: MMoE, 384-d text like MiniLM) published to the registry.
2. The server runs in a subprocess (``run_server``, as `driftrec serve` does), so client
   and server do not share a GIL; the client is ``concurrency`` threads on keep-alive
   ``http.client`` connections sending pre-serialised bodies with ``candidates`` random
   candidates each.
3. Steady phase (``duration_s``): p50_ms, p99_ms, requests_per_s. Swap phase (same
   length): the registry promotes the next version every ``swap_every_s``; swap_p99_ms
   is the p99 of that phase and swaps the number of swaps the server made.

Goals: p99_ms <= 20 and swap_p99_ms <= 1.5 x p99_ms. ``failed`` must be 0. The load
average is reported because the machine may be shared.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import redis
from pydantic import SecretStr

from models.config import ModelConfig
from online_update.checkpoint import save_checkpoint
from online_update.learner import LearnerConfig, OnlineLearner
from online_update.registry import ModelRegistry
from online_update.text_encoder import HashingTextEncoder
from online_update.vector_store import RedisVectorStore
from ops.settings import Settings
from producers.errors import InfraError
from producers.schemas import Click, Example, Impression, Item
from stream.feature_store import RedisFeatureStore
from stream.features import FeatureState
from stream.vectorise import FeatureEncoder

__all__ = ["World", "bench_serve", "drop_prefix", "seed_world"]

T0 = datetime(2024, 6, 1, 8, tzinfo=UTC)
_WORDS = [
    "alpine",
    "ballet",
    "cricket",
    "derby",
    "economy",
    "festival",
    "galaxy",
    "harbour",
    "island",
    "jazz",
    "kernel",
]


@dataclass
class World:
    """What ``seed_world`` wrote: the ids and the published versions, oldest first."""

    settings: Settings
    users: list[str]
    items: list[str]
    versions: list[str] = field(default_factory=list)
    embedding_version: str = ""


def _titles(rng: random.Random, n: int) -> list[str]:
    return [" ".join(rng.sample(_WORDS, 3)) + f" {k}" for k in range(n)]


def seed_world(
    settings: Settings,
    *,
    items: int = 1000,
    users: int = 200,
    events: int = 4000,
    versions: int = 2,
    model: ModelConfig | None = None,
    seed: int = 0,
) -> World:
    """Catalog, vectors, features and ``versions`` published versions (the first active)."""
    rng = random.Random(seed)
    model = model or ModelConfig()
    client = redis.Redis.from_url(settings.redis_url)
    prefix = settings.redis_prefix
    world = World(settings, [f"user{k}" for k in range(users)], [f"item{k}" for k in range(items)])
    catalog = [
        Item(item_id=i, title=t, category=f"cat{k % 20}", ts=T0 + timedelta(seconds=k))
        for k, (i, t) in enumerate(zip(world.items, _titles(rng, items), strict=True))
    ]
    encoder = HashingTextEncoder(dim=model.text_dim, seed=seed)
    vectors = RedisVectorStore(client, prefix=f"{prefix}emb:")
    world.embedding_version = f"bench-hash-{model.text_dim}"
    vectors.declare(world.embedding_version, encoder=encoder.version, dim=model.text_dim)
    matrix = encoder.encode([item.title for item in catalog])
    vectors.put(world.embedding_version, world.items, matrix)
    vectors.set_active(world.embedding_version)
    by_id = dict(zip(world.items, matrix, strict=True))

    state, examples = FeatureState(), []
    start = T0 + timedelta(seconds=items)
    for k in range(events):
        ts = start + timedelta(seconds=k)
        user, item = rng.choice(world.users), rng.choice(world.items)
        impression = Impression(event_id=f"i{k}", user_id=user, item_id=item, ts=ts)
        clicked = rng.random() < 0.1 + 0.3 * (by_id[item][0] > 0)  # learnable from text
        examples.append(
            Example(
                impression=impression,
                features=state.snapshot(impression),
                clicked=clicked,
                converted=clicked and rng.random() < 0.3,
                dwell_seconds=rng.uniform(5, 120) if clicked else None,
                ready_ts=ts,
            )
        )
        state.observe(impression)
        if clicked:
            state.observe(Click(event_id=f"c{k}", user_id=user, item_id=item, ts=ts))
    store = RedisFeatureStore(client, prefix)
    store.write_items(catalog)
    for item in catalog:
        state.observe(item)
    store.write(state, world.users, world.items, as_of=start + timedelta(seconds=events))

    def lookup(ids: Any) -> tuple[np.ndarray, np.ndarray]:
        return vectors.get(world.embedding_version, ids, model.text_dim)

    learner = OnlineLearner(LearnerConfig(model=model))
    batches = np.array_split(np.arange(len(examples)), max(versions, 1))
    registry = ModelRegistry(client, settings.data_dir / "registry", prefix=f"{prefix}registry:")
    scratch = Path(tempfile.mkdtemp(prefix="driftrec-seed-"))
    try:
        parent = None
        for rows in batches[:versions]:
            batch = FeatureEncoder(model.text_dim).examples_to_batch(
                [examples[int(j)] for j in rows], lookup
            )
            learner.learn_many(batch)
            path = scratch / "checkpoint.pt"
            save_checkpoint(learner, path, embedding_version=world.embedding_version)
            info = registry.publish(
                path,
                parent=parent,
                examples_seen=learner.examples_seen,
                offsets={},
                metrics=dict(learner.summary()),
                embedding_version=world.embedding_version,
                config_fingerprint=learner.config.fingerprint(),
            )
            world.versions.append(info.version)
            parent = info.version
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if world.versions:
        registry.promote(world.versions[0], reason="seed")
    client.close()
    return world


def drop_prefix(settings: Settings) -> None:
    """Delete every Redis key under ``settings.redis_prefix``."""
    client = redis.Redis.from_url(settings.redis_url)
    try:
        keys = list(client.scan_iter(match=f"{settings.redis_prefix}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server(settings: Settings, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DRIFTREC_REDIS_URL": settings.redis_url,
        "DRIFTREC_REDIS_PREFIX": settings.redis_prefix,
        "DRIFTREC_DATA_DIR": str(settings.data_dir),
        "DRIFTREC_ADMIN_TOKEN": "bench",
    }
    code = (
        "import sys; from ops.serving import run_server; from ops.settings import Settings; "
        "run_server(Settings(), '127.0.0.1', int(sys.argv[1]))"
    )
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", code, str(port)], env=env, stdout=out, stderr=out
        )


def _wait_healthy(port: int, server: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            break
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-2000:]
    raise InfraError(f"the bench server did not become healthy on port {port}:\n{tail}")


class _Load:
    """``concurrency`` client threads posting /recommend until stopped."""

    def __init__(self, port: int, bodies: list[bytes], concurrency: int) -> None:
        self.port, self.bodies = port, bodies
        self.latencies: list[float] = []
        self.versions: list[str] = []
        self.failed = 0
        self.record = threading.Event()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._client, args=(k,)) for k in range(concurrency)
        ]

    def _client(self, k: int) -> None:
        rng = random.Random(k)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {"Content-Type": "application/json"}
        while not self.stop.is_set():
            body = rng.choice(self.bodies)
            started = time.perf_counter()
            try:
                conn.request("POST", "/recommend", body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                ok, data = False, b""
            elapsed = time.perf_counter() - started
            if self.record.is_set():
                with self.lock:
                    self.latencies.append(elapsed)
                    if ok:
                        self.versions.append(json.loads(data)["model_version"])
                    else:
                        self.failed += 1
        conn.close()

    def measure(self, seconds: float) -> tuple[list[float], int, float]:
        with self.lock:
            self.latencies, self.failed = [], 0
        self.record.set()
        started = time.perf_counter()
        time.sleep(seconds)
        self.record.clear()
        wall = time.perf_counter() - started
        with self.lock:
            return list(self.latencies), self.failed, wall


def _swaps(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/healthz")
    return int(json.loads(conn.getresponse().read())["swaps"])


def bench_serve(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    duration = float(getattr(args, "duration", 10.0))
    concurrency = int(getattr(args, "concurrency", 8))
    n_candidates = int(getattr(args, "candidates", 100))
    swap_every = float(getattr(args, "swap_every", 1.0))
    data_dir = Path(tempfile.mkdtemp(prefix="driftrec-bench-serve-"))
    bench = settings.model_copy(
        update={
            "redis_prefix": f"bench:{uuid.uuid4().hex[:8]}:",
            "data_dir": data_dir,
            "admin_token": SecretStr("bench"),
        }
    )
    server = None
    try:
        world = seed_world(bench, items=int(getattr(args, "items", 1000)), versions=4)
        rng = random.Random(1)
        bodies = [
            json.dumps(
                {
                    "user_id": rng.choice(world.users),
                    "item_ids": rng.sample(world.items, n_candidates),
                    "k": 10,
                }
            ).encode()
            for _ in range(256)
        ]
        port = _free_port()
        server = _start_server(bench, port, data_dir / "server.log")
        _wait_healthy(port, server, data_dir / "server.log", timeout=120.0)
        load = _Load(port, bodies, concurrency)
        for thread in load.threads:
            thread.start()
        try:
            time.sleep(1.0)  # warm up connections and caches
            steady, failed, wall = load.measure(duration)
            registry = ModelRegistry(
                redis.Redis.from_url(bench.redis_url),
                data_dir / "registry",
                prefix=f"{bench.redis_prefix}registry:",
            )
            before = _swaps(port)
            stop_swapping = threading.Event()

            def promote_every() -> None:
                k = 1
                while not stop_swapping.wait(swap_every):
                    registry.promote(world.versions[k % len(world.versions)], reason="bench")
                    k += 1

            promoter = threading.Thread(target=promote_every)
            promoter.start()
            swapping, swap_failed, swap_wall = load.measure(duration)
            stop_swapping.set()
            promoter.join()
            swaps = _swaps(port) - before
        finally:
            load.stop.set()
            for thread in load.threads:
                thread.join()
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        drop_prefix(bench)
        shutil.rmtree(data_dir, ignore_errors=True)
    steady_ms, swap_ms = np.array(steady) * 1e3, np.array(swapping) * 1e3
    p99 = float(np.percentile(steady_ms, 99))
    swap_p99 = float(np.percentile(swap_ms, 99))
    return {
        "p50_ms": round(float(np.percentile(steady_ms, 50)), 2),
        "p99_ms": round(p99, 2),
        "requests_per_s": round(len(steady) / wall, 1),
        "swap_p99_ms": round(swap_p99, 2),
        "swaps": swaps,
        "swap_p50_ms": round(float(np.percentile(swap_ms, 50)), 2),
        "swap_requests_per_s": round(len(swapping) / swap_wall, 1),
        "failed": failed + swap_failed,
        "candidates": n_candidates,
        "concurrency": concurrency,
        "p99_goal_met": p99 <= 20.0,
        "swap_goal_met": swap_p99 <= 1.5 * p99,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
