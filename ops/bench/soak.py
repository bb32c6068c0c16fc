"""`driftrec bench soak`: does one worker hold steady over a long stream?

One worker (joiner and trainer in one process) learns from N synthetic events replayed
at full speed. Every two seconds the benchmark samples the worker's resident memory
(``/proc``), the bytes its joiner snapshots have written, the events it joined, the
examples it emitted and applied, and the trainer's freshness. The samples are split by
the events joined into fifths; the first fifth's figures (after a warm-up, the first
tenth) are compared with the last fifth's. Goals: RSS ratio <= 1.2, snapshot bytes per
second flat, throughput ratio >= 0.9, and a trainer that keeps pace with the joiner
(examples applied per second within 10 % of examples emitted per second).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import redis
from driftrec.core import InfraError
from driftrec.ops.bench.pipeline import _cleanup, _isolated, _wait_for_group
from driftrec.ops.settings import Settings
from driftrec.ops.worker_process import WorkerProcess
from driftrec.producers import ensure_topics, open_source, replay

__all__ = ["bench_soak"]

_JOINED = ("impression", "click", "conversion", "dwell")


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _sample(client: redis.Redis, bench: Settings, pid: int) -> dict[str, float]:
    joiners = client.hgetall(f"{bench.redis_prefix}metrics:joiner")
    counts: dict[str, float] = {}
    for raw in joiners.values():
        for key, value in json.loads(raw).items():
            if isinstance(value, int | float) and key != "ts":
                counts[key] = counts.get(key, 0) + value
    raw_trainer = client.get(f"{bench.redis_prefix}metrics:trainer")
    trainer = json.loads(raw_trainer) if raw_trainer else {}
    return {
        "t": time.monotonic(),
        "rss": float(_rss_bytes(pid)),
        "snapshot_bytes": counts.get("snapshot_bytes", 0.0),
        "joined": sum(counts.get(kind, 0.0) for kind in _JOINED),
        "emitted": counts.get("examples", 0.0),
        "applied": float(trainer.get("examples_seen", 0)),
        "freshness_p50_s": float(trainer.get("freshness_p50_s") or 0.0),
        "freshness_p95_s": float(trainer.get("freshness_p95_s") or 0.0),
    }


def _fifth(samples: list[dict[str, float]]) -> dict[str, float]:
    first, last = samples[0], samples[-1]
    seconds = max(last["t"] - first["t"], 1e-9)
    return {
        "rss_mb": round(float(np.mean([s["rss"] for s in samples])) / 2**20, 1),
        "snapshot_bytes_per_s": round((last["snapshot_bytes"] - first["snapshot_bytes"]) / seconds),
        "events_per_s": round((last["joined"] - first["joined"]) / seconds, 1),
        "examples_emitted_per_s": round((last["emitted"] - first["emitted"]) / seconds, 1),
        "examples_applied_per_s": round((last["applied"] - first["applied"]) / seconds, 1),
        "freshness_p50_s": round(float(np.median([s["freshness_p50_s"] for s in samples])), 3),
        "freshness_p95_s": round(float(np.median([s["freshness_p95_s"] for s in samples])), 3),
    }


def bench_soak(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    n_events = int(args.events)
    bench = _isolated(settings)
    client = redis.Redis.from_url(settings.redis_url)
    ensure_topics(bench)
    samples: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="driftrec-soak-") as tmp:
        worker = WorkerProcess(
            bench, Path(tmp) / "worker.log", "all", data_dir=Path(tmp), web_port=0
        )
        try:
            _wait_for_group(bench, bench.app_id)
            records = open_source("default", "synthetic", limit=n_events)
            sender = threading.Thread(target=replay, args=(records, bench), daemon=True)
            sender.start()
            deadline = time.monotonic() + 4 * 3600
            while True:
                if worker.proc.poll() is not None:
                    raise InfraError(f"soak worker died:\\n{worker.log_tail()}")
                if time.monotonic() > deadline:
                    raise InfraError("soak did not finish in 4 hours")
                samples.append(_sample(client, bench, worker.proc.pid))
                if not sender.is_alive() and samples[-1]["joined"] >= n_events:
                    break
                time.sleep(2.0)
        finally:
            worker.stop()
    _cleanup(settings, bench, client)
    total = samples[-1]["joined"]
    warm = [s for s in samples if s["joined"] >= total / 10]

    def share(lo: float, hi: float) -> list[dict[str, float]]:
        return [s for s in warm if lo * total <= s["joined"] <= hi * total]

    first, last = _fifth(share(0.1, 0.3)), _fifth(share(0.8, 1.0))
    return {
        "events": int(total),
        "samples": len(samples),
        "first_fifth": first,
        "last_fifth": last,
        "rss_ratio": round(last["rss_mb"] / first["rss_mb"], 3),
        "snapshot_cost_ratio": round(
            last["snapshot_bytes_per_s"] / max(first["snapshot_bytes_per_s"], 1), 3
        ),
        "throughput_ratio": round(last["events_per_s"] / max(first["events_per_s"], 1e-9), 3),
        "trainer_keeps_pace_last_fifth": round(
            last["examples_applied_per_s"] / max(last["examples_emitted_per_s"], 1e-9), 3
        ),
    }
