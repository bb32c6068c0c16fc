"""The consumer's seek to the committed offsets (stream/offsets.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from driftrec.stream.offsets import SeekingTransport
from faust.types import TP


class _Thread:
    """The two calls of faust's consumer thread that ``seek_to_committed`` makes."""

    def __init__(self, committed: Mapping[TP, int | None]) -> None:
        self.committed = committed
        self.seeks: list[tuple[TP, int]] = []

    async def seek_to_committed(self) -> Mapping[TP, int | None]:
        return self.committed  # aiokafka has moved only the partitions committed past 0

    def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))


def test_partitions_committed_at_zero_are_sought_to_zero() -> None:
    # Without this, messages faust fetched and dropped while a rebalance stopped the
    # flow are never fetched again on a partition committed at 0 (the stress target
    # lost a young partition's first 144 messages this way).
    consumer = object.__new__(SeekingTransport.Consumer)  # no broker: only the seek logic
    young, older, untouched = TP("events", 0), TP("events", 1), TP("events", 2)
    consumer._thread = thread = _Thread({young: 0, older: 7, untouched: None})
    committed = asyncio.run(consumer.seek_to_committed())
    assert thread.seeks == [(young, 0)]
    assert committed == {young: 0, older: 7, untouched: None}
