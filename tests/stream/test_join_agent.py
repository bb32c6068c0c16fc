"""The joiner agent through faust's test context: decode, hand to the joiner, emit."""

from __future__ import annotations

import asyncio
import gc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import faust
import pytest
from driftrec.core.schemas import Click, Impression, encode
from driftrec.ops.settings import Settings
from driftrec.stream.join_agent import register_joiner
from driftrec.stream.testing import run_agent

pytestmark = pytest.mark.integration  # snapshots go to the real Redis

T0 = datetime(2024, 1, 1, tzinfo=UTC)


# faust's test context leaves its own event loop and sockets for the GC to close.
@pytest.mark.filterwarnings(
    "ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning"
)
def test_agent_joins_and_dead_letters(
    isolated: Settings, redis_prefix: str, tmp_path: Path
) -> None:
    asyncio.run(_run(isolated, redis_prefix, tmp_path))
    gc.collect()  # while the warning filter above is in force


async def _run(isolated: Settings, redis_prefix: str, tmp_path: Path) -> None:
    settings = isolated.model_copy(
        update={"redis_prefix": redis_prefix, "data_dir": tmp_path, "take_within_s": 0.05}
    )
    app = faust.App(
        f"test-{redis_prefix}", broker=f"kafka://{settings.kafka_bootstrap}", store="memory://"
    )
    worker = register_joiner(app, settings)
    events = [
        b"not json",
        encode(Impression(event_id="i1", user_id="u", item_id="a", ts=T0)),
        encode(Click(event_id="c1", user_id="u", item_id="a", ts=T0 + timedelta(seconds=5))),
        # An hour later the click window of i1 has closed in event time.
        encode(Impression(event_id="i2", user_id="u", item_id="b", ts=T0 + timedelta(hours=3))),
    ]
    # offsets 0, 1, 2, 3
    messages = [(b"u", value) for value in events]
    await run_agent(app.agents["joiner"], messages, lambda: worker.counts["impression"] == 2)
    assert worker.counts["examples"] == 1 and worker.counts["dead_letters"] == 1
    assert worker.counts["click"] == 1
    state = worker.states[0]
    assert state.offset == 3 and state.joiner.counters.positives == 1
