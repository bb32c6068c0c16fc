"""The trainer agent: labelled examples in, model updates, metrics and checkpoints out.

The examples topic has one partition, so exactly one worker of the group runs the
trainer at a time (one writer per model). Messages are taken without auto-ack and
acked only after a checkpoint covers them; torch work runs in a single-thread
executor so heartbeats and rebalances are never starved. A timer checkpoints when
the stream goes quiet, so the tail of a replay is never left uncovered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import faust
import redis
import torch
from driftrec.core import DriftrecConfig, encode
from driftrec.online_update.embeddings import RedisVectorStore
from driftrec.online_update.registry import open_registry
from driftrec.online_update.training import Trainer, default_learner_config

__all__ = ["build_trainer", "register_trainer"]

log = logging.getLogger(__name__)


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
        learner_config=default_learner_config(settings.model_arch, text_dim),
        registry=registry,
        vectors=vectors,
        checkpoint_path=Path(settings.data_dir) / "trainer" / f"{settings.app_id}.pt",
        topic=settings.topic_examples,
    )
    trainer.resume()
    return trainer


class _TrainerLoop:
    """State the agent and its timer share (both run on the event loop)."""

    def __init__(self, app: faust.App, settings: DriftrecConfig) -> None:
        self.settings = settings
        self.client = redis.Redis.from_url(settings.redis_url)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="driftrec-trainer")
        self.metrics = app.topic(
            settings.topic_metrics, key_serializer="raw", value_serializer="raw", partitions=1
        )
        self.dead = app.topic(
            settings.topic_deadletter, key_serializer="raw", value_serializer="raw", partitions=1
        )
        self.trainer: Trainer | None = None
        self.stream: Any = None
        self.unacked: list[Any] = []
        self.lock = asyncio.Lock()
        self.last_status = 0.0
        #: Whether this worker owns the examples partition (None before the first assignment).
        self.owned: bool | None = None

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def trainer_ready(self) -> Trainer:
        """The trainer, (re)built from the last checkpoint when this worker (re)gains the topic."""
        if self.trainer is None:
            self.trainer = await self._run(build_trainer, self.settings, self.client)
        return self.trainer

    def release(self) -> None:
        """The examples partition moved to another worker: stop writing anything.

        Its new owner resumes from the last checkpoint; our unacked messages are
        redelivered there, and a checkpoint of ours now would overwrite its work.
        """
        self.trainer = None
        self.unacked.clear()
        self.owned = False

    async def handle(self, stream: Any, events: list[Any]) -> None:
        self.stream = stream
        now = time.time()
        # faust gives the Kafka message timestamp (the joiner's send time) in seconds.
        messages = [
            (e.message.partition, e.message.offset, e.value, e.message.timestamp or now)
            for e in events
        ]
        async with self.lock:
            if self.owned is False:
                return  # taken before the partition moved away; its new owner replays it
            trainer = await self.trainer_ready()
            prepared = trainer.prepare(messages)
            for letter in prepared.dead_letters:
                await self.dead.send(key=b"trainer", value=encode(letter))
            result = await self._run(trainer.learn, prepared)
            self.unacked.extend(events)
            for alarm in result.alarms if result is not None else ():
                log.warning(
                    "drift alarm: %s on %s at example %d",
                    alarm.detector,
                    alarm.task,
                    alarm.example_index,
                )
            if trainer.checkpoint_due(
                self.settings.checkpoint_every_examples, self.settings.checkpoint_every_s
            ):
                await self._checkpoint(trainer)
            await self.publish_status(force=False)

    async def _checkpoint(self, trainer: Trainer) -> None:
        info = await self._run(trainer.checkpoint)
        log.info("checkpoint %s at examples offsets %s", info.version, trainer.offsets)
        for event in self.unacked:
            await self.stream.ack(event)
        self.unacked.clear()

    async def when_quiet(self) -> None:
        async with self.lock:
            trainer = self.trainer
            if trainer is None:
                return
            if trainer.checkpoint_due(
                self.settings.checkpoint_every_examples, self.settings.checkpoint_every_s
            ):
                await self._checkpoint(trainer)
            await self.publish_status(force=True)

    async def publish_status(self, force: bool) -> None:
        if self.trainer is None or (not force and time.monotonic() - self.last_status < 1.0):
            return
        payload = json.dumps({"ts": time.time(), **self.trainer.status()}).encode()
        self.client.set(f"{self.settings.redis_prefix}metrics:trainer", payload)
        await self.metrics.send(key=b"trainer", value=payload)
        self.last_status = time.monotonic()


def register_trainer(app: faust.App, settings: DriftrecConfig) -> None:
    """Register the trainer agent and its quiet-time checkpoint timer on ``app``."""
    examples = app.topic(
        settings.topic_examples, key_serializer="raw", value_serializer="raw", partitions=1
    )
    loop = _TrainerLoop(app, settings)

    @app.agent(examples, name="trainer")
    async def trainer_agent(stream: Any) -> None:  # a faust.Stream; StreamT lacks noack_take
        async for events in stream.noack_take(settings.take_max, within=settings.take_within_s):
            await loop.handle(stream, list(events))

    @app.timer(max(1.0, settings.checkpoint_every_s / 4))  # type: ignore[untyped-decorator]  # faust's decorators are untyped
    async def checkpoint_when_quiet() -> None:
        await loop.when_quiet()

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # mode types handlers as *args
    async def on_assigned(sender: Any, assigned: set[Any], **kwargs: Any) -> None:
        async with loop.lock:
            loop.release()
            if any(tp.topic == settings.topic_examples for tp in assigned):
                # Consumption resumes from the committed offsets, which only a checkpoint
                # moves, so the learner is rebuilt from the latest checkpoint at the next
                # batch, never kept from before the rebalance (another worker may have
                # checkpointed since).
                loop.owned = True
