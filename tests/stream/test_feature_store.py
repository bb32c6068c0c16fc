"""The Redis feature store against the real Redis: round trip equals FeatureState.lookup."""

from __future__ import annotations

import copy
import random
from datetime import UTC, datetime, timedelta

import pytest
import redis
from driftrec.core.schemas import Click, ExampleFeatures, Impression, Item
from driftrec.features.state import FeatureConfig, FeatureState
from driftrec.stream.feature_store import RedisFeatureStore, user_shard

pytestmark = pytest.mark.integration

T0 = datetime(2024, 3, 1, 12, tzinfo=UTC)
CONFIG = FeatureConfig(history_size=5, ctr_half_life=timedelta(minutes=10))


@pytest.fixture
def client(redis_client: redis.Redis) -> redis.Redis:
    return redis_client  # keys under redis_prefix are removed by that fixture


@pytest.fixture
def store(client: redis.Redis, redis_prefix: str) -> RedisFeatureStore:
    return RedisFeatureStore(client, redis_prefix, CONFIG, recent_limit=50)


def events(seed: int, n: int = 300) -> list[Impression | Click | Item]:
    """Impressions, clicks and catalog rows, out of order in event time on purpose."""
    rng = random.Random(seed)
    out: list[Impression | Click | Item] = []
    for k in range(n):
        ts = T0 + timedelta(seconds=rng.randint(0, 3600))
        user, item = f"u{rng.randint(0, 7)}", f"i{rng.randint(0, 11)}"
        kind = rng.choice(["impression", "impression", "click", "item"])
        if kind == "item":
            out.append(Item(item_id=item, title="t", category=f"c{rng.randint(0, 3)}", ts=ts))
        elif kind == "click":
            out.append(Click(event_id=f"e{k}", user_id=user, item_id=item, ts=ts))
        else:
            out.append(Impression(event_id=f"e{k}", user_id=user, item_id=item, ts=ts))
    return out


def ids(evs: list[Impression | Click | Item]) -> tuple[list[str], list[str]]:
    users = sorted({e.user_id for e in evs if not isinstance(e, Item)})
    return users, sorted({e.item_id for e in evs})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_round_trip_equals_lookup(store: RedisFeatureStore, seed: int) -> None:
    evs = events(seed)
    state = FeatureState(CONFIG)
    for e in evs:
        state.observe(e)
    users, items = ids(evs)
    assert store.write(state, users, items, as_of=T0 + timedelta(hours=1)) > 0
    candidates = [*items, "never-seen"]
    for ts in (T0 + timedelta(minutes=30), T0 + timedelta(hours=2)):
        for user in [*users, "stranger"]:
            got, used = store.read(user, candidates, ts)
            assert used == ts
            assert got == [state.lookup(user, item, ts) for item in candidates]


def test_shards_sum_to_one_global_state(store: RedisFeatureStore) -> None:
    evs = events(7, 400)
    everything = FeatureState(CONFIG)
    parts = [FeatureState(CONFIG), FeatureState(CONFIG)]
    for e in evs:
        everything.observe(e)
        if isinstance(e, Item):
            for part in parts:
                part.observe(e)
        else:  # users are keyed to partitions, items are not
            parts[int(e.user_id[1:]) % 2].observe(e)
    users, items = ids(evs)
    for shard, part in enumerate(parts):
        store.write(part, users, items, as_of=T0 + timedelta(hours=1), shard=shard)
    ts = T0 + timedelta(hours=1, minutes=5)  # after every event: exact up to rounding
    for user in users:
        got, _ = store.read(user, items, ts)
        for item, features in zip(items, got, strict=True):
            want = everything.lookup(user, item, ts)
            assert features.model_dump(
                exclude={"item_recent_impressions", "item_recent_clicks"}
            ) == (want.model_dump(exclude={"item_recent_impressions", "item_recent_clicks"}))
            assert features.item_recent_impressions == pytest.approx(want.item_recent_impressions)
            assert features.item_recent_clicks == pytest.approx(want.item_recent_clicks)


def test_one_shard_is_what_the_joiner_snapshots(store: RedisFeatureStore) -> None:
    evs = events(8, 300)
    parts = {"0": FeatureState(CONFIG), "1": FeatureState(CONFIG)}
    for e in evs:
        if isinstance(e, Item):
            for part in parts.values():
                part.observe(e)
        else:
            parts[user_shard(e.user_id, 2)].observe(e)
    users, items = ids(evs)
    for shard, part in parts.items():
        store.write(part, users, items, as_of=T0 + timedelta(hours=1), shard=shard)
    ts = T0 + timedelta(minutes=40)
    for user in users:
        mine = user_shard(user, 2)
        got, _ = store.read(user, items, ts, shard=mine)
        assert got == [parts[mine].lookup(user, item, ts) for item in items]
    # A shard nobody wrote (e.g. one writer, more partitions) falls back to the sum.
    summed, _ = store.read(users[0], items, ts)
    assert store.read(users[0], items, ts, shard="7")[0] == summed


def test_an_older_write_does_not_overwrite_a_newer_one(store: RedisFeatureStore) -> None:
    evs = sorted(events(3), key=lambda e: e.ts)
    state = FeatureState(CONFIG)
    for e in evs[:150]:
        state.observe(e)
    older = copy.deepcopy(state)  # a snapshot a restarted worker would resume from
    for e in evs[150:]:
        state.observe(e)
    users, items = ids(evs)
    ts = T0 + timedelta(hours=2)
    store.write(state, users, items, as_of=evs[-1].ts)
    newest = {u: store.read(u, items, ts)[0] for u in users}
    # Every user and item entry of the old snapshot is older: none is written (catalog
    # rows that did not change since are rewritten with the same value).
    old_catalog, new_catalog = (s.subset([], items)["catalog"] for s in (older, state))
    unchanged = sum(entry == new_catalog[i] for i, entry in old_catalog.items())
    assert store.write(older, users, items, as_of=evs[149].ts) == unchanged
    assert {u: store.read(u, items, ts)[0] for u in users} == newest
    assert newest == {u: [state.lookup(u, i, ts) for i in items] for u in users}
    # The same state again (a replayed flush) is accepted: equal stamps win.
    assert store.write(state, users, items, as_of=evs[-1].ts) > 0


def test_catalog_is_last_write_wins_and_feeds_recent_items(store: RedisFeatureStore) -> None:
    late = Item(item_id="a", title="t", category="new", ts=T0 + timedelta(minutes=5))
    early = Item(item_id="a", title="t", category="old", ts=T0)
    other = Item(item_id="b", title="t", category="x", ts=T0 + timedelta(minutes=1))
    assert store.write_items([late, other]) == 2
    assert store.write_items([early]) == 0
    features, _ = store.read("u", ["a", "b", "c"], T0)
    assert [f.category for f in features] == ["new", "x", ""]
    assert store.recent_items(10) == ["a", "b"]
    assert store.recent_items(0) == []


def test_recent_items_are_trimmed_to_the_limit(store: RedisFeatureStore) -> None:
    items = [
        Item(item_id=f"n{k}", title="t", category="c", ts=T0 + timedelta(seconds=k))
        for k in range(80)
    ]
    store.write_items(items)
    assert store.recent_items(1000) == [f"n{k}" for k in range(79, 29, -1)]


def test_unknown_user_and_items_and_the_watermark(store: RedisFeatureStore) -> None:
    got, ts = store.read("nobody", ["nothing"])
    assert got == [ExampleFeatures()]
    assert abs((ts - datetime.now(UTC)).total_seconds()) < 60  # no watermark: now
    assert store.watermark() is None
    state = FeatureState(CONFIG)
    state.observe(Impression(event_id="e", user_id="u", item_id="i", ts=T0))
    store.write(state, ["u"], ["i"], as_of=T0 + timedelta(seconds=1))
    store.write(state, ["u"], ["i"], as_of=T0)  # an older watermark never moves it back
    assert store.watermark() == T0 + timedelta(seconds=1)
    got, ts = store.read("u", ["i"])
    assert ts == T0 + timedelta(seconds=1)
    assert got == [state.lookup("u", "i", ts)]
    assert store.read("u", []) == ([], ts)


def test_item_ids_travel_as_one_json_argument_whatever_they_contain(
    store: RedisFeatureStore,
) -> None:
    items = ['quote"d', "back\\slash", "naïve 東京 🚀", "comma,[1]", "nl\nid", "i"]
    state = FeatureState(CONFIG)
    for k, item in enumerate(items):
        state.observe(Item(item_id=item, title="t", category=f"c{k}", ts=T0))
        state.observe(Impression(event_id=f"e{k}", user_id="u", item_id=item, ts=T0))
    state.observe(Click(event_id="c", user_id="u", item_id=items[2], ts=T0))
    store.write_items(
        [Item(item_id=i, title="t", category=f"c{k}", ts=T0) for k, i in enumerate(items)]
    )
    store.write(state, ["u"], items, as_of=T0)
    ts = T0 + timedelta(minutes=5)
    got, _ = store.read_candidates("u", [*items, "unknown"], ts)
    assert got.rows() == [state.lookup("u", i, ts) for i in [*items, "unknown"]]
    assert got.categories[:3] == ["c0", "c1", "c2"] and got.recent_clicks == (items[2],)


def test_entries_idle_longer_than_the_ttl_are_deleted_as_writes_go_on(
    client: redis.Redis, redis_prefix: str
) -> None:
    config = FeatureConfig(history_size=5, ttl=timedelta(hours=1))
    store = RedisFeatureStore(client, redis_prefix, config, sweep_count=10)
    state = FeatureState(config)
    old = [f"old{k}" for k in range(40)]
    for k, user in enumerate(old):
        state.observe(Impression(event_id=f"o{k}", user_id=user, item_id=f"io{k}", ts=T0))
    store.write(state, old, [f"io{k}" for k in range(40)], as_of=T0)
    assert client.hlen(store.users_key) == 40
    later = T0 + timedelta(hours=2)
    for k in range(20):  # each write sweeps one slice of a hash, round-robin
        state.observe(Impression(event_id=f"n{k}", user_id=f"new{k}", item_id="inew", ts=later))
        store.write(state, [f"new{k}"], ["inew"], as_of=later)
    users = {_key(u) for u in client.hkeys(store.users_key)}
    items = {_key(i) for i in client.hkeys(f"{store.items_prefix}0")}
    assert users == {f"new{k}" for k in range(20)}
    assert items == {"inew"}
    features, _ = store.read("new3", ["inew"], later)
    assert features[0].item_impressions == 20  # what is kept still reads back


def test_without_a_ttl_nothing_expires(store: RedisFeatureStore, client: redis.Redis) -> None:
    state = FeatureState(CONFIG)
    state.observe(Impression(event_id="e", user_id="u", item_id="i", ts=T0))
    store.write(state, ["u"], ["i"], as_of=T0)
    store.write(state, ["u"], ["i"], as_of=T0 + timedelta(days=400))
    assert store.expire_idle(full=True) == 0 and client.hlen(store.users_key) == 1


def _key(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
