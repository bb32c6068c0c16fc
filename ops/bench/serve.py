"""`driftrec bench serve`: /recommend latency at concurrency 8, then again during hot swaps.

One run, against the real Redis, under a fresh key prefix and a temporary data dir:

1. ``driftrec.ops.bench.serve_world.seed_world``: ``items`` catalog items with 384-d text vectors,
   features for 200 users, and 4 versions of the default ``ModelConfig`` (MMoE, 384-d
   text like MiniLM) published to an isolated registry, the first one active.
2. The server runs in a subprocess (``run_server``, as `driftrec serve` does), so client
   and server do not share a GIL; the client is ``concurrency`` threads on keep-alive
   ``http.client`` connections sending pre-serialised bodies with ``candidates`` random
   candidates each.
3. Steady phase (``duration`` s): p50_ms, p99_ms, requests_per_s. Swap phase (same
   length): the registry promotes the next version every ``swap_every`` s; swap_p99_ms
   is the p99 of that phase and swaps the number of swaps the server made.

Optional ``args`` attributes (defaults): ``duration`` (10), ``concurrency`` (8),
``candidates`` (100), ``items`` (1000), ``swap_every`` (1.0), ``workers`` (1: server
processes, `driftrec serve --workers`). Goals: p99_ms <= 20 and
swap_p99_ms <= 1.5 x p99_ms; ``failed`` must be 0. The 1-minute load average is
reported because the machine may be shared: closed-loop latency is concurrency divided
by throughput, so a server that gets half a core measures twice the latency.
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
from pathlib import Path
from typing import Any

import numpy as np
import redis
from driftrec.core import InfraError
from driftrec.online_update.registry import ModelRegistry
from driftrec.ops.bench.serve_world import drop_prefix, seed_world
from driftrec.ops.settings import Settings
from pydantic import SecretStr

__all__ = ["bench_serve"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server(
    settings: Settings, port: int, log: Path, workers: int = 1
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DRIFTREC_REDIS_URL": settings.redis_url,
        "DRIFTREC_REDIS_PREFIX": settings.redis_prefix,
        "DRIFTREC_DATA_DIR": str(settings.data_dir),
        "DRIFTREC_ADMIN_TOKEN": "bench",
    }
    code = (
        "import sys; from driftrec.ops.serving import run_server; from driftrec.ops.settings import Settings; "
        "run_server(Settings(), '127.0.0.1', int(sys.argv[1]), int(sys.argv[2]))"
    )
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", code, str(port), str(workers)],
            env=env,
            stdout=out,
            stderr=out,
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


def _swap_phase(
    load: _Load, settings: Settings, versions: list[str], seconds: float, every: float
) -> tuple[list[float], int, float]:
    """``load.measure(seconds)`` while the next version is promoted every ``every`` s."""
    client = redis.Redis.from_url(settings.redis_url)
    registry = ModelRegistry(
        client, settings.data_dir / "registry", prefix=f"{settings.redis_prefix}registry:"
    )
    stop = threading.Event()

    def promote_every() -> None:
        k = 1
        while not stop.wait(every):
            registry.promote(versions[k % len(versions)], reason="bench")
            k += 1

    promoter = threading.Thread(target=promote_every)
    promoter.start()
    try:
        return load.measure(seconds)
    finally:
        stop.set()
        promoter.join()
        client.close()


def bench_serve(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    duration = float(getattr(args, "duration", 10.0))
    concurrency = int(getattr(args, "concurrency", 8))
    n_candidates = int(getattr(args, "candidates", 100))
    swap_every = float(getattr(args, "swap_every", 1.0))
    workers = int(getattr(args, "workers", 1) or 1)
    data_dir = Path(tempfile.mkdtemp(prefix="driftrec-bench-serve-"))
    bench = settings.model_copy(
        update={
            "redis_prefix": f"bench:{uuid.uuid4().hex[:8]}:",
            "data_dir": data_dir,
            "admin_token": SecretStr("bench"),
        }
    )
    server = None
    load_before = os.getloadavg()[0]  # other work on the machine, before we add ours
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
        server = _start_server(bench, port, data_dir / "server.log", workers)
        _wait_healthy(port, server, data_dir / "server.log", timeout=120.0)
        load = _Load(port, bodies, concurrency)
        for thread in load.threads:
            thread.start()
        try:
            time.sleep(1.0)  # warm up connections and caches
            steady, failed, wall = load.measure(duration)
            before = _swaps(port)
            swapping, swap_failed, swap_wall = _swap_phase(
                load, bench, world.versions, duration, swap_every
            )
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
        "workers": workers,
        "p99_goal_met": p99 <= 20.0,
        "swap_goal_met": swap_p99 <= 1.5 * p99,
        "load_avg_1m_before": round(load_before, 2),
        "load_avg_1m_after": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
