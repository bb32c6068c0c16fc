"""The whole stream path on the real broker and Redis: replay -> joiner -> trainer.

Each test starts real `driftrec worker` processes with their own topics, consumer
group, Redis prefix and data directory.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from driftrec.features import joiner_config
from driftrec.ops.settings import Settings
from driftrec.producers.replay import replay
from driftrec.producers.sources import open_source
from driftrec.stream import PartitionState
from driftrec.stream.testing import expected_examples

from tests.stream.pipeline_harness import (
    WorkerProcess,
    joiner_statuses,
    start_worker,
    trainer_status,
    wait_for_examples,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_EVENTS = 12_000
LOG_OPTIONS = {"n_events": str(N_EVENTS), "n_users": "400", "seed": "11"}


@pytest.fixture
def pipeline(isolated: Settings, redis_prefix: str) -> Settings:
    return isolated.model_copy(
        update={"app_id": f"test-{uuid.uuid4().hex[:8]}", "redis_prefix": redis_prefix}
    )


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()


def test_uninterrupted_run_applies_exactly_the_expected_examples(
    pipeline: Settings, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    expected = expected_examples(open_source("default", "synthetic", options=LOG_OPTIONS), pipeline)
    assert len(expected) == len(set(expected)) > 5000
    replay(open_source("default", "synthetic", options=LOG_OPTIONS), pipeline)
    workers.append(start_worker(pipeline, tmp_path / "data", tmp_path / "worker.log"))
    assert wait_for_examples(pipeline, len(expected), 180, workers) == len(expected)


def test_kill_minus_nine_mid_replay_loses_and_duplicates_nothing(
    pipeline: Settings, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    records = list(open_source("default", "synthetic", options=LOG_OPTIONS))
    expected = expected_examples(records, pipeline)
    first = start_worker(pipeline, tmp_path / "data", tmp_path / "worker1.log")
    workers.append(first)
    half = len(records) // 2
    replay(records[:half], pipeline)
    # Let the worker get well into the first half, then kill it without warning.
    deadline = time.monotonic() + 120
    while (trainer_status(pipeline) or {}).get("examples_seen", 0) < 1500:
        assert time.monotonic() < deadline, first.log_tail()
        time.sleep(0.2)
    first.kill()
    replay(records[half:], pipeline)
    second = start_worker(pipeline, tmp_path / "data", tmp_path / "worker2.log")
    workers.append(second)
    assert wait_for_examples(pipeline, len(expected), 240, [second]) == len(expected)


def test_two_workers_share_the_joiner_and_counts_add_up(
    pipeline: Settings, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    records = list(open_source("default", "synthetic", options=LOG_OPTIONS))
    expected = expected_examples(records, pipeline)
    workers.append(start_worker(pipeline, tmp_path / "data", tmp_path / "w1.log"))
    workers.append(start_worker(pipeline, tmp_path / "data", tmp_path / "w2.log"))
    time.sleep(8)  # both join the group before data flows
    summary = replay(records, pipeline)
    assert wait_for_examples(pipeline, len(expected), 240, workers) == len(expected)
    statuses = joiner_statuses(pipeline)
    busy = {wid: s for wid, s in statuses.items() if s.get("impression", 0) > 0}
    assert len(busy) == 2, f"both workers should join events: {statuses}"
    owned = [set(s["partitions"]) for s in busy.values()]
    assert not owned[0] & owned[1] and owned[0] | owned[1] == set(range(pipeline.partitions))
    processed = sum(
        s.get(kind, 0)
        for s in busy.values()
        for kind in ("impression", "click", "conversion", "dwell")
    )
    # At least once: a rebalance redelivers what a worker had not yet snapshotted, so the
    # workers may count an event twice; the joiner state itself covers each event once.
    assert processed >= summary.events
    client = redis.Redis.from_url(pipeline.redis_url)
    key = f"{pipeline.redis_prefix}stream:{pipeline.app_id}:{pipeline.topic_events}:p"
    covered = sum(
        PartitionState.from_bytes(client.get(f"{key}{p}"), joiner_config(pipeline)).offset + 1
        for p in range(pipeline.partitions)
    )
    assert covered == summary.events
