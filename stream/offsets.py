"""Kafka's committed offsets follow the state that covers them, never faust's acks.

The joiner's snapshots and the trainer's checkpoints each record the last source offset
they cover; that record is the truth, and Kafka's committed offset only says where a
new owner starts reading. So the agents' topics are declared with ``acks=False`` and
the agents commit, after a snapshot or checkpoint is written, exactly the offsets it
covers. faust's own acking cannot be trusted with this: during a rebalance it acks the
messages it skips (those fetched in an older generation, or while flow is suspended),
and it may commit those acks before it seeks to the committed offsets, moving a new
owner past messages nobody processed.

On assignment, where Kafka's committed offset is past what the state covers (a Redis
restored from an older copy), the agents ``rewind`` it, so the gap replays. They do it
from faust's ``on_rebalance_complete`` signal, which faust (in an app without tables,
as driftrec's is) awaits right before it seeks every assigned partition to its committed
offset and resumes the streams: a rewind any later would leave the consumer where the
old offset put it. Messages at or below the state's offset are skipped by the agents
themselves.

faust's own recovery from a rebalance also needs a fix: messages fetched while the flow
is stopped are dropped (their read offset still moves on), and faust trusts its seek to
the committed offsets to fetch them again; aiokafka's ``seek_to_committed`` leaves a
partition committed at 0 where it is, so the first messages of a young partition were
lost (a new owner's first batch began at offset 144 with a fresh state). Our consumer
(``SeekingTransport``) seeks those partitions to 0 as well.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import faust
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP

__all__ = ["SeekingTransport", "commit", "rewind"]

log = logging.getLogger(__name__)


def _owned(app: faust.App, topic: str) -> dict[int, Any]:
    consumer: Any = app.consumer  # faust's aiokafka Consumer; ConsumerT declares neither call
    return {tp.partition: tp for tp in consumer.assignment() if tp.topic == topic}


async def commit(app: faust.App, topic: str, next_offsets: Mapping[int, int]) -> bool:
    """Commit, per partition of ``topic`` this worker owns, the next offset to read.
    False when the group rebalanced meanwhile (the next owner starts from the state)."""
    owned = _owned(app, topic)
    offsets = {owned[p]: o for p, o in next_offsets.items() if p in owned and o > 0}
    if not offsets:
        return False
    # faust has no public call to commit an offset of our choosing; this is it.
    return bool(await app.consumer._commit(offsets))  # type: ignore[attr-defined]


async def rewind(app: faust.App, topic: str, next_offsets: Mapping[int, int]) -> None:
    """Where Kafka's committed offset of an owned partition of ``topic`` is past
    ``next_offsets`` (partition -> the next offset the state needs), or missing, commit
    and seek to that one."""
    consumer: Any = app.consumer
    owned = _owned(app, topic)
    wanted = {owned[p]: o for p, o in next_offsets.items() if p in owned}
    if not wanted:
        return  # and a worker assigned nothing at all must not ask (aiokafka asserts)
    committed = await consumer.seek_to_committed()
    # Past the state: a Redis restored from an older copy. Nothing committed: aiokafka
    # then leaves the partition where it was, which need not be where the state is.
    back = {
        tp: o
        for tp, o in wanted.items()
        if committed.get(tp) is None or committed[tp] < 0 or committed[tp] > o
    }
    if back:
        ahead = any((committed.get(tp) or 0) > o for tp, o in back.items())
        (log.warning if ahead else log.info)("rewinding %s to the offsets its state covers", back)
        await consumer._commit(back)
        # The seek above ran before this commit, and faust's next one is skipped when
        # another rebalance has begun meanwhile: move the position now.
        for tp, offset in back.items():
            await consumer.seek(tp, offset)


class _SeekingConsumer(aiokafka_driver.Consumer):
    """faust's aiokafka consumer, whose seek to the committed offsets also moves the
    partitions committed at 0 (aiokafka skips them: ``if offset and offset > 0``)."""

    async def seek_to_committed(self) -> Mapping[TP, int]:
        committed: Mapping[TP, int] = await super().seek_to_committed()
        for tp, offset in committed.items():
            if offset == 0:
                await self._seek(tp, 0)
        return committed


class SeekingTransport(aiokafka_driver.Transport):
    """The aiokafka transport with ``_SeekingConsumer``: give it to an app with
    ``app.transport = SeekingTransport(app.conf.broker_consumer, app)``."""

    Consumer = _SeekingConsumer
