"""What tests and users share to check a stream.

- ``expected_examples``: the offline oracle. It runs the same pure joiner the agents run,
  one per partition, with users keyed to partitions the way the replay's producer keys
  them: the reference the integration tests and `driftrec bench pipeline` compare the
  live stream to.
- ``small_world``: a tiny deterministic log (a catalog, impressions, clicks,
  conversions, dwell) to feed an agent or a pipeline.
- ``run_agent``: put messages into an agent through faust's test context and wait, with
  a deadline, until a condition holds.

>>> records = small_world(users=2, items=3, impressions_per_user=4)
>>> sum(isinstance(r, Item) for r in records), sum(isinstance(r, Impression) for r in records)
(3, 8)
>>> from driftrec.core import DriftrecConfig
>>> len(expected_examples(records, DriftrecConfig(partitions=2)))  # 3 still in their windows
5
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from driftrec.core import Click, Conversion, DriftrecConfig, Dwell, Impression, Item
from driftrec.features import FeatureState, JoinerState, Rejection, handle, joiner_config
from driftrec.producers import Record
from kafka.partitioner.default import murmur2

__all__ = ["expected_examples", "partition_of", "run_agent", "small_world"]

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def partition_of(user_id: str, partitions: int) -> int:
    """The events partition of ``user_id``: Kafka's default partitioner on the key."""
    return int(murmur2(user_id.encode()) & 0x7FFFFFFF) % partitions


def expected_examples(records: Iterable[Record], config: DriftrecConfig) -> list[str]:
    """Impression ids the stream will emit for ``records``: one joiner per partition,
    with users keyed to partitions the way the replay's producer keys them. The
    reference that tests and `driftrec bench pipeline` compare the live stream to."""
    windows = joiner_config(config)
    states = [(JoinerState(windows), FeatureState()) for _ in range(config.partitions)]
    emitted: list[str] = []
    for record in records:
        if not isinstance(record, Impression | Click | Conversion | Dwell):
            continue
        partition = partition_of(record.user_id, config.partitions)
        joiner, features = states[partition]
        emitted += [
            o.impression.event_id
            for o in handle(record, joiner, features)
            if not isinstance(o, Rejection)
        ]
    return emitted


def small_world(
    *, users: int = 3, items: int = 4, impressions_per_user: int = 5, seed: int = 0
) -> list[Record]:
    """A catalog of ``items`` and, per user, impressions 45 minutes apart (so attribution
    windows close while the log runs; the newest impressions stay pending); about a third are
    clicked 5 s later, and some clicks convert (with dwell) 60 s later. Event ids are
    unique and deterministic; events come in time order."""
    rng = random.Random(seed)
    records: list[Record] = [
        Item(
            item_id=f"i{j}",
            title=f"item {j}",
            text=f"text of item {j}",
            category=f"c{j % 2}",
            ts=T0,
        )
        for j in range(items)
    ]
    events: list[Record] = []
    for u in range(users):
        user = f"u{u}"
        for k in range(impressions_per_user):
            ts = T0 + timedelta(minutes=45 * k, seconds=u)
            item = f"i{rng.randrange(items)}"
            shown = f"{user}-imp{k}"
            events.append(
                Impression(event_id=shown, user_id=user, item_id=item, ts=ts, position=k % 5)
            )
            if rng.random() < 0.35:
                events.append(
                    Click(
                        event_id=f"{shown}-c",
                        user_id=user,
                        item_id=item,
                        ts=ts + timedelta(seconds=5),
                    )
                )
                if rng.random() < 0.5:
                    later = ts + timedelta(seconds=60)
                    events.append(
                        Conversion(event_id=f"{shown}-v", user_id=user, item_id=item, ts=later)
                    )
                    events.append(
                        Dwell(
                            event_id=f"{shown}-d",
                            user_id=user,
                            item_id=item,
                            ts=later,
                            seconds=42.0,
                        )
                    )
    events.sort(key=lambda r: r.ts)  # type: ignore[union-attr]  # every event has a ts
    return records + events


async def run_agent(
    agent: Any,
    messages: Sequence[tuple[bytes, bytes]],
    until: Callable[[], bool],
    *,
    partition: int = 0,
    timeout_s: float = 10.0,
) -> None:
    """Put (key, value) ``messages`` into a faust ``agent`` through its test context (at
    offsets 0, 1, ...) and wait until ``until()`` holds; raise with what was seen if it
    does not within ``timeout_s``."""
    async with agent.test_context() as context:
        for key, value in messages:
            await context.put(key=key, value=value, partition=partition)
        deadline = time.monotonic() + timeout_s
        while not until():
            if time.monotonic() > deadline:
                raise TimeoutError(f"agent {agent.name} did not get there in {timeout_s} s")
            await asyncio.sleep(0.02)
