"""The trainer agent: labelled examples in, model updates, metrics and checkpoints out.

The examples topic has one partition, so exactly one worker of the group runs the
trainer at a time (one writer per model). The worker assigned the partition rewinds
Kafka's committed offset to the current checkpoint's where Kafka ran ahead of it (before
faust seeks to it), and rebuilds the trainer from that checkpoint at its first batch
(loading a model inside the rebalance callback would hold up the whole group); offsets
are committed only after a checkpoint covering them is current (stream/offsets.py). Torch work runs in a
single-thread executor so heartbeats and rebalances are never starved. A timer
checkpoints when the stream goes quiet, so the tail of a replay is never left uncovered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import faust
import redis
import torch
from driftrec.core import DriftrecConfig, encode
from driftrec.online_update.embeddings import RedisVectorStore
from driftrec.online_update.registry import open_registry
from driftrec.online_update.training import (
    CheckpointPointer,
    FencedOut,
    PendingCheckpoint,
    Trainer,
    learner_config,
)
from driftrec.stream.batches import current
from driftrec.stream.history import HistoryWriter
from driftrec.stream.offsets import commit, rewind
from driftrec.stream.pacing import TrainerBacklog
from driftrec.stream.retry import REDIS_OUTAGE, call_redis
from driftrec.stream.telemetry import WorkerMetrics, consumer_lag, version_number

__all__ = ["build_trainer", "register_trainer"]

log = logging.getLogger(__name__)


def _next_offsets(topic: str, covered: Mapping[str, int]) -> dict[int, int]:
    """Partition -> next offset to read, from a checkpoint's "topic:partition" -> last
    offset it covers (a partition it does not cover starts at 0)."""
    next_offsets = {0: 0}
    for key, offset in covered.items():
        name, _, partition = key.rpartition(":")
        if name == topic:
            next_offsets[int(partition)] = offset + 1
    return next_offsets


def trainer_pointer(settings: DriftrecConfig, client: redis.Redis) -> CheckpointPointer:
    """The pointer to the current checkpoint of ``settings``' trainer."""
    return CheckpointPointer(client, f"{settings.redis_prefix}trainer:{settings.app_id}:")


def build_trainer(settings: DriftrecConfig, client: redis.Redis) -> Trainer:
    """A trainer for ``settings``, resumed from its last checkpoint when there is one."""
    # Contended cores make torch's intra-op threads fight; one thread is faster here.
    torch.set_num_threads(1)
    vectors = RedisVectorStore(client, prefix=f"{settings.redis_prefix}emb:")
    active = vectors.active_version()
    described = vectors.describe(active) if active else None
    text_dim = int(described["dim"]) if described else 384
    registry = open_registry(settings)
    trainer = Trainer(
        learner_config=learner_config(settings, text_dim),
        registry=registry,
        vectors=vectors,
        checkpoint_dir=Path(settings.data_dir) / "trainer" / settings.app_id,
        pointer=trainer_pointer(settings, client),
        topic=settings.topic_examples,
    )
    trainer.resume()
    return trainer


class _TrainerLoop:
    """State the agent and its timer share (both run on the event loop)."""

    def __init__(
        self,
        app: faust.App,
        settings: DriftrecConfig,
        backlog: TrainerBacklog | None,
        metrics: WorkerMetrics,
    ) -> None:
        self.app = app
        self.backlog = backlog
        self.settings = settings
        self.telemetry = metrics
        self.client = redis.Redis.from_url(settings.redis_url)
        self.history = HistoryWriter(self.client, settings, f"{socket.gethostname()}:{os.getpid()}")
        self.pointer = trainer_pointer(settings, self.client)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="driftrec-trainer")
        # Checkpoints are written on a thread of their own while learning goes on.
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="driftrec-checkpoint")
        self.writing: asyncio.Task[None] | None = None
        self.metrics = app.topic(
            settings.topic_metrics, key_serializer="raw", value_serializer="raw", partitions=1
        )
        self.dead = app.topic(
            settings.topic_deadletter, key_serializer="raw", value_serializer="raw", partitions=1
        )
        self.trainer: Trainer | None = None
        self.lock = asyncio.Lock()
        self.last_status = 0.0
        #: Whether this worker owns the examples partition (None before the first assignment).
        self.owned: bool | None = None

    async def _torch(self, fn: Any, *args: Any, what: str) -> Any:
        """Run trainer work on its own thread; wait out a Redis outage and try again."""
        return await call_redis(fn, *args, what=what, executor=self.executor)

    async def _build(self) -> Trainer:
        """The trainer, built from the current checkpoint; building it claims the model,
        so an earlier owner is fenced out."""
        self.trainer = await self._torch(
            build_trainer, self.settings, self.client, what="trainer resume"
        )
        return self.trainer

    async def rewind(self) -> None:
        """Read on from the offset the current checkpoint covers (the trainer is rebuilt
        from it at the next batch)."""
        topic = self.settings.topic_examples
        covered = await call_redis(self.pointer.covered, what="trainer checkpoint offsets")
        await rewind(self.app, topic, _next_offsets(topic, covered))

    def release(self) -> None:
        """The examples partition moved (or is moving) away: stop writing anything.
        The new owner resumes from the current checkpoint, and the fence stops a
        checkpoint of ours from replacing its."""
        self.trainer = None
        self.owned = False
        if self.backlog is not None:
            self.backlog.detach()

    async def handle(self, events: list[Any]) -> None:
        async with self.lock:
            # Filtered only now, under the lock: a batch taken before a rebalance may wait
            # here while the rebalance hands the partition back to this worker; learned
            # then, it would move the offsets past the messages the rewind replays.
            events = current(self.app, events)
            if self.owned is False or not events:
                return  # taken before the partition moved away; its owner replays it
            now = time.time()
            # faust gives the Kafka message timestamp (the joiner's send time) in seconds.
            messages = [
                (e.message.partition, e.message.offset, e.value, e.message.timestamp or now)
                for e in events
            ]
            trainer = self.trainer or await self._build()
            prepared = await self._torch(trainer.prepare, messages, what="trainer prepare")
            for letter in prepared.dead_letters:
                self.telemetry.dead_letter("trainer", letter.reason)
                await self.dead.send(key=b"trainer", value=encode(letter))
            embedding_before = trainer.embedding_version
            # Offsets move only once the batch is learned, so a retry repeats it whole.
            result = await self._torch(trainer.learn, prepared, what="trainer learn")
            if self.backlog is not None and prepared.last_offsets:
                self.backlog.learned(max(prepared.last_offsets.values()))
            learned_at = time.time()
            happened: list[dict[str, Any]] = []
            if trainer.embedding_version != embedding_before:
                happened.append(
                    {
                        "kind": "embedding-switch",
                        "version": trainer.embedding_version,
                        "previous": embedding_before,
                    }
                )
            for alarm in result.alarms if result is not None else ():
                log.warning(
                    "drift alarm: %s on %s at example %d",
                    alarm.detector,
                    alarm.task,
                    alarm.example_index,
                )
                happened.append({"kind": "drift-alarm", **alarm.to_dict()})
            if result is not None:
                self.telemetry.learned(
                    len(prepared.examples),
                    (learned_at - t for t in prepared.produced_at),
                    result.metrics,
                    ((a.detector, a.task) for a in result.alarms),
                )
            if happened:
                await self._record(happened)
            await self.checkpoint_if_due(trainer, force_status=False)

    async def checkpoint_if_due(self, trainer: Trainer, force_status: bool) -> None:
        """Start a checkpoint when one is due and none is being written: copy the state
        now (the offsets it covers are fixed here), write it in the background, and
        commit those offsets once it is current."""
        idle = self.writing is None or self.writing.done()
        if idle and trainer.checkpoint_due(
            self.settings.checkpoint_every_examples, self.settings.checkpoint_every_s
        ):
            pending = await self._torch(trainer.begin_checkpoint, what="trainer checkpoint copy")
            self.writing = asyncio.create_task(self._write(trainer, pending))
        await self.publish_status(force=force_status)

    async def _record(self, events: list[dict[str, Any]]) -> None:
        """Drift alarms and embedding switches into the history, for the dashboard's markers."""

        def write() -> None:
            for event in events:
                self.history.append(self.history.keys.events, event)

        try:  # history is for people: skip it while Redis is away
            await asyncio.to_thread(write)
        except REDIS_OUTAGE as error:
            log.warning("trainer events not recorded: %s", error)

    async def _write(self, trainer: Trainer, pending: PendingCheckpoint) -> None:
        started = time.monotonic()
        try:
            info = await call_redis(
                trainer.write_checkpoint, pending, what="trainer checkpoint", executor=self.writer
            )
        except FencedOut as error:
            log.warning("trainer fenced out, dropping it: %s", error)
            async with self.lock:
                if self.trainer is trainer:
                    self.release()
            return
        self.telemetry.checkpoint_duration.observe(time.monotonic() - started)
        log.info("checkpoint %s at examples offsets %s", info.version, pending.offsets)
        topic = self.settings.topic_examples
        await commit(self.app, topic, _next_offsets(topic, pending.offsets))

    async def when_quiet(self) -> None:
        if self.lock.locked():
            return  # the agent is busy, and checkpoints by itself when one is due
        async with self.lock:
            if self.trainer is not None:
                await self.checkpoint_if_due(self.trainer, force_status=True)

    async def publish_status(self, force: bool) -> None:
        """The trainer's status for `watch` (a Redis key), a sample of the history and the
        metrics topic; at most once a second unless ``force``d."""
        if self.trainer is None or (not force and time.monotonic() - self.last_status < 1.0):
            return
        trainer = self.trainer
        topic = self.settings.topic_examples
        lag = consumer_lag(self.app, topic, {p: o + 1 for p, o in trainer.offsets.items()})
        status = {"ts": time.time(), **trainer.status(), "lag": {str(p): n for p, n in lag.items()}}
        self.telemetry.lags(topic, lag, {0})
        self.telemetry.label_free(status["label_free"])
        payload = json.dumps(status).encode()
        prefix = self.settings.redis_prefix
        # The history keeps what the charts draw, not the whole status (alarms are events).
        sample = {k: v for k, v in status.items() if k not in ("alarms", "offsets", "label_free")}
        drift = status["label_free"]
        if drift is not None:
            sample["psi_max"] = max(drift["psi"].values(), default=None)
            sample["click_psi"] = drift["click_psi"]

        def write() -> str | None:
            self.client.set(f"{prefix}metrics:trainer", payload)
            self.history.append(self.history.keys.trainer, sample)
            active = self.client.get(f"{prefix}registry:active")
            return active.decode() if isinstance(active, bytes) else active

        try:  # a status is a snapshot for people: skip it while Redis is away
            active = await asyncio.to_thread(write)
            self.telemetry.active_version.set(version_number(active))
        except REDIS_OUTAGE as error:
            log.warning("trainer status not written: %s", error)
        await self.metrics.send(key=b"trainer", value=payload)
        self.last_status = time.monotonic()


def register_trainer(
    app: faust.App,
    settings: DriftrecConfig,
    backlog: TrainerBacklog | None = None,
    *,
    metrics: WorkerMetrics | None = None,
) -> None:
    """Register the trainer agent, its quiet-time checkpoint timer and its rebalance
    handlers on ``app``; with ``backlog``, it tells the joiner beside it what it learned
    (stream/pacing.py); series go to ``metrics``."""
    # Offsets follow the checkpoints, not faust's acks (stream/offsets.py).
    examples = app.topic(
        settings.topic_examples,
        key_serializer="raw",
        value_serializer="raw",
        partitions=1,
        acks=False,
    )
    loop = _TrainerLoop(app, settings, backlog, metrics or WorkerMetrics())

    @app.agent(examples, name="trainer")
    async def trainer_agent(stream: Any) -> None:  # a faust.Stream; StreamT lacks noack_take
        async for events in stream.noack_take(settings.take_max, within=settings.take_within_s):
            await loop.handle(events)

    @app.timer(max(1.0, settings.checkpoint_every_s / 4))  # type: ignore[untyped-decorator]  # faust's decorators are untyped
    async def checkpoint_when_quiet() -> None:
        await loop.when_quiet()

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode types handlers as *args
    async def on_revoked(sender: Any, revoked: set[Any], **kwargs: Any) -> None:
        if any(tp.topic == settings.topic_examples for tp in revoked):
            # Drop, never half-write: whoever is assigned the partition next (maybe this
            # worker again) resumes from the current checkpoint and reads on from its offset.
            async with loop.lock:
                loop.release()

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # mode types handlers as *args
    async def on_assigned(sender: Any, assigned: set[Any], **kwargs: Any) -> None:
        async with loop.lock:
            loop.release()
            if any(tp.topic == settings.topic_examples for tp in assigned):
                loop.owned = True
                if backlog is not None:
                    backlog.attach()

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]  # mode types handlers as *args
    async def rewind_to_checkpoint(sender: Any, **kwargs: Any) -> None:
        # faust seeks to the committed offsets right after this signal (stream/offsets.py).
        async with loop.lock:
            if loop.owned:
                await loop.rewind()
