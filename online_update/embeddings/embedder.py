"""The embedding worker: catalog items in, their text vectors in Redis out.

``run_embedder`` follows the items topic in its own consumer group (``<app_id>-embedder``,
so workers scale over partitions) and writes one L2-normalised vector per item under the
**active embedding version** of ``RedisVectorStore``:

- **Text.** ``title + ". " + text`` (the title alone when there is no text). Texts are
  cached by hash through ``CachedEncoder`` (memory, and safetensors shards under
  ``data_dir/text-cache``), so an unchanged item sent again costs no encoding, after a
  restart too; a changed item has a new text and is encoded.
- **Batches.** Up to ``batch_size`` records, or what arrived within ``linger_s`` of the
  first; on CUDA the encoder classes run bf16/fp16 on length-sorted batches.
- **At least once.** Offsets are committed after the vectors are in Redis and the dead
  letters are flushed; a redelivered record rewrites the same vector. Writes are last
  write wins by the item's event time (``put_newer``), so an old record replayed late
  never replaces a newer item's vector. A tombstone (null value) deletes the item's vector;
  a record that does not decode goes to the dead-letter topic with partition, offset and
  reason, and the worker carries on.
- **Versions.** The version is the encoder's ``version`` (model, pooling, files). A first
  worker declares its version with the model spec that rebuilds it and makes it active
  when none is. After that the worker follows the active pointer, checked once per batch:
  when a refresh (``driftrec.online_update.embeddings.embed_refresh``) or a rollback switches it, the worker
  loads the encoder named in the new version's metadata and writes there, and for
  ``keep_previous_s`` it also keeps writing the previous version with the encoder it
  already has, so a model still served on the old version scores new items from their
  text until a model trained on the new version is promoted. The configured model only
  chooses the first version: changing models is what ``driftrec embed --refresh`` is for.
- **Lost metadata.** Redis restarted without persistence while a worker ran: the worker
  finds no active pointer, re-declares the version it writes (its metadata included)
  and makes it active again. A worker that starts on an active version whose metadata is
  missing (left by an older worker that restored only the pointer) cannot know the
  encoder that built it, so it rebuilds: a refresh with the configured model repairs that
  version in place when the model loads as it, else builds the configured model's
  version from the whole items topic and switches to it, and says so in the log.
- **Retention.** Every ``gc_every_s`` the worker deletes embedding versions other than
  the active and previous one whose grace period (``embedding_grace_s``) is over, with
  their vectors (``RedisVectorStore.collect``).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
from driftrec.core import DriftrecConfig, encode
from driftrec.online_update.embeddings.embed_batch import (
    EmbedStats,
    VersionWriter,
    declare_version,
    decode_batch,
    model_spec,
    open_version,
    vector_store_for,
)
from driftrec.online_update.embeddings.embed_refresh import refresh
from driftrec.online_update.embeddings.text_encoder import Pooling, load_text_encoder
from driftrec.online_update.embeddings.vector_cache import CachedEncoder
from driftrec.producers import ensure_topics, make_producer
from kafka import KafkaConsumer
from kafka.errors import CommitFailedError

__all__ = ["EmbedWorker", "run_embedder"]

log = logging.getLogger(__name__)


class EmbedWorker:
    """The following worker (see the module docstring); ``run`` or ``step`` drive it."""

    def __init__(
        self,
        settings: DriftrecConfig,
        *,
        model: str | None = None,
        pooling: Pooling = "auto",
        device: str | None = None,
        batch_size: int = 256,
        linger_s: float = 0.2,
        keep_previous_s: float = 900.0,
        gc_every_s: float = 300.0,
        client: redis.Redis | None = None,
    ) -> None:
        self.settings = settings
        self.device = device
        self.batch_size = batch_size
        self.linger_s = linger_s
        self.keep_previous_s = keep_previous_s
        self.gc_every_s = gc_every_s
        self.next_gc = 0.0
        self.store = vector_store_for(settings, client)
        self.stats = EmbedStats()
        #: The metadata of each version this worker writes, to re-declare it if Redis loses it.
        self.declared: dict[str, dict[str, Any]] = {}
        self.current = self._first_writer(model or settings.text_model, pooling)
        self.previous: VersionWriter | None = None
        self.previous_until = 0.0
        ensure_topics(settings, [settings.topic_items, settings.topic_deadletter])
        self.consumer = KafkaConsumer(
            settings.topic_items,
            bootstrap_servers=settings.bootstrap_servers,
            group_id=f"{settings.app_id}-embedder",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=batch_size,
            **settings.kafka_client_options(),
        )
        self.producer = make_producer(self.settings)

    def _open(self, version: str) -> VersionWriter:
        writer = open_version(
            self.store, version, self.settings, device=self.device, batch_size=self.batch_size
        )
        self.declared[version] = self.store.describe(version) or {}
        return writer

    def _first_writer(self, model: str, pooling: Pooling) -> VersionWriter:
        active = self.store.active_version()
        if active is not None and "model" not in (self.store.describe(active) or {}):
            log.warning(
                "the active embedding version %s has no metadata saying which model built it "
                "(Redis lost it, or an older worker restored only the pointer): rebuilding "
                "from the items topic with model %r",
                active,
                model,
            )
            rebuilt = refresh(
                self.settings, model, pooling=pooling, device=self.device, client=self.store.client
            )
            log.warning("embedding version %s rebuilt and active", rebuilt)
            return self._open(rebuilt)
        if active is not None:
            built_by = (self.store.describe(active) or {}).get("model")
            if built_by is not None and (built_by, pooling) != (model_spec(model), "auto"):
                log.warning(
                    "model %r ignored: the worker follows the active embedding version %s "
                    "(model %r); switch models with `driftrec embed --refresh --model ...`",
                    model,
                    active,
                    built_by,
                )
            return self._open(active)
        encoder = load_text_encoder(model, self.device, pooling=pooling)
        declare_version(self.store, encoder, model, pooling, "complete")
        self.declared[encoder.version] = self.store.describe(encoder.version) or {}
        if not self.store.set_active_if_none(encoder.version):
            # another worker won the race: follow whatever it made active
            return self._first_writer(model, pooling)
        log.info("embedding version %s declared and active", encoder.version)
        cached = CachedEncoder(encoder, self.settings.data_dir / "text-cache", flush_every=512)
        return VersionWriter(self.store, cached, self.batch_size)

    @property
    def version(self) -> str:
        return self.current.version

    def _follow_active(self) -> None:
        active = self.store.active_version()
        if active is None:
            # Redis lost its data (a restart without persistence): the pointer alone would
            # leave a version no restarted worker can write, so declare it again first.
            version = self.current.version
            if self.store.describe(version) is None and self.declared.get(version):
                self.store.declare(version, **self.declared[version])
                log.warning("embedding version %s re-declared: Redis had lost it", version)
            self.store.set_active_if_none(version)
            return
        if active == self.current.version:
            return
        old = self.current
        if self.previous is not None and self.previous.version == active:
            self.current = self.previous  # switched back within the grace period
        else:
            self.current = self._open(active)
        self.previous, self.previous_until = old, time.monotonic() + self.keep_previous_s
        self.stats.switches.append(active)
        log.info("embedding version switched %s -> %s", old.version, active)

    def _collect_if_due(self) -> None:
        if time.monotonic() < self.next_gc:
            return
        self.next_gc = time.monotonic() + self.gc_every_s
        try:
            outcome = self.store.collect(self.settings.embedding_grace_s)
        except redis.RedisError as error:
            log.warning("embedding retention skipped, Redis error: %s", error)
            return
        if deleted := sorted(v for v, what in outcome.items() if what == "delete"):
            log.info("embedding versions deleted after their grace period: %s", deleted)

    def _take(self) -> list[Any]:
        """Records up to ``batch_size``, waiting ``linger_s`` after the first; [] when idle."""
        records: list[Any] = []
        deadline: float | None = None
        while len(records) < self.batch_size:
            wait = 0.5 if deadline is None else max(0.0, deadline - time.monotonic())
            polled = self.consumer.poll(
                timeout_ms=int(wait * 1000), max_records=self.batch_size - len(records)
            )
            for messages in polled.values():
                records.extend(messages)
            if deadline is None:
                if not records:
                    return []
                deadline = time.monotonic() + self.linger_s
            elif time.monotonic() >= deadline:
                break
        return records

    def step(self) -> int:
        """Take, encode and store one batch, then commit it; returns the records taken."""
        self._collect_if_due()
        records = self._take()
        if not records:
            return 0
        batch = decode_batch(records, self.settings.topic_items)
        self._follow_active()
        if self.previous is not None and time.monotonic() > self.previous_until:
            if isinstance(self.previous.encoder, CachedEncoder):
                self.previous.encoder.flush()
            self.previous = None  # grace over: models on the old version had time to move
        for writer in (self.current, self.previous):
            if writer is not None:
                writer.write(batch.items, batch.deleted, self.stats)
        for letter in batch.dead_letters:
            self.producer.send(self.settings.topic_deadletter, value=encode(letter))
        if batch.dead_letters:
            self.producer.flush()
        try:
            self.consumer.commit()
        except CommitFailedError as error:
            # a rebalance took the partitions: their new owner re-embeds from the last commit
            log.warning("offset commit failed, records will be redelivered: %s", error)
        self.stats.records += len(records)
        self.stats.items += len(batch.items)
        self.stats.dead_letters += len(batch.dead_letters)
        self.stats.batches += 1
        return len(records)

    def run(
        self, stop_after: float | None = None, stop: threading.Event | None = None
    ) -> EmbedStats:
        """Step until ``stop`` is set or, with ``stop_after``, once partitions are assigned
        and no record has come for ``stop_after`` seconds."""
        last_record = time.monotonic()
        while stop is None or not stop.is_set():
            if self.step():
                last_record = time.monotonic()
            elif not self.consumer.assignment():
                last_record = time.monotonic()  # still joining the group: not idle yet
            elif stop_after is not None and time.monotonic() - last_record >= stop_after:
                break
        return self.stats

    def close(self) -> None:
        for writer in (self.current, self.previous):
            if writer is not None and isinstance(writer.encoder, CachedEncoder):
                writer.encoder.flush()
        self.consumer.close(autocommit=False)
        self.producer.close()


def run_embedder(
    settings: DriftrecConfig,
    *,
    model: str | None = None,
    pooling: Pooling = "auto",
    device: str | None = None,
    stop_after: float | None = None,
    stop: threading.Event | None = None,
    threads: int | None = None,
    batch_size: int = 256,
    keep_previous_s: float = 900.0,
) -> EmbedStats:
    """Follow the items topic forever (or see ``EmbedWorker.run``); returns the counters.

    ``threads``: torch intra-op threads (on a CPU shared with the trainer, 1 is faster
    than contended threads); ``None`` leaves torch's default.
    """
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    worker = EmbedWorker(
        settings,
        model=model,
        pooling=pooling,
        device=device,
        batch_size=batch_size,
        keep_previous_s=keep_previous_s,
    )
    try:
        return worker.run(stop_after=stop_after, stop=stop)
    finally:
        worker.close()
