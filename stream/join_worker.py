"""One worker's share of the joiner: per-partition state, snapshots and offsets.

Each events partition owns a ``JoinerState`` and a ``FeatureState`` (users are
keyed to partitions, so a user's history lives in exactly one of them). The state
is snapshotted to Redis together with the last offset it covers, and the agent
acks the source messages only after the snapshot is written and the examples it
emitted are flushed to Kafka. After a crash the next owner of the partition loads
the snapshot and skips messages at or below its offset, so the state neither
misses nor double-counts an event; examples re-emitted from messages after the
snapshot carry the same impression id, which the trainer deduplicates.

Why not faust tables: faust tables cannot be written from ``take()`` batches, and
their changelog is not written atomically with the source offsets, so after a
crash a table can be ahead of the offsets and silently drop examples.
"""

from __future__ import annotations

import json
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis
from driftrec.core import (
    DeadLetter,
    DriftrecConfig,
    Example,
    Impression,
    InvalidEvent,
    dead_letter,
    decode_event,
)
from driftrec.features import (
    FeatureState,
    JoinerConfig,
    JoinerState,
    Rejection,
    handle,
    joiner_config,
)
from driftrec.stream.catalog import Catalog
from driftrec.stream.feature_store import RedisFeatureStore

if TYPE_CHECKING:
    pass

__all__ = ["JoinOutput", "JoinWorker", "PartitionState"]


@dataclass
class PartitionState:
    joiner: JoinerState
    features: FeatureState
    offset: int = -1  # last source offset whose effect is in this state
    dirty: bool = False
    #: Users and items whose features changed since the last write to the feature store.
    touched_users: set[str] = field(default_factory=set)
    touched_items: set[str] = field(default_factory=set)

    def to_bytes(self) -> bytes:
        data = {
            "offset": self.offset,
            "joiner": self.joiner.to_dict(),
            "features": self.features.to_dict(),
        }
        return zlib.compress(json.dumps(data, separators=(",", ":")).encode(), 1)

    @classmethod
    def from_bytes(cls, raw: bytes, config: JoinerConfig) -> PartitionState:
        data = json.loads(zlib.decompress(raw))
        return cls(
            joiner=JoinerState.from_dict(data["joiner"], config),
            features=FeatureState.from_dict(data["features"]),
            offset=int(data["offset"]),
        )


@dataclass
class JoinOutput:
    examples: list[Example] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    skipped: int = 0  # messages already covered by a snapshot


class JoinWorker:
    """The joiner state of the partitions this worker owns."""

    def __init__(self, settings: DriftrecConfig, client: redis.Redis, catalog: Catalog) -> None:
        self.settings = settings
        self.redis = client
        self.features = RedisFeatureStore(client, prefix=settings.redis_prefix)
        self.catalog = catalog
        self.config = joiner_config(settings)
        self.key = f"{settings.redis_prefix}stream:{settings.app_id}:{settings.topic_events}:p"
        self.states: dict[int, PartitionState] = {}
        #: Partitions this worker owns (None until the first assignment: all of them).
        self.owned: set[int] | None = None
        self.counts: Counter[str] = Counter()
        self.last_snapshot = time.monotonic()

    def state_for(self, partition: int) -> PartitionState:
        state = self.states.get(partition)
        if state is None:
            raw = self.redis.get(f"{self.key}{partition}")
            if isinstance(raw, bytes):
                state = PartitionState.from_bytes(raw, self.config)
            else:
                state = PartitionState(JoinerState(self.config), FeatureState())
            self.states[partition] = state
        return state

    def keep_only(self, partitions: set[int]) -> None:
        """After a rebalance: forget partitions we no longer own (the new owner reloads them)."""
        self.owned = set(partitions)
        for partition in list(self.states):
            if partition not in partitions:
                del self.states[partition]

    def process(self, messages: list[tuple[int, int, bytes | None]]) -> JoinOutput:
        """Run (partition, offset, value) messages through the joiner, in order."""
        out = JoinOutput()
        topic = self.settings.topic_events
        for partition, offset, value in messages:
            if self.owned is not None and partition not in self.owned:
                # Taken before a rebalance moved the partition away: its new owner
                # replays it from the committed offset; touching it here would let a
                # stale snapshot of ours overwrite the new owner's.
                out.skipped += 1
                continue
            state = self.state_for(partition)
            if offset <= state.offset:
                out.skipped += 1
                continue
            state.offset, state.dirty = offset, True
            try:
                event = decode_event(value or b"")
            except InvalidEvent as error:
                out.dead_letters.append(
                    dead_letter(str(error), "joiner", topic, partition, offset, value)
                )
                continue
            self.counts[event.type] += 1
            state.touched_users.add(event.user_id)
            state.touched_items.add(event.item_id)
            if isinstance(event, Impression) and not state.features.category(event.item_id):
                item = self.catalog.get(event.item_id)
                if item is not None:
                    state.features.observe(item)
            for result in handle(event, state.joiner, state.features):
                if isinstance(result, Rejection):
                    letter = result.to_dead_letter()
                    update: dict[str, Any] = {
                        "topic": topic,
                        "partition": partition,
                        "offset": offset,
                    }
                    out.dead_letters.append(letter.model_copy(update=update))
                else:
                    out.examples.append(result)
        self.counts["examples"] += len(out.examples)
        self.counts["dead_letters"] += len(out.dead_letters)
        return out

    def snapshot_due(self) -> bool:
        return time.monotonic() - self.last_snapshot >= self.settings.snapshot_every_s

    def save_snapshots(self) -> int:
        """Write every changed partition's state in one round trip, then publish the
        features it changed to the feature store for serving; returns how many."""
        dirty = {p: s for p, s in self.states.items() if s.dirty}
        if dirty:
            self.redis.mset({f"{self.key}{p}": s.to_bytes() for p, s in dirty.items()})
            for partition, state in dirty.items():
                state.dirty = False
                watermark = state.joiner.watermark
                if watermark is not None and (state.touched_users or state.touched_items):
                    self.features.write(
                        state.features,
                        state.touched_users,
                        state.touched_items,
                        as_of=watermark,
                        shard=partition,
                    )
                state.touched_users.clear()
                state.touched_items.clear()
        self.last_snapshot = time.monotonic()
        return len(dirty)

    def reset(self) -> None:
        """Delete every snapshot of this app (used by tests and `driftrec worker --reset`)."""
        keys = list(self.redis.scan_iter(f"{self.key}*"))
        if keys:
            self.redis.delete(*keys)
        self.states.clear()
