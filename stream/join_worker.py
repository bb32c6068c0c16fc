"""One worker's share of the joiner: per-partition state, snapshots and offsets.

Each events partition owns a ``JoinerState`` and a ``FeatureState`` (users are keyed to
partitions, so a user's history lives in exactly one of them). On assignment a worker
claims its partitions (``PartitionStore.claim``: a new owner epoch and the snapshot,
atomically) and loads them at once. The state is snapshotted together with the last
offset it covers, fenced by that epoch, and the agent commits that offset to Kafka
only after the snapshot is written and the examples it emitted are flushed. A new
owner resumes at the snapshot's offset: messages at or below it are skipped, and if
Kafka's committed offset ran ahead of the snapshot (a Redis that came back older) the
agent rewinds it, so the gap is replayed rather than lost. Examples re-emitted from
replayed messages carry the same impression id, which the trainer deduplicates.

A partition that receives nothing for ``idle_timeout_s`` moves its event time on with
the wall clock (``close_idle``), so its pending impressions are emitted within their
window plus the timeout instead of waiting for the next event.

Why not faust tables: faust tables cannot be written from ``take()`` batches, and their
changelog is not written atomically with the source offsets, so after a crash a table
can be ahead of the offsets and silently drop examples.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from driftrec.core import (
    DeadLetter,
    DriftrecConfig,
    Example,
    Impression,
    InvalidEvent,
    dead_letter,
    decode_event,
    restore_epoch,
)
from driftrec.features import (
    FeatureConfig,
    FeatureState,
    JoinerConfig,
    JoinerState,
    Rejection,
    advance,
    handle,
    joiner_config,
)
from driftrec.stream.catalog import Catalog
from driftrec.stream.feature_store import RedisFeatureStore
from driftrec.stream.partition_store import FREE, PartitionStore, Snapshot

__all__ = ["JoinOutput", "JoinWorker", "PartitionState"]

log = logging.getLogger(__name__)


@dataclass
class PartitionState:
    joiner: JoinerState
    features: FeatureState
    offset: int = -1  # last source offset whose effect is in this state
    epoch: int = FREE  # owner epoch this worker claimed the partition with
    dirty: bool = False
    arrived: float = field(default_factory=time.monotonic)  # when its last message came
    idle_from: datetime | None = None  # its event time when it went idle (while idle)
    #: Users and items whose features changed since the last write to the feature store.
    touched_users: set[str] = field(default_factory=set)
    touched_items: set[str] = field(default_factory=set)

    #: Changes taken from the states but not yet saved (kept until a save succeeds).
    unsaved_write: dict[str, str] = field(default_factory=dict)
    unsaved_delete: set[str] = field(default_factory=set)

    def snapshot(self) -> Snapshot:
        """Everything changed since the last successful save, and the offset it covers."""
        for write, delete in (self.joiner.delta(), self.features.delta()):
            for key in delete:
                self.unsaved_write.pop(key, None)
                self.unsaved_delete.add(key)
            for key, value in write.items():
                self.unsaved_delete.discard(key)
                self.unsaved_write[key] = value
        self.unsaved_write["offset"] = str(self.offset)
        return Snapshot(self.epoch, dict(self.unsaved_write), sorted(self.unsaved_delete))

    def saved(self) -> None:
        self.unsaved_write.clear()
        self.unsaved_delete.clear()

    def rewrite_all(self, epoch: int) -> Snapshot:
        """A snapshot of the whole state under ``epoch``, to restore it in a store that
        lost it; the serving features of every user and item are written again too."""
        self.epoch = epoch
        self.unsaved_write.clear()
        self.unsaved_delete.clear()
        self.joiner.mark_all_changed()
        self.features.mark_all_changed()
        users, items = self.features.ids()
        self.touched_users.update(users)
        self.touched_items.update(items)
        return self.snapshot()._replace(restore=True)

    @classmethod
    def from_snapshot(
        cls,
        fields: dict[str, str],
        epoch: int,
        config: JoinerConfig,
        features: FeatureConfig | None = None,
    ) -> PartitionState:
        """The state a snapshot's keys describe (an empty one for no keys)."""
        if not fields:
            return cls(JoinerState(config), FeatureState(features), epoch=epoch)
        return cls(
            joiner=JoinerState.from_delta(fields, config),
            features=FeatureState.from_delta(fields, features),
            offset=int(fields["offset"]),
            epoch=epoch,
        )


@dataclass
class JoinOutput:
    examples: list[Example] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    skipped: int = 0  # messages already covered by a snapshot


class JoinWorker:
    """The joiner state of the partitions this worker owns.

    Not thread-safe: the agent serialises ``process``, ``close_idle``, ``save_snapshots``
    and the rebalance calls with one lock, and runs the Redis work in a thread.
    """

    def __init__(self, settings: DriftrecConfig, client: redis.Redis, catalog: Catalog) -> None:
        self.settings = settings
        self.redis = client
        self.feature_config = FeatureConfig(ttl=timedelta(seconds=settings.feature_ttl_s))
        # The ttl makes its writes also expire idle entries in Redis (feature_ttl_s).
        self.features = RedisFeatureStore(client, settings.redis_prefix, self.feature_config)
        self.store = PartitionStore(
            client, f"{settings.redis_prefix}stream:{settings.app_id}:{settings.topic_events}:p"
        )
        self.catalog = catalog
        self.config = joiner_config(settings)
        self.states: dict[int, PartitionState] = {}
        #: Partitions this worker owns (None until the first assignment: any it is given).
        self.owned: set[int] | None = None
        self.counts: Counter[str] = Counter()
        self.last_snapshot = time.monotonic()

    # -- ownership ------------------------------------------------------------------------

    def adopt(self, claimed: dict[int, tuple[int, dict[str, str]]]) -> None:
        """Take over freshly claimed partitions: (epoch, snapshot keys) per partition."""
        for partition, (epoch, fields) in claimed.items():
            self.states[partition] = self._state(fields, epoch)
        self.owned = (self.owned or set()) | set(claimed)

    def drop(self, partitions: set[int]) -> None:
        """Forget partitions (revoked, or fenced by a new owner); their unsaved work is
        redelivered to whoever owns them next."""
        for partition in partitions:
            self.states.pop(partition, None)
        if self.owned is not None:
            self.owned -= partitions

    def _state(self, fields: dict[str, str], epoch: int) -> PartitionState:
        return PartitionState.from_snapshot(fields, epoch, self.config, self.feature_config)

    def state_for(self, partition: int) -> PartitionState | None:
        """The partition's state, or None when this worker does not own it."""
        state = self.states.get(partition)
        if state is None and self.owned is None:
            # Never assigned (faust's test context): serve it unfenced.
            state = self.states[partition] = self._state(self.store.load(partition), FREE)
        return state

    # -- the hot path ---------------------------------------------------------------------

    def process(self, messages: list[tuple[int, int, bytes | None]]) -> JoinOutput:
        """Run (partition, offset, value) messages through the joiner, in order."""
        out = JoinOutput()
        topic = self.settings.topic_events
        now = datetime.now(UTC)
        arrived = time.monotonic()
        for partition, offset, value in messages:
            state = self.state_for(partition)
            if state is None or offset <= state.offset:
                # Not ours (taken before a rebalance moved it away; its new owner replays
                # it) or already covered by the snapshot we resumed from.
                out.skipped += 1
                continue
            if offset > state.offset + 1 and state.offset >= 0:
                # Never expected on driftrec's topics (no transactions, no compaction):
                # messages the state will never see, e.g. deleted by retention first.
                log.warning(
                    "events partition %d: offset jumped from %d to %d; %d messages skipped",
                    partition,
                    state.offset,
                    offset,
                    offset - state.offset - 1,
                )
                self.counts["offset_gaps"] += 1
            state.offset, state.dirty, state.arrived = offset, True, arrived
            state.idle_from = None
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
            for result in handle(event, state.joiner, state.features, now=now):
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

    def close_idle(self) -> list[Example]:
        """Move each partition idle for ``idle_timeout_s`` on with the wall clock: its
        event time becomes its newest event's plus the wall time since it arrived."""
        now = time.monotonic()
        out: list[Example] = []
        for state in self.states.values():
            watermark = state.joiner.watermark
            idle = now - state.arrived
            if watermark is None or idle < self.settings.idle_timeout_s:
                continue
            if state.idle_from is None:
                state.idle_from = watermark
            closed = advance(state.joiner, state.idle_from + timedelta(seconds=idle))
            if closed:
                state.dirty = True
                out.extend(closed)
        self.counts["examples"] += len(out)
        return out

    # -- durability -----------------------------------------------------------------------

    def snapshot_due(self) -> bool:
        return time.monotonic() - self.last_snapshot >= self.settings.snapshot_every_s

    def save_snapshots(self) -> set[int]:
        """Write every changed partition's state in one fenced round trip, then publish
        the features it changed to the feature store for serving. Returns the partitions
        fenced out (now dropped). Blocking Redis I/O, safe to retry after a failure.

        A partition whose epoch Redis lost (it restarted empty) gets its whole state
        written again under a new epoch: this worker's memory is the only copy left."""
        dirty = {p: s for p, s in self.states.items() if s.dirty}
        for state in dirty.values():
            if state.joiner.watermark is not None:
                state.features.evict_inactive(state.joiner.watermark)
        snapshots = {p: s.snapshot() for p, s in dirty.items()}
        fenced, lost = self.store.save(snapshots)
        if lost:
            log.warning(
                "Redis lost the state of events partitions %s (it restarted empty?): "
                "writing this worker's whole state again",
                sorted(lost),
            )
            epoch = restore_epoch()
            restored = {p: dirty[p].rewrite_all(epoch) for p in lost}
            snapshots.update(restored)
            fenced |= self.store.save(restored).fenced
            self.counts["state_restores"] += len(lost)
        self.counts["snapshot_bytes"] += sum(
            len(k) + len(v) for s in snapshots.values() for k, v in s.write.items()
        )
        for partition, state in dirty.items():
            if partition in fenced:
                continue
            watermark = state.joiner.watermark
            if watermark is not None and (state.touched_users or state.touched_items):
                self.features.write(
                    state.features,
                    state.touched_users,
                    state.touched_items,
                    as_of=watermark,
                    shard=partition,
                )
            state.saved()
            state.dirty = False
            state.touched_users.clear()
            state.touched_items.clear()
        self.drop(fenced)
        self.last_snapshot = time.monotonic()
        return fenced
