"""Joiner snapshots are fenced by owner epochs: a worker that lost a partition cannot
overwrite its successor's state (real Redis)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis
from driftrec.core import encode
from driftrec.ops.settings import Settings
from driftrec.stream.catalog import Catalog
from driftrec.stream.join_worker import JoinWorker
from driftrec.stream.partition_store import FREE, PartitionStore, Snapshot
from driftrec.stream.testing import T0, small_world

pytestmark = pytest.mark.integration


def test_a_stale_owner_is_refused_and_a_free_state_is_not(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    store = PartitionStore(redis_client, f"{redis_prefix}p")
    ((old_epoch, _),) = store.claim([3]).values()
    assert store.save({3: Snapshot(old_epoch, {"a": "1", "b": "2"}, [])}) == (set(), set())
    ((new_epoch, seen),) = store.claim([3]).values()  # another worker is assigned partition 3
    assert seen == {"a": "1", "b": "2"} and new_epoch == old_epoch + 1
    late = Snapshot(old_epoch, {"a": "late"}, ["b"])
    assert store.save({3: late, 4: Snapshot(FREE, {"c": "3"}, [])}) == ({3}, set())
    assert store.load(3) == {"a": "1", "b": "2"} and store.load(4) == {"c": "3"}
    assert store.save({3: Snapshot(new_epoch, {"a": "new"}, ["b"])}) == (set(), set())
    assert store.load(3) == {"a": "new"}


def test_a_partition_whose_epoch_redis_lost_is_reported_and_restored_only_where_none_is_set(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    store = PartitionStore(redis_client, f"{redis_prefix}p")
    ((epoch, _),) = store.claim([1]).values()
    redis_client.delete(store.epoch_key(1), store.snapshot_key(1))  # Redis came back empty
    assert store.save({1: Snapshot(epoch, {"a": "delta only"}, [])}) == (set(), {1})
    assert store.load(1) == {}  # a partial snapshot is never written
    whole = Snapshot(epoch + 1000, {"a": "1", "b": "2"}, [], restore=True)
    assert store.save({1: whole}) == (set(), set())
    assert store.load(1) == {"a": "1", "b": "2"}
    assert store.save({1: Snapshot(epoch, {"a": "stale"}, [])}) == ({1}, set())  # fenced
    late_restore = Snapshot(epoch + 2000, {"a": "late"}, [], restore=True)
    assert store.save({1: late_restore}) == ({1}, set())  # an epoch exists: not a restore
    assert store.load(1) == {"a": "1", "b": "2"}


def _worker(settings: Settings) -> JoinWorker:
    return JoinWorker(settings, redis.Redis.from_url(settings.redis_url), Catalog())


def _owner(settings: Settings) -> JoinWorker:
    """A worker that claimed partition 0, as on its assignment."""
    worker = _worker(settings)
    worker.adopt(worker.store.claim([0]))
    return worker


def test_a_worker_fenced_out_drops_the_partition_and_its_successor_resumes_at_its_snapshot(
    live_settings: Settings, redis_prefix: str
) -> None:
    settings = live_settings.model_copy(update={"redis_prefix": redis_prefix, "partitions": 1})
    events = [r for r in small_world(users=1, impressions_per_user=6) if hasattr(r, "user_id")]
    first = _owner(settings)
    first.process([(0, i, encode(e)) for i, e in enumerate(events[:3])])
    assert first.save_snapshots() == set()
    second = _owner(settings)  # the partition moved
    assert second.states[0].offset == 2
    first.process([(0, i, encode(e)) for i, e in enumerate(events[3:], start=3)])
    assert first.save_snapshots() == {0} and 0 not in first.states
    assert first.process([(0, 9, encode(events[-1]))]).skipped == 1  # no longer ours
    assert _worker(settings).store.load(0)["offset"] == "2"
    resumed = second.process([(0, i, encode(e)) for i, e in enumerate(events)])
    assert resumed.skipped == 3  # at or below the snapshot's offset


def test_a_worker_whose_state_redis_lost_writes_it_whole_and_a_successor_resumes_from_it(
    live_settings: Settings, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = live_settings.model_copy(update={"redis_prefix": redis_prefix, "partitions": 1})
    events = [r for r in small_world(users=3, impressions_per_user=6) if hasattr(r, "user_id")]
    first = _owner(settings)
    half = len(events) // 2
    first.process([(0, i, encode(e)) for i, e in enumerate(events[:half])])
    assert first.save_snapshots() == set()
    served = set(first.redis.scan_iter(f"{redis_prefix}*")) - set(
        first.redis.scan_iter(f"{first.store.key}*")
    )
    assert served  # the features serving reads
    first.redis.delete(*first.redis.scan_iter(f"{redis_prefix}*"))  # Redis restarted empty
    first.process([(0, i, encode(e)) for i, e in enumerate(events[half:], start=half)])
    with caplog.at_level("WARNING"):
        assert first.save_snapshots() == set()
    assert "Redis lost the state of events partitions [0]" in caplog.text
    assert first.counts["state_restores"] == 1 and 0 in first.states
    kept = first.states[0]
    successor = _owner(settings)
    resumed = successor.states[0]
    assert resumed.offset == len(events) - 1 and resumed.epoch > kept.epoch
    live = ("pending", "seen", "closed")  # the heaps keep stale entries until popped
    assert {k: resumed.joiner.sizes()[k] for k in live} == {k: kept.joiner.sizes()[k] for k in live}
    for state in (resumed, kept):
        state.joiner.mark_all_changed()
    assert resumed.joiner.delta() == kept.joiner.delta()  # key for key, the same
    assert resumed.features.to_dict() == kept.features.to_dict()
    assert served <= set(first.redis.scan_iter(f"{redis_prefix}*"))  # written again too


def test_an_idle_partition_closes_its_windows_on_the_wall_clock(
    live_settings: Settings, redis_prefix: str
) -> None:
    settings = live_settings.model_copy(
        update={"redis_prefix": redis_prefix, "partitions": 1, "idle_timeout_s": 0.01}
    )
    worker = _owner(settings)
    impression = small_world(users=1, impressions_per_user=1)[-1]
    assert worker.process([(0, 0, encode(impression))]).examples == []
    state = worker.states[0]
    state.arrived -= settings.click_window_s + 1  # as if it had been idle past its window
    (example,) = worker.close_idle()
    assert example.impression.event_id == impression.event_id and not example.clicked
    assert state.dirty and state.joiner.watermark is not None
    assert state.joiner.watermark > T0 + timedelta(seconds=settings.click_window_s)


def test_an_offset_gap_is_counted_and_logged(
    live_settings: Settings, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = live_settings.model_copy(update={"redis_prefix": redis_prefix, "partitions": 1})
    events = [r for r in small_world(users=1, impressions_per_user=6) if hasattr(r, "user_id")]
    worker = _owner(settings)
    worker.process([(0, 0, encode(events[0])), (0, 1, encode(events[1]))])
    assert worker.counts["offset_gaps"] == 0
    worker.process([(0, 5, encode(events[2]))])  # offsets 2-4 never came
    assert worker.counts["offset_gaps"] == 1 and worker.states[0].offset == 5
    assert "offset jumped from 1 to 5; 3 messages skipped" in caplog.text
