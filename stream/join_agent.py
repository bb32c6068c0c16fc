"""The joiner agent: events in, labelled examples and dead letters out.

Thin by design (CONVENTIONS point 6): it takes batches of raw messages, hands them to
``JoinWorker.process`` and emits what comes back. Offsets are committed only after the
examples they produced are flushed and the state they changed is snapshotted (see
stream/join_worker.py and stream/offsets.py), on the agent's own cadence or on a timer,
which also closes the windows of idle partitions.

Rebalances: on revoke, unsaved work of the revoked partitions is dropped (never
half-written); the next owner reads on from the snapshot's offset. On assignment the
worker claims its partitions (a new owner epoch fences out the previous owner's late
writes) and loads their snapshots; before faust seeks to the committed offsets, it
rewinds Kafka's committed offset to a snapshot's where Kafka ran ahead of it (a Redis
restored from an older copy), so the gap is replayed, not skipped.

Nothing heavy runs on the event loop: ``process`` (pure Python) runs on a thread of its
own and Redis calls in another, waiting out an outage, so heartbeats, timers and the
trainer are served while a batch is joined. Where the trainer shares the process, the
joiner waits before a batch while the trainer is too far behind (stream/pacing.py).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust
import redis
from driftrec.core import (
    EVENT_TYPES,
    MAX_PACK_BYTES,
    DeadLetter,
    DriftrecConfig,
    Example,
    encode,
    encode_pack,
)
from driftrec.stream.batches import current
from driftrec.stream.catalog import Catalog
from driftrec.stream.history import HistoryWriter
from driftrec.stream.join_worker import JoinWorker
from driftrec.stream.offsets import commit as commit_offsets
from driftrec.stream.offsets import rewind
from driftrec.stream.pacing import TrainerBacklog
from driftrec.stream.retry import REDIS_OUTAGE, call_redis
from driftrec.stream.telemetry import WorkerMetrics, consumer_lag

__all__ = ["register_joiner"]

log = logging.getLogger(__name__)


def _raw_topic(app: faust.App, name: str, partitions: int | None = None, acks: bool = True) -> Any:
    return app.topic(
        name, key_serializer="raw", value_serializer="raw", partitions=partitions, acks=acks
    )


def _forget_stopped(client: redis.Redis, key: str, before: float) -> None:
    """Delete the statuses of workers silent since before ``before`` (each process
    writes its own entry, so without this the hash would grow with every restart)."""
    stale = [w for w, raw in client.hgetall(key).items() if json.loads(raw).get("ts", 0) < before]
    if stale:
        client.hdel(key, *stale)


def register_joiner(
    app: faust.App,
    settings: DriftrecConfig,
    backlog: TrainerBacklog | None = None,
    *,
    metrics: WorkerMetrics | None = None,
) -> JoinWorker:
    """Register the joiner agent, the catalog follower, the snapshot timer and the
    rebalance handlers on ``app``; with ``backlog``, the joiner waits for the trainer
    beside it (stream/pacing.py); counters and lag go to ``metrics``."""
    # Offsets follow the snapshots, not faust's acks (stream/offsets.py).
    events = _raw_topic(app, settings.topic_events, settings.partitions, acks=False)
    examples = _raw_topic(app, settings.topic_examples, 1)
    dead = _raw_topic(app, settings.topic_deadletter, 1)
    catalog = Catalog()
    worker = JoinWorker(settings, redis.Redis.from_url(settings.redis_url), catalog)
    lock = asyncio.Lock()
    worker_id = f"{socket.gethostname()}:{os.getpid()}"
    joining = ThreadPoolExecutor(max_workers=1, thread_name_prefix="driftrec-joiner")
    metrics = metrics or WorkerMetrics()
    history = HistoryWriter(worker.redis, settings, worker_id)
    beats = itertools.count()  # heartbeats written by this worker

    async def send_dead_letter(letter: DeadLetter) -> None:
        metrics.dead_letter("joiner", letter.reason)
        await dead.send(key=(letter.topic or "").encode(), value=encode(letter))

    async def emit(out: list[Example]) -> None:
        """Send examples in packs (one message per pack: a stream's cost is per message)."""
        pack: list[bytes] = []
        size = 0
        sent: list[tuple[Awaitable[Any], int]] = []
        for encoded in map(encode, out):
            if pack and size + len(encoded) > MAX_PACK_BYTES:
                sent.append((await examples.send(key=b"pack", value=encode_pack(pack)), len(pack)))
                pack, size = [], 0
            pack.append(encoded)
            size += len(encoded) + 1
        if pack:
            sent.append((await examples.send(key=b"pack", value=encode_pack(pack)), len(pack)))
            # A busy joiner never yields to the producer's sender task on its own, so
            # examples would wait a whole batch in the buffer: push them now.
            await app.producer.flush()
        if backlog is not None:
            for metadata, n in sent:
                backlog.sent((await metadata).offset, n)

    async def commit() -> None:
        """Flush what we emitted, snapshot the state, then commit the offsets it covers."""
        if not any(s.dirty for s in worker.states.values()):
            return
        await app.producer.flush()
        fenced = await call_redis(worker.save_snapshots, what="joiner snapshot")
        if fenced:
            log.warning("partitions %s were claimed by another worker: dropped", sorted(fenced))
        covered = {p: s.offset + 1 for p, s in worker.states.items()}
        await commit_offsets(app, settings.topic_events, covered)

    async def heartbeat() -> None:
        """Say this worker is alive, what it owns, its counters and lag (for `watch`, the
        dashboard's history and Prometheus); readers drop a worker whose heartbeat is older
        than their timeout, so a stopped one disappears."""
        covered = {p: s.offset + 1 for p, s in worker.states.items()}
        lag = consumer_lag(app, settings.topic_events, covered)
        metrics.joined(worker.counts, EVENT_TYPES)
        metrics.lags(settings.topic_events, lag, worker.states)
        now = time.time()
        status = {
            "ts": now,
            "partitions": sorted(worker.states),
            "lag": {str(p): n for p, n in lag.items()},
            **worker.counts,
        }
        key = f"{settings.redis_prefix}metrics:joiner"

        def write() -> None:
            worker.redis.hset(key, worker_id, json.dumps(status))
            history.append(history.keys.joiner, status)
            if next(beats) % 100 == 0:  # every few minutes: forget workers gone for long
                _forget_stopped(worker.redis, key, now - settings.history_retention_s)

        try:  # a status is for people: skip it while Redis is away
            await asyncio.to_thread(write)
        except REDIS_OUTAGE as error:
            log.warning("joiner status not written: %s", error)

    @app.task  # type: ignore[untyped-decorator]  # faust's decorators are untyped
    async def follow_catalog() -> None:
        async def write_items(items: list[Any]) -> None:
            await call_redis(worker.features.write_items, items, what="catalog write")

        await catalog.follow(settings, send_dead_letter, write_items)

    @app.agent(events, name="joiner")
    async def joiner(stream: Any) -> None:  # a faust.Stream; StreamT lacks noack_take
        loop = asyncio.get_running_loop()
        async for taken in stream.noack_take(settings.take_max, within=settings.take_within_s):
            if backlog is not None:
                await backlog.room()  # outside the lock: snapshots and rebalances go on
            async with lock:
                batch = current(app, taken)
                messages = [(e.message.partition, e.message.offset, e.value) for e in batch]
                # Joining is pure Python: on a thread of its own, so the loop keeps
                # serving the trainer, heartbeats and timers while a batch is joined.
                out = await loop.run_in_executor(joining, worker.process, messages)
                await emit(out.examples)
                for letter in out.dead_letters:
                    await send_dead_letter(letter)
                if worker.snapshot_due():
                    await commit()
                    await heartbeat()

    @app.timer(settings.snapshot_every_s)  # type: ignore[untyped-decorator]  # faust's decorators are untyped
    async def snapshot_when_quiet() -> None:
        if lock.locked():
            return  # the agent is busy, and snapshots by itself when one is due
        async with lock:
            await emit(worker.close_idle())
            if worker.snapshot_due():
                await commit()
            await heartbeat()

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode types handlers as *args
    async def on_revoked(sender: Any, revoked: set[Any], **kwargs: Any) -> None:
        gone = {tp.partition for tp in revoked if tp.topic == settings.topic_events}
        async with lock:
            worker.drop(gone)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # mode types handlers as *args
    async def on_assigned(sender: Any, assigned: set[Any], **kwargs: Any) -> None:
        owned = {tp.partition for tp in assigned if tp.topic == settings.topic_events}
        async with lock:
            worker.drop(set(worker.states) - owned)
            new = owned - set(worker.states)
            claimed = await call_redis(worker.store.claim, new, what="joiner claim")
            worker.adopt(claimed)
            worker.owned = owned

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]  # mode types handlers as *args
    async def rewind_to_snapshots(sender: Any, **kwargs: Any) -> None:
        # faust seeks to the committed offsets right after this signal; the claim, which
        # took the lock first, has loaded the snapshots by the time we get it.
        async with lock:
            covered = {p: s.offset + 1 for p, s in worker.states.items()}
            await rewind(app, settings.topic_events, covered)

    return worker
