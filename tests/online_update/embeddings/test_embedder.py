"""The embedding worker and the refresh against the real Kafka and Redis (no mocks).

Each test gets its own topics, Redis prefix, consumer group and text cache. The pure
decoding step is tested first, without any service.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import redis
from driftrec.core import ConfigError
from driftrec.core.schemas import DeadLetter, Item, encode
from driftrec.online_update.embeddings import embedder as embedder_module
from driftrec.online_update.embeddings.embed_batch import (
    EmbedStats,
    decode_batch,
    event_stamp,
    item_text,
    open_version,
    vector_store_for,
)
from driftrec.online_update.embeddings.embed_refresh import RefreshProgress, refresh
from driftrec.online_update.embeddings.embedder import EmbedWorker, run_embedder
from driftrec.online_update.embeddings.text_encoder import HashingTextEncoder, load_text_encoder
from driftrec.online_update.embeddings.vector_store import RedisVectorStore
from driftrec.ops.settings import Settings
from driftrec.producers.kafka_io import ensure_topics, make_producer
from kafka import KafkaConsumer

T0 = datetime(2024, 5, 1, tzinfo=UTC)
BAD = b'{"type": "item", "item_id": "", "title": "no id", "ts": "2024-05-01T00:00:00Z"}'


def item(n: int | str, title: str, text: str = "", minutes: int = 0) -> Item:
    return Item(item_id=f"item-{n}", title=title, text=text, ts=T0 + timedelta(minutes=minutes))


# ---- pure: decoding a batch ----------------------------------------------------------


def record(offset: int, value: bytes | None, key: bytes | None = None) -> Any:
    return SimpleNamespace(partition=2, offset=offset, key=key, value=value)


def test_decode_batch_keeps_the_newest_item_and_applies_tombstones_in_order() -> None:
    old, new = item(1, "Old title"), item(1, "New title", minutes=5)
    records = [
        record(0, encode(new)),
        record(1, encode(old)),  # older event time, later offset: loses
        record(2, encode(item(2, "Doomed"))),
        record(3, None, key=b"item-2"),  # tombstone after the item: deleted
        record(4, None, key=b"item-3"),
        record(5, encode(item(3, "Back again", minutes=1))),  # item after its tombstone: kept
        record(6, BAD),
    ]
    batch = decode_batch(records, "items")
    assert [(i.item_id, i.title) for i in batch.items] == [
        ("item-1", "New title"),
        ("item-3", "Back again"),
    ]
    assert batch.deleted == ["item-2"]
    [letter] = batch.dead_letters
    assert (letter.topic, letter.partition, letter.offset, letter.stage) == (
        "items",
        2,
        6,
        "embedder",
    )
    assert "item_id" in letter.reason and "no id" in letter.payload


def test_item_text_and_event_stamp() -> None:
    assert item_text(item(1, "Title", "Body")) == "Title. Body"
    assert item_text(item(1, "Title", "   ")) == "Title"
    stamped = Item(item_id="x", title="t", ts=datetime(2024, 5, 1, 0, 0, 0, 123457, tzinfo=UTC))
    assert event_stamp(stamped) == 1714521600_123457


# ---- integration ---------------------------------------------------------------------


@pytest.fixture
def settings(isolated: Settings, redis_prefix: str, tmp_path: Path) -> Iterator[Settings]:
    app = f"t{uuid.uuid4().hex[:8]}"  # its own consumer group, never a live worker's
    yield isolated.model_copy(
        update={"redis_prefix": redis_prefix, "data_dir": tmp_path, "app_id": app, "partitions": 2}
    )
    client = redis.Redis.from_url(isolated.redis_url)
    keys = list(client.scan_iter(match=f"{redis_prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def store(settings: Settings) -> RedisVectorStore:
    return vector_store_for(settings)


def send(settings: Settings, *records: Item | tuple[str, bytes | None]) -> None:
    producer = make_producer(settings)
    try:
        for r in records:
            key, value = (r.item_id, encode(r)) if isinstance(r, Item) else r
            producer.send(settings.topic_items, key=key.encode(), value=value)
        producer.flush()
    finally:
        producer.close()


def dead_letters(settings: Settings, expected: int) -> list[DeadLetter]:
    consumer = KafkaConsumer(
        settings.topic_deadletter,
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=None,
        consumer_timeout_ms=3000,
    )
    try:
        letters = [DeadLetter.model_validate_json(m.value) for m in consumer]
    finally:
        consumer.close()
    assert len(letters) == expected
    return letters


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def unit_rows(vectors: np.ndarray) -> bool:
    return bool(np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5))


pytestmark = pytest.mark.integration


@pytest.mark.slow
def test_worker_embeds_with_minilm_dead_letters_and_reencodes_only_changes(
    settings: Settings, store: RedisVectorStore
) -> None:
    minilm = load_text_encoder("minilm")
    first = [
        item(1, "Stocks rally as the Fed holds rates", "Markets cheer the pause."),
        item(2, "Easy weeknight pasta"),
        item(3, "Stocks rally as the Fed holds rates", "Markets cheer the pause."),  # same text
    ]
    ensure_topics(settings, [settings.topic_items])
    send(settings, first[0], first[1], ("bad", BAD), first[2])

    stats = run_embedder(settings, stop_after=2.0)

    version = minilm.version
    assert store.active_version() == version
    meta = store.describe(version)
    assert meta is not None and (meta["encoder"], meta["dim"], meta["model"]) == (
        "minilm-l6-v2",
        384,
        "minilm",
    )
    ids = [i.item_id for i in first]
    vectors, found = store.get(version, ids, 384)
    assert found.all() and unit_rows(vectors) and vectors.shape == (3, 384)
    expected = minilm.encode([item_text(i) for i in first])
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    assert (stats.records, stats.items, stats.dead_letters) == (4, 3, 1)
    assert (stats.encoded, stats.cache_hits) == (2, 1)  # item-3 repeats item-1's text
    [letter] = dead_letters(settings, 1)
    assert (letter.topic, letter.stage) == (settings.topic_items, "embedder")
    assert letter.partition is not None and letter.offset is not None and "item_id" in letter.reason

    # later: item-2 changes, item-1 arrives again unchanged; a new worker resumes after the
    # committed offsets and finds item-1's text in the disk cache
    changed = item(2, "Easy weeknight pasta", "Now with lemon and garlic.", minutes=10)
    send(settings, changed, first[0])
    again = run_embedder(settings, stop_after=2.0)
    assert (again.records, again.encoded, again.cache_hits) == (2, 1, 1)
    after, _ = store.get(version, ids, 384)
    np.testing.assert_allclose(after[1], minilm.encode([item_text(changed)])[0], atol=1e-5)
    assert not np.allclose(after[1], vectors[1], atol=1e-3)
    np.testing.assert_array_equal(after[[0, 2]], vectors[[0, 2]])

    # a refresh to another model (and dimension) builds its version, then switches
    hashing = HashingTextEncoder(64)
    assert refresh(settings, "hashing:64") == hashing.version
    assert store.active_version() == hashing.version and store.known(hashing.version) == 3
    assert store.known(version) == 3  # the old version stays for models trained on it


def test_last_write_wins_by_event_time(store: RedisVectorStore) -> None:
    ones, twos = np.ones((1, 4), np.float32), np.full((1, 4), 2.0, np.float32)
    assert store.put_newer("v", ["a"], twos, [200]) == 1
    assert store.put_newer("v", ["a"], ones, [100]) == 0  # older: refused
    assert store.get("v", ["a"], 4)[0][0, 0] == 2.0
    assert store.put_newer("v", ["a"], ones, [200]) == 1  # same time: the later write wins
    assert store.item_ids("v") == ["a"]
    store.delete("v", ["a"])
    assert not store.get("v", ["a"], 4)[1].any() and store.put_newer("v", ["a"], ones, [1]) == 1


class Worker:
    """``run_embedder`` in a thread until stopped."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        self.stop = threading.Event()
        self.stats: EmbedStats | None = None
        self.error: BaseException | None = None

        def main() -> None:
            try:
                self.stats = run_embedder(settings, stop=self.stop, **kwargs)
            except BaseException as error:
                self.error = error

        self.thread = threading.Thread(target=main, daemon=True)
        self.thread.start()

    def join(self) -> EmbedStats:
        self.stop.set()
        self.thread.join(timeout=30)
        if self.error is not None:
            raise self.error
        assert self.stats is not None
        return self.stats


def test_refresh_builds_a_new_version_and_switches_only_when_complete(
    settings: Settings, store: RedisVectorStore
) -> None:
    settings = settings.model_copy(update={"text_model": "hashing:32"})
    catalog = [item(n, f"Title number {n}", "some text" if n % 2 else "") for n in range(20)]
    ensure_topics(settings, [settings.topic_items])
    send(settings, *catalog)
    old = HashingTextEncoder(32).version
    new = HashingTextEncoder(64).version
    worker = Worker(settings, keep_previous_s=60.0)
    try:
        wait_for(lambda: store.known(old) == 20, "the worker to embed the catalog")
        assert store.active_version() == old
        pubsub = store.client.pubsub()
        pubsub.subscribe(store.channel)
        late = item("late", "Arrived during the refresh")
        seen: list[str] = []

        def check(progress: RefreshProgress) -> None:
            if not seen:
                send(settings, late)
            seen.append(progress.phase)
            meta = store.describe(new) or {}
            if progress.phase == "final":
                assert store.active_version() == new and meta["state"] == "complete"
            else:  # never active while incomplete
                assert store.active_version() == old and meta["state"] == "building"

        assert refresh(settings, "hashing:64", batch_size=8, progress=check) == new

        assert store.active_version() == new
        assert seen[0] == "snapshot" and "catch-up" in seen and len(seen) >= 3
        meta = store.describe(new)
        assert meta is not None and (meta["model"], meta["dim"], meta["state"]) == (
            "hashing:64",
            64,
            "complete",
        )
        assert meta["previous"] == old
        everything = [*catalog, late]
        vectors, found = store.get(new, [i.item_id for i in everything], 64)
        assert found.all() and store.known(new) == 21
        expected = HashingTextEncoder(64).encode([item_text(i) for i in everything])
        np.testing.assert_allclose(vectors, expected, atol=1e-6)
        wait_for(
            lambda: (pubsub.get_message(timeout=0.1) or {}).get("data") == new.encode(),
            "the announcement",
        )
        pubsub.close()

        # the live worker follows the switch: new items land in the new version (and, during
        # the grace period, in the old one); a tombstone deletes from both
        after = item("after", "Arrived after the switch")
        send(settings, after, ("item-3", None))
        wait_for(lambda: bool(store.get(new, ["item-after"], 64)[1][0]), "the worker to switch")
        wait_for(lambda: bool(store.get(old, ["item-after"], 32)[1][0]), "the dual write")
        wait_for(lambda: not store.get(new, ["item-3"], 64)[1][0], "the tombstone")
        # The worker writes the new version, then the old one: wait for the second too.
        wait_for(lambda: not store.get(old, ["item-3"], 32)[1][0], "the old version's tombstone")
    finally:
        stats = worker.join()
    assert stats.switches == [new] and stats.deleted == 2

    # a refresh with the active model repairs in place and switches nothing
    phases: list[str] = []
    assert refresh(settings, "hashing:64", progress=lambda p: phases.append(p.phase)) == new
    assert store.active_version() == new and "final" not in phases


# ---- lost metadata and retention ---------------------------------------------------------


def _step_until(worker: EmbedWorker, condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60.0
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        worker.step()


@pytest.fixture
def hashing16(settings: Settings) -> tuple[Settings, str]:
    """Settings of a worker with the 16-d hashing encoder, and the version it writes."""
    settings = settings.model_copy(update={"text_model": "hashing:16"})
    ensure_topics(settings, [settings.topic_items])
    return settings, HashingTextEncoder(16).version


def test_a_worker_that_outlives_a_redis_restart_leaves_a_version_a_restart_can_write(
    hashing16: tuple[Settings, str], store: RedisVectorStore, caplog: pytest.LogCaptureFixture
) -> None:
    settings, version = hashing16
    worker = EmbedWorker(settings)
    try:
        send(settings, item(1, "Before the restart"))
        _step_until(worker, lambda: store.known(version) == 1, "the first item")
        for key in store.client.scan_iter(match=f"{settings.redis_prefix}*"):
            store.client.delete(key)  # Redis came back empty (no persistence)
        send(settings, item(2, "After the restart"))
        with caplog.at_level(logging.WARNING, logger=embedder_module.__name__):
            _step_until(worker, lambda: store.known(version) == 1, "the next item")
        assert store.active_version() == version
    finally:
        worker.close()
    restarted = EmbedWorker(settings)  # raised "does not say which model built it" before
    assert restarted.version == version
    restarted.close()
    meta = store.describe(version)
    assert meta is not None and meta["model"] == "hashing:16"
    assert "re-declared" in caplog.text


def test_a_restart_on_an_active_version_without_metadata_rebuilds_it(
    hashing16: tuple[Settings, str], store: RedisVectorStore, caplog: pytest.LogCaptureFixture
) -> None:
    settings, version = hashing16
    send(settings, *[item(n, f"Title {n}") for n in range(10)])
    store.set_active(version)  # the pointer an older worker restored, and nothing else
    with pytest.raises(ConfigError, match="does not say which model built it"):
        open_version(store, version, settings)
    with caplog.at_level(logging.WARNING, logger=embedder_module.__name__):
        worker = EmbedWorker(settings)
    worker.close()
    assert "rebuilding from the items topic" in caplog.text
    meta = store.describe(version)
    assert meta is not None and (meta["model"], meta["state"]) == ("hashing:16", "complete")
    assert store.known(version) == 10 and store.active_version() == version

    store.set_active("orphan")  # a version no model here loads as: build ours, switch
    worker = EmbedWorker(settings)
    worker.close()
    assert store.active_version() == version and store.previous_version() == "orphan"


def test_collect_deletes_versions_past_their_grace_but_never_active_or_previous(
    store: RedisVectorStore,
) -> None:
    one = np.ones((1, 2), np.float32)
    for version in ("a", "b", "c", "d", "e"):
        state = "building" if version == "e" else "complete"
        store.declare(version, encoder="h", dim=2, model="hashing:2", state=state)
        store.put(version, ["i"], one)
    store.put("orphan", ["i"], one)  # vectors whose metadata was lost
    for version in ("a", "b", "c"):
        store.set_active(version)  # a retired, b previous, c active
    now = datetime.now(UTC)
    first = store.collect(3600, now=now)
    assert (first["c"], first["b"], first["e"]) == ("active", "previous", "building")
    assert first["a"].startswith("in grace until")
    assert first["d"] == first["orphan"] == "grace starts now"

    later = now + timedelta(hours=2)
    dry = store.collect(3600, now=later, dry_run=True)
    assert sorted(v for v, what in dry.items() if what == "delete") == ["a", "d", "orphan"]
    assert len(store.stored_versions()) == 6  # a dry run deletes nothing
    done = store.collect(3600, now=later, protect=["d"])
    assert done["d"] == "protected"
    assert store.stored_versions() == ["b", "c", "d", "e"]
    assert not store.client.exists(f"{store.prefix}v:a", f"{store.prefix}v:orphan")
    assert store.get("b", ["i"], 2)[1].all()  # rollback's vectors are still there
