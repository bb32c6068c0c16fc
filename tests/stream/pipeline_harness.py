"""Run real `driftrec worker` processes against the real broker, for integration tests."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import redis
from driftrec.ops.settings import Settings
from driftrec.ops.worker_process import WorkerProcess


def start_worker(settings: Settings, data_dir: Path, log_path: Path) -> WorkerProcess:
    """A worker with short snapshot and checkpoint cadences, so tests finish quickly."""
    return WorkerProcess(
        settings,
        log_path,
        data_dir=data_dir,
        snapshot_every_s=1.0,
        checkpoint_every_s=2.0,
        checkpoint_every_examples=2000,
        web_port=0,
    )


def trainer_status(settings: Settings) -> dict[str, Any] | None:
    raw = redis.Redis.from_url(settings.redis_url).get(f"{settings.redis_prefix}metrics:trainer")
    return json.loads(raw) if raw else None


def joiner_statuses(settings: Settings) -> dict[str, dict[str, Any]]:
    raw = redis.Redis.from_url(settings.redis_url).hgetall(f"{settings.redis_prefix}metrics:joiner")
    return {k.decode(): json.loads(v) for k, v in raw.items()}


def wait_for_examples(
    settings: Settings, expected: int, timeout_s: float, workers: list[WorkerProcess]
) -> int:
    """Wait until the trainer has applied ``expected`` examples and checkpointed them."""
    deadline = time.monotonic() + timeout_s
    seen = -1
    while time.monotonic() < deadline:
        status = trainer_status(settings)
        if status:
            seen = int(status["examples_seen"])
            if seen >= expected and status.get("checkpoint"):
                time.sleep(3.0)  # anything extra (a double-apply) would show up now
                status = trainer_status(settings) or status
                return int(status["examples_seen"])
        for worker in workers:
            if worker.proc.poll() is not None:
                raise AssertionError(
                    f"worker exited with {worker.proc.returncode}:\n{worker.log_tail()}"
                )
        time.sleep(0.5)
    logs = "\n---\n".join(w.log_tail() for w in workers)
    raise AssertionError(f"trainer applied {seen} of {expected} examples in {timeout_s} s\n{logs}")
