"""`make stress`: the crash, rebalance, broker- and Redis-restart scenarios (a Redis that
comes back on its append-only file, and one that comes back empty), round after round,
while busy processes keep both cores loaded. Not part of `make test` (marker ``stress``).

``STRESS_ROUNDS`` (default 20) rounds of every scenario; ``STRESS_EVENTS`` (default
6000) events per scenario. pytest's ``-x`` stops at the first failing round.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from driftrec.ops.settings import Settings

from tests.stream import pipeline_harness as harness

pytestmark = [pytest.mark.integration, pytest.mark.stress]

ROUNDS = int(os.environ.get("STRESS_ROUNDS", "20"))
EVENTS = int(os.environ.get("STRESS_EVENTS", "6000"))
SCENARIOS = {
    "kill_single": harness.run_kill_single,
    "two_workers": harness.run_two_workers,
    "kill_one_of_two": harness.run_kill_one_of_two,
    "churn": harness.run_churn,
    "broker_restart": harness.run_broker_restart,
    "redis_restart": harness.run_redis_restart,
    "redis_emptied": harness.run_redis_emptied,
}


def _burn(stop: mp.synchronize.Event) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


@pytest.fixture(scope="module")
def cpu_contention() -> Iterator[None]:
    """One busy process per core for the whole run."""
    stop = mp.Event()
    burners = [
        mp.Process(target=_burn, args=(stop,), daemon=True) for _ in range(os.cpu_count() or 2)
    ]
    for burner in burners:
        burner.start()
    yield
    stop.set()
    for burner in burners:
        burner.join(5)


# Round-major order: every scenario once, then every scenario again, ...
@pytest.mark.parametrize("name", list(SCENARIOS))
@pytest.mark.parametrize("round_", range(1, ROUNDS + 1))
def test_round(
    round_: int,
    name: str,
    cpu_contention: None,
    isolated: Settings,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    settings = isolated.model_copy(
        update={"app_id": f"stress-{uuid.uuid4().hex[:8]}", "redis_prefix": redis_prefix}
    )
    workers: list[harness.WorkerProcess] = []
    try:
        SCENARIOS[name](settings, tmp_path, workers, EVENTS)
    finally:
        for worker in workers:
            worker.stop()
