"""The joiner agent: events in, labelled examples and dead letters out.

Thin by design (CONVENTIONS point 6): it takes batches of raw messages, hands them
to ``JoinWorker.process`` and emits what comes back. A message is acked only
after the examples it produced are flushed and the state it changed is
snapshotted (see stream/join_worker.py), on the agent's own cadence or on a timer
when the stream goes quiet.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from typing import Any

import faust
import redis
from driftrec.core import DeadLetter, DriftrecConfig, encode
from driftrec.stream.catalog import Catalog
from driftrec.stream.join_worker import JoinWorker

__all__ = ["register_joiner"]

log = logging.getLogger(__name__)


def _raw_topic(app: faust.App, name: str, partitions: int | None = None) -> Any:
    return app.topic(name, key_serializer="raw", value_serializer="raw", partitions=partitions)


def register_joiner(app: faust.App, settings: DriftrecConfig) -> JoinWorker:
    """Register the joiner agent, the catalog follower and the snapshot timer on ``app``."""
    events = _raw_topic(app, settings.topic_events, settings.partitions)
    examples = _raw_topic(app, settings.topic_examples, 1)
    dead = _raw_topic(app, settings.topic_deadletter, 1)
    catalog = Catalog()
    worker = JoinWorker(settings, redis.Redis.from_url(settings.redis_url), catalog)
    lock = asyncio.Lock()
    unacked: list[Any] = []
    streams: list[Any] = []

    async def send_dead_letter(letter: DeadLetter) -> None:
        await dead.send(key=(letter.topic or "").encode(), value=encode(letter))

    worker_id = f"{socket.gethostname()}:{os.getpid()}"

    async def commit() -> None:
        """Flush what we emitted, snapshot the state, then ack the messages it covers."""
        if not unacked:
            return
        await app.producer.flush()
        worker.save_snapshots()
        status = {"ts": time.time(), "partitions": sorted(worker.states), **worker.counts}
        worker.redis.hset(f"{settings.redis_prefix}metrics:joiner", worker_id, json.dumps(status))
        stream = streams[-1]
        for event in unacked:
            await stream.ack(event)
        unacked.clear()

    @app.task  # type: ignore[untyped-decorator]  # faust's decorators are untyped
    async def follow_catalog() -> None:
        await catalog.follow(settings, send_dead_letter, worker.features.write_items)

    @app.agent(events, name="joiner")
    async def joiner(stream: Any) -> None:  # a faust.Stream; StreamT lacks noack_take
        streams.append(stream)
        async for batch in stream.noack_take(settings.take_max, within=settings.take_within_s):
            async with lock:
                messages = [(e.message.partition, e.message.offset, e.value) for e in batch]
                out = worker.process(messages)
                for example in out.examples:
                    await examples.send(
                        key=example.impression.user_id.encode(), value=encode(example)
                    )
                for letter in out.dead_letters:
                    await send_dead_letter(letter)
                if out.examples:
                    # A busy joiner never yields to the producer's sender task on its own,
                    # so examples would wait a whole batch in the buffer: push them now.
                    await app.producer.flush()
                unacked.extend(batch)
                if worker.snapshot_due():
                    await commit()

    @app.timer(settings.snapshot_every_s)  # type: ignore[untyped-decorator]  # faust's decorators are untyped
    async def snapshot_when_quiet() -> None:
        async with lock:
            if worker.snapshot_due():
                await commit()

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # mode types handlers as *args
    async def on_assigned(sender: Any, assigned: set[Any], **kwargs: Any) -> None:
        owned = {tp.partition for tp in assigned if tp.topic == settings.topic_events}
        async with lock:
            worker.keep_only(owned)
            # Messages of revoked partitions will be redelivered to their new owner.
            unacked[:] = [e for e in unacked if e.message.partition in owned]

    return worker
