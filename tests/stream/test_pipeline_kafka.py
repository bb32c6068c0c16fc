"""The whole stream path on the real broker and Redis: replay -> joiner -> trainer.

Each test starts real `driftrec worker` processes with their own topics, consumer
group, Redis prefix and data directory, and checks the exact set of example ids the
checkpointed model learned against the offline oracle: none missing, none twice.
`make stress` repeats the same scenarios round after round under CPU load.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from driftrec.ops.settings import Settings

from tests.stream import pipeline_harness as harness

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_EVENTS = 12_000
Scenario = Callable[[Settings, Path, list[harness.WorkerProcess], int], None]


@pytest.fixture
def pipeline(isolated: Settings, redis_prefix: str) -> Settings:
    return isolated.model_copy(
        update={"app_id": f"test-{uuid.uuid4().hex[:8]}", "redis_prefix": redis_prefix}
    )


@pytest.fixture
def workers() -> Iterator[list[harness.WorkerProcess]]:
    started: list[harness.WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()


@pytest.mark.parametrize(
    "scenario",
    [
        harness.run_uninterrupted,
        harness.run_kill_single,
        harness.run_two_workers,
        harness.run_kill_one_of_two,
        harness.run_churn,
        harness.run_redis_restart,
        harness.run_redis_lost,
        harness.run_redis_emptied,
        harness.run_broker_restart,
    ],
    ids=lambda s: s.__name__.removeprefix("run_"),
)
def test_exactly_the_expected_examples_are_learned(
    scenario: Scenario,
    pipeline: Settings,
    workers: list[harness.WorkerProcess],
    tmp_path: Path,
) -> None:
    scenario(pipeline, tmp_path, workers, N_EVENTS)
