"""``driftrec embed --refresh``: re-encode the whole catalog into a new embedding version.

The refresh reads the compacted items topic from the beginning without a consumer group
and writes every item into the version of the configured (or given) model, declared
``state="building"``. Nobody reads a building version: the active pointer moves to it
only when it is complete, in one ``SET`` (``RedisVectorStore.set_active``).

Items keep arriving while a refresh runs; the live worker writes them into the active
(old) version. The refresh makes them reach the new version too:

1. **Snapshot**: read every partition up to its end offset as of the start.
2. **Catch up** (up to ``catchup_rounds`` times): read on to the end offsets as they are
   now, until a round finds nothing new. Then mark the version complete and switch.
3. **Final catch-up**: read the end offsets *after* the switch and read on to them.
   Every record below those offsets is in the new version after this step. Every record
   at or above them was produced after the switch, so the live worker, which reads the
   active pointer after taking each batch, finds the new version active and writes it
   there itself (loading the new model from the version's metadata).

At the switch the new version is complete up to the offsets of the last catch-up round,
exactly as the live worker's version is complete only up to its lag. The refresh and the
worker may write one item in either order: writes are last write wins by the item's event
time, so a late catch-up never replaces a newer item's vector. Records that do not decode
are skipped here (the live worker already dead-lettered them).

A refresh with the model of the active version rewrites that version in place (a repair)
and switches nothing; a refresh with the model of an older version rebuilds that version
and switches back to it. A crashed refresh leaves a building version that is never
active; the next refresh with that model overwrites it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from driftrec.core import DriftrecConfig, InfraError
from driftrec.online_update.embeddings.embed_batch import (
    EmbedStats,
    VersionWriter,
    declare_version,
    decode_batch,
    vector_store_for,
)
from driftrec.online_update.embeddings.text_encoder import Pooling, load_text_encoder
from driftrec.producers import ensure_topics
from kafka import KafkaConsumer, TopicPartition

__all__ = ["RefreshProgress", "refresh"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RefreshProgress:
    """Reported after every batch written: phase, the new version, counters so far."""

    phase: str  # "snapshot", "catch-up" or "final"
    version: str
    stats: EmbedStats


class _CatalogReader:
    """All partitions of the items topic, assigned by hand (no group), from the start."""

    def __init__(self, settings: DriftrecConfig, batch_size: int, stall_s: float) -> None:
        self.batch_size = batch_size
        self.stall_s = stall_s
        topic = settings.topic_items
        self.consumer = KafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=batch_size,
            **settings.kafka_client_options(),
        )
        partitions = self.consumer.partitions_for_topic(topic)
        deadline = time.monotonic() + 15.0
        while not partitions and time.monotonic() < deadline:
            time.sleep(0.2)  # a topic created a moment ago: metadata lags behind
            partitions = self.consumer.partitions_for_topic(topic)
        if not partitions:
            raise InfraError(f"topic {topic} has no partitions after 15 s: is the broker up?")
        self.partitions = [TopicPartition(topic, p) for p in sorted(partitions)]
        self.consumer.assign(self.partitions)
        self.consumer.seek_to_beginning(*self.partitions)

    def end_offsets(self) -> dict[TopicPartition, int]:
        ends: dict[TopicPartition, int] = self.consumer.end_offsets(self.partitions)
        return ends

    def lag(self, ends: dict[TopicPartition, int]) -> int:
        return sum(max(0, end - self.consumer.position(tp)) for tp, end in ends.items())

    def read_to(self, ends: dict[TopicPartition, int]) -> Iterator[list[Any]]:
        """Batches of records until every partition's position reaches ``ends``."""
        last_progress = time.monotonic()
        while self.lag(ends) > 0:
            polled = self.consumer.poll(timeout_ms=500, max_records=self.batch_size)
            records = [r for messages in polled.values() for r in messages]
            if records:
                last_progress = time.monotonic()
                yield records
            elif time.monotonic() - last_progress > self.stall_s:
                raise InfraError(
                    f"reading {self.partitions[0].topic} stalled {self.lag(ends)} records "
                    f"short of its end offsets for {self.stall_s:.0f} s: is the broker healthy?"
                )

    def close(self) -> None:
        self.consumer.close(autocommit=False)


def refresh(
    settings: DriftrecConfig,
    model: str | None = None,
    *,
    pooling: Pooling = "auto",
    device: str | None = None,
    batch_size: int = 256,
    catchup_rounds: int = 5,
    progress: Callable[[RefreshProgress], None] | None = None,
    client: redis.Redis | None = None,
    stall_s: float = 60.0,
) -> str:
    """Re-encode the catalog with ``model`` (default ``settings.text_model``) into its
    version, switch the active pointer to it once complete, and return the version."""
    model = model or settings.text_model
    store = vector_store_for(settings, client)
    encoder = load_text_encoder(model, device, pooling=pooling)
    version = encoder.version
    writer = VersionWriter(store, encoder, batch_size)
    stats = EmbedStats()
    previous = store.active_version()
    in_place = previous == version
    declare_version(store, encoder, model, pooling, "complete" if in_place else "building")
    ensure_topics(settings, [settings.topic_items])
    reader = _CatalogReader(settings, batch_size, stall_s)

    def consume(ends: dict[TopicPartition, int], phase: str) -> None:
        for records in reader.read_to(ends):
            batch = decode_batch(records, settings.topic_items)
            writer.write(batch.items, batch.deleted, stats)
            stats.records += len(records)
            stats.items += len(batch.items)
            stats.dead_letters += len(batch.dead_letters)
            stats.batches += 1
            if progress is not None:
                progress(RefreshProgress(phase, version, stats))

    try:
        consume(reader.end_offsets(), "snapshot")
        for _ in range(catchup_rounds):
            ends = reader.end_offsets()
            if reader.lag(ends) == 0:
                break
            consume(ends, "catch-up")
        if not in_place:
            store.update_meta(
                version,
                state="complete",
                completed_at=datetime.now(UTC).isoformat(),
                previous=previous,
            )
            store.set_active(version)
            stats.switches.append(version)
            consume(reader.end_offsets(), "final")
    finally:
        reader.close()
    log.info(
        "embedding refresh %s: %d items written (%d stale, %d undecodable), previous %s",
        version,
        stats.written,
        stats.stale,
        stats.dead_letters,
        previous,
    )
    return version
