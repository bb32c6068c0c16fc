"""The trainer agent learns only batches of the consumer's current generation, judged
when it gets to them: a batch that waited out a rebalance must not move the offsets."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from driftrec.ops.settings import Settings
from driftrec.stream.telemetry import WorkerMetrics
from driftrec.stream.train_agent import _TrainerLoop

pytestmark = pytest.mark.integration  # the trainer would resume from the real Redis


def _event(generation: int, offset: int) -> Any:
    message = SimpleNamespace(partition=0, offset=offset, generation_id=generation, timestamp=0.0)
    return SimpleNamespace(message=message, value=b"{}")


def test_a_batch_taken_before_a_rebalance_is_dropped_though_the_partition_came_back(
    isolated: Settings, redis_prefix: str, tmp_path: Path
) -> None:
    settings = isolated.model_copy(update={"redis_prefix": redis_prefix, "data_dir": tmp_path})
    app = faust.App(f"test-{redis_prefix}", broker=f"kafka://{settings.kafka_bootstrap}")
    loop = _TrainerLoop(app, settings, None, WorkerMetrics())

    async def scenario() -> None:
        app.consumer_generation_id = 4
        stale = [_event(4, 6), _event(4, 7)]  # taken in generation 4 ...
        async with loop.lock:  # ... while a rebalance held the trainer's lock
            loop.release()
            app.consumer_generation_id = 5
            loop.owned = True  # the examples partition came back to this worker
        await loop.handle(stale)

    asyncio.run(scenario())
    # Learning it would have built the trainer and moved its offsets to 7, past the
    # messages the rewind to the checkpoint replays.
    assert loop.trainer is None
