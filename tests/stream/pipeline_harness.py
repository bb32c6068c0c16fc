"""Run real `driftrec worker` processes against the real broker, for integration tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import redis
from kafka.partitioner.default import murmur2

from ops.settings import Settings
from producers.records import Record
from producers.schemas import Click, Conversion, Dwell, Impression, Item
from stream.features import FeatureState
from stream.join_worker import joiner_config
from stream.joiner import JoinerState, Rejection, handle


def worker_env(settings: Settings, data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    values: dict[str, Any] = {
        "APP_ID": settings.app_id,
        "KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "REDIS_URL": settings.redis_url,
        "REDIS_PREFIX": settings.redis_prefix,
        "TOPIC_EVENTS": settings.topic_events,
        "TOPIC_ITEMS": settings.topic_items,
        "TOPIC_EXAMPLES": settings.topic_examples,
        "TOPIC_METRICS": settings.topic_metrics,
        "TOPIC_DEADLETTER": settings.topic_deadletter,
        "PARTITIONS": settings.partitions,
        "DATA_DIR": data_dir,
        "SNAPSHOT_EVERY_S": 1.0,
        "CHECKPOINT_EVERY_S": 2.0,
        "CHECKPOINT_EVERY_EXAMPLES": 2000,
        "WEB_PORT": 0,
        "TEXT_MODEL": "hashing:32",
    }
    env.update({f"DRIFTREC_{k}": str(v) for k, v in values.items()})
    return env


class WorkerProcess:
    """One `driftrec worker` subprocess with its log in ``log_path``."""

    def __init__(self, settings: Settings, data_dir: Path, log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ops.cli", "worker", "--loglevel", "warn"],
            env=worker_env(settings, data_dir),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        """kill -9: no chance to flush, snapshot or commit anything."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


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


def oracle_examples(records: Iterable[Record], settings: Settings) -> list[str]:
    """Impression ids the stream must emit: one joiner per partition, keyed as Kafka keys them."""
    config = joiner_config(settings)
    states = [(JoinerState(config), FeatureState()) for _ in range(settings.partitions)]
    emitted: list[str] = []
    for record in records:
        if isinstance(record, Item) or not isinstance(
            record, Impression | Click | Conversion | Dwell
        ):
            continue
        partition = (murmur2(record.user_id.encode()) & 0x7FFFFFFF) % settings.partitions
        joiner, features = states[partition]
        emitted += [
            o.impression.event_id
            for o in handle(record, joiner, features)
            if not isinstance(o, Rejection)
        ]
    return emitted
