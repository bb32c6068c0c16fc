"""Redis feature store: the stream writes ``FeatureState`` entries, serving reads them back.

There is no second implementation of a feature: the writer stores the raw entries of
``FeatureState.subset`` (counts, decayed counts with their reference time, recent clicks,
category) and the reader rebuilds a ``FeatureState`` from them with ``from_dict`` and
calls ``lookup_many`` (``lookup`` for many items at once), so serving computes the
features with the joiner's own code.

Layout under ``prefix`` (default ``driftrec:``), one hash per kind so a request for 1000
candidates is one ``HMGET`` per kind, all read by one Lua script (one round trip):

- ``fs:users``: user_id -> ``"<t>|<n>|<json [impressions, clicks, [[ts_us, item], ...]]>"``
- ``fs:items:<shard>``: item_id -> ``"<t>|<n>|<json [imp, clicks, d_imp, d_clicks, ref_us]>"``
- ``fs:catalog``: item_id -> ``"<ts_us>|0|<category>"``; ``fs:shards``: set of shard names
- ``fs:watermark``: the largest event time (µs) any writer has reported
- ``items:recent``: sorted set item_id -> catalog ts (µs), the newest ``recent_limit`` items

Retention: with a ``FeatureConfig.ttl`` (the joiner passes ``feature_ttl_s``), each
``write`` also sweeps a bounded slice (``sweep_count`` fields) of the users and item
hashes, round-robin, deleting entries whose stamp ``t`` is older than the watermark
minus the TTL: a user or item with no event for that long (event time) is forgotten in
Redis as in the joiner's memory. The catalog hash is as large as the catalog (the items
topic bounds it) and ``items:recent`` keeps ``recent_limit`` items.

Last write wins by event time: every value starts with a stamp ``t|n`` and a write
replaces a value only when ``(t, n)`` is not older (``t`` first, then ``n``). For a user
``t`` is the writer's ``as_of`` (the latest event time its state has seen), for an item
its ``ref_us`` (its latest impression or click), for the catalog the item's ``ts``;
``n`` is impressions + clicks, which only grows, so a worker that restarts from an older
snapshot cannot put older counts back over newer ones. The compare-and-set is one Lua
script per batch.

Shards: the joiner keeps one ``FeatureState`` per events partition (users are keyed to
partitions, items are not), so each partition writes its items under its own shard
(``shard=partition``). A reader either takes one shard, ``user_shard(user, partitions)``,
which gives exactly the snapshot the joiner would take for that user (training/serving
parity: the model was trained on per-partition item counts), or sums an item's counts
over all shards, which equals the lookup of one state that saw every event (up to float
rounding) whenever ``ts`` is not before the item's latest event; each shard's decayed
counts are decayed to ``ts`` by ``lookup`` itself. The scripts name keys from the
prefix, so this needs one Redis, not a Cluster.

>>> _split(b"1700000000000000|3|[1,2]")
(1700000000000000, 3, '[1,2]')
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import redis
from driftrec.core import ConfigError, ExampleFeatures, Item
from driftrec.features import CandidateFeatures, FeatureConfig, FeatureState, to_micros
from kafka.partitioner.default import murmur2

__all__ = ["RedisFeatureStore", "user_shard"]

_CHUNK = 1000  # rows per write script call
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# KEYS: users, catalog, shard items, shards set, recent zset, watermark.
# ARGV: shard, recent limit, watermark candidate ('' = none), then rows of
# (kind u|i|c, id, t, n, payload). Returns the number of rows written.
_WRITE = """
local function newer(old, t, n)
  if not old then return true end
  local ot, on = string.match(old, '^(%-?%d+)|(%d+)|')
  ot, on = tonumber(ot), tonumber(on)
  if t ~= ot then return t > ot end
  return n >= on
end
local target = {u = KEYS[1], c = KEYS[2], i = KEYS[3]}
local written, items = 0, false
for j = 4, #ARGV, 5 do
  local kind, id, t, n = ARGV[j], ARGV[j + 1], tonumber(ARGV[j + 2]), tonumber(ARGV[j + 3])
  local key = target[kind]
  if newer(redis.call('HGET', key, id), t, n) then
    redis.call('HSET', key, id, ARGV[j + 2] .. '|' .. ARGV[j + 3] .. '|' .. ARGV[j + 4])
    if kind == 'c' then redis.call('ZADD', KEYS[5], ARGV[j + 2], id) end
    if kind == 'i' then items = true end
    written = written + 1
  end
end
if items then redis.call('SADD', KEYS[4], ARGV[1]) end
local keep = tonumber(ARGV[2])
if keep > 0 then redis.call('ZREMRANGEBYRANK', KEYS[5], 0, -keep - 1) end
if ARGV[3] ~= '' then
  local mark = tonumber(redis.call('GET', KEYS[6]) or '')
  if not mark or tonumber(ARGV[3]) > mark then redis.call('SET', KEYS[6], ARGV[3]) end
end
return written
"""

# KEYS: users, catalog, shards set, watermark. ARGV: items-hash prefix, user, JSON array
# of item ids (one argument rather than one per candidate: redis-py packs arguments in
# Python, which cost more than the read itself at 100 candidates), the one shard wanted
# ('' or a shard that does not exist: every shard).
# Returns {user value, watermark, catalog values, shard, its values, shard, ...}.
_READ = """
local ids = cjson.decode(ARGV[3])
local out = {redis.call('HGET', KEYS[1], ARGV[2]), redis.call('GET', KEYS[4])}
if #ids == 0 then return out end
out[3] = redis.call('HMGET', KEYS[2], unpack(ids))
local shards = {ARGV[4]}
if ARGV[4] == '' or redis.call('SISMEMBER', KEYS[3], ARGV[4]) == 0 then
  shards = redis.call('SMEMBERS', KEYS[3])
end
for _, shard in ipairs(shards) do
  out[#out + 1] = shard
  out[#out + 1] = redis.call('HMGET', ARGV[1] .. shard, unpack(ids))
end
return out
"""


# KEYS: hash, watermark. ARGV: cursor, count, ttl (µs). One HSCAN step; deletes the
# fields stamped before watermark - ttl. Returns {next cursor, deleted}.
_SWEEP = """
local mark = tonumber(redis.call('GET', KEYS[2]) or '')
if not mark then return {'0', 0} end
local cutoff = mark - tonumber(ARGV[3])
local page = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local fields, deleted = page[2], 0
for i = 1, #fields, 2 do
  local t = tonumber(string.match(fields[i + 1], '^(%-?%d+)|'))
  if t and t < cutoff then
    redis.call('HDEL', KEYS[1], fields[i])
    deleted = deleted + 1
  end
end
return {page[1], deleted}
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _split(value: bytes | str) -> tuple[int, int, str]:
    t, n, payload = _text(value).split("|", 2)
    return int(t), int(n), payload


def _entries(item_ids: Sequence[str], values: Sequence[bytes | None]) -> dict[str, Any]:
    """The item entries of one shard's ``HMGET``, parsed with one ``json.loads``."""
    found = [
        (iid, _text(v).split("|", 2)[2])
        for iid, v in zip(item_ids, values, strict=True)
        if v is not None
    ]
    if not found:
        return {}
    parsed = json.loads("[" + ",".join(payload for _, payload in found) + "]")
    return dict(zip((iid for iid, _ in found), parsed, strict=True))


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class RedisFeatureStore:
    """Writer (stream, embedding worker) and reader (serving) of features in one Redis."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "driftrec:",
        config: FeatureConfig | None = None,
        *,
        recent_limit: int = 10_000,
        sweep_count: int = 200,
    ) -> None:
        if recent_limit < 0:
            raise ConfigError(f"recent_limit must be >= 0 (0 = keep all), got {recent_limit}")
        self.client = client
        self.config = config or FeatureConfig()
        self.recent_limit = recent_limit
        self.users_key = f"{prefix}fs:users"
        self.catalog_key = f"{prefix}fs:catalog"
        self.items_prefix = f"{prefix}fs:items:"
        self.shards_key = f"{prefix}fs:shards"
        self.watermark_key = f"{prefix}fs:watermark"
        #: Sorted set of item ids by catalog time; serving's "most recent items".
        self.recent_key = f"{prefix}items:recent"
        self._write = client.register_script(_WRITE)
        self._read = client.register_script(_READ)
        self._sweep = client.register_script(_SWEEP)
        self.sweep_count = sweep_count
        self._sweeping: list[str] = []  # hashes left in this round, then their cursor
        self._cursor = "0"

    # ---- writing ----------------------------------------------------------------------

    def write(
        self,
        state: FeatureState,
        user_ids: Iterable[str],
        item_ids: Iterable[str],
        *,
        as_of: datetime,
        shard: int | str = 0,
    ) -> int:
        """Store the entries of these users and items (and their catalog rows) from ``state``.

        ``as_of`` is the latest event time ``state`` has seen (e.g. the last event of the
        batch just processed); ``shard`` names the state (the events partition). Returns
        how many entries were written; older entries than Redis holds are skipped.
        """
        data = state.subset(user_ids, item_ids)
        stamp = to_micros(as_of)
        rows: list[tuple[str, str, int, int, str]] = [
            ("u", uid, stamp, imp + clicks, _json([imp, clicks, recent]))
            for uid, (imp, clicks, recent, *_) in data["users"].items()
        ]
        rows += [
            ("i", iid, entry[4], entry[0] + entry[1], _json(entry))
            for iid, entry in data["items"].items()
        ]
        rows += [("c", iid, ts, 0, category) for iid, (ts, category) in data["catalog"].items()]
        written = self._run(rows, shard=str(shard), watermark=stamp)
        if self.config.ttl is not None:
            self.expire_idle()
        return written

    def expire_idle(self, *, full: bool = False) -> int:
        """One sweep step (every hash once, with ``full``) deleting entries idle for
        longer than ``config.ttl`` of event time; returns how many were deleted."""
        if self.config.ttl is None:
            return 0
        ttl_us = self.config.ttl // timedelta(microseconds=1)
        deleted = 0
        if full:
            self._sweeping, self._cursor = [], "0"
        while True:
            if not self._sweeping:
                shards = self.client.smembers(self.shards_key)
                self._sweeping = [self.users_key]
                self._sweeping += [f"{self.items_prefix}{_text(s)}" for s in sorted(shards)]
            key = self._sweeping[0]
            keys = [key, self.watermark_key]
            cursor, count = self._sweep(keys=keys, args=[self._cursor, self.sweep_count, ttl_us])
            deleted += int(count)
            self._cursor = _text(cursor)
            if self._cursor == "0":
                self._sweeping.pop(0)
            if not full or not self._sweeping:
                return deleted

    def write_items(self, items: Iterable[Item]) -> int:
        """Catalog rows straight from the items topic (category, and the recent-items set)."""
        rows = [("c", item.item_id, to_micros(item.ts), 0, item.category) for item in items]
        return self._run(rows, shard="0", watermark=None)

    def _run(
        self, rows: list[tuple[str, str, int, int, str]], *, shard: str, watermark: int | None
    ) -> int:
        keys = [
            self.users_key,
            self.catalog_key,
            f"{self.items_prefix}{shard}",
            self.shards_key,
            self.recent_key,
            self.watermark_key,
        ]
        head: list[str | int] = [shard, self.recent_limit, "" if watermark is None else watermark]
        written = 0
        for start in range(0, len(rows), _CHUNK):
            args: list[str | int] = [v for row in rows[start : start + _CHUNK] for v in row]
            written += int(self._write(keys=keys, args=head + args))
        return written

    # ---- reading ----------------------------------------------------------------------

    def read(
        self,
        user_id: str,
        item_ids: Sequence[str],
        ts: datetime | None = None,
        *,
        shard: str | None = None,
    ) -> tuple[list[ExampleFeatures], datetime]:
        """``read_candidates`` as one ``ExampleFeatures`` per item."""
        features, ts = self.read_candidates(user_id, item_ids, ts, shard=shard)
        return features.rows(), ts

    def read_candidates(
        self,
        user_id: str,
        item_ids: Sequence[str],
        ts: datetime | None = None,
        *,
        shard: str | None = None,
    ) -> tuple[CandidateFeatures, datetime]:
        """Features of (user, item) for each item as of ``ts``, and the ``ts`` used.

        ``ts`` defaults to the writers' watermark (event time, so a replayed log is
        served as of its own clock), or now when nothing was written. Item counts are
        summed over every shard, or, with ``shard`` naming a shard that exists, taken
        from that shard alone (``user_shard``: what the joiner snapshots for this user).
        Unknown users and items get the features of an empty history, never an error.
        One round trip; each shard's entries are rebuilt into a ``FeatureState`` whose
        ``lookup_many`` computes the values, as the joiner's ``lookup`` would.
        """
        keys = [self.users_key, self.catalog_key, self.shards_key, self.watermark_key]
        ids = json.dumps(list(item_ids), ensure_ascii=False)
        reply = self._read(keys=keys, args=[self.items_prefix, user_id, ids, shard or ""])
        if ts is None:
            ts = datetime.now(UTC) if reply[1] is None else _from_micros(int(reply[1]))
        base: dict[str, Any] = {"version": 1, "users": {}, "items": {}, "catalog": {}}
        if reply[0] is not None:
            base["users"][user_id] = json.loads(_split(reply[0])[2])
        replies: dict[str, list[bytes | None]] = {}
        if item_ids:
            for iid, value in zip(item_ids, reply[2], strict=True):
                if value is not None:
                    t, _, category = _split(value)
                    base["catalog"][iid] = [t, category]
            replies = {_text(reply[j]): reply[j + 1] for j in range(3, len(reply), 2)}
        parts = [
            FeatureState.from_dict({**base, "items": entries}, self.config).lookup_many(
                user_id, item_ids, ts
            )
            for values in replies.values()
            if (entries := _entries(item_ids, values))
        ]
        if not parts:
            return FeatureState.from_dict(base, self.config).lookup_many(user_id, item_ids, ts), ts
        # An item a shard has not seen counts 0 there: summing every shard in order adds
        # exact zeros to the shards that saw it, as the per-item sum always did.
        total = parts[0].item_counts
        for part in parts[1:]:
            total = total + part.item_counts
        return dataclasses.replace(parts[0], item_counts=total), ts

    def recent_items(self, n: int) -> list[str]:
        """The ``n`` items with the newest catalog time, newest first."""
        if n <= 0:
            return []
        raw = cast("list[bytes | str]", self.client.zrange(self.recent_key, 0, n - 1, desc=True))
        return [_text(v) for v in raw]

    def watermark(self) -> datetime | None:
        """The latest event time any writer reported, or None."""
        value = self.client.get(self.watermark_key)
        return None if value is None else _from_micros(int(_text(value)))


def user_shard(user_id: str, partitions: int) -> str:
    """The events partition of ``user_id`` under Kafka's default partitioner (murmur2 of
    the key; producers key events by user id): the shard the joiner writes them from.

    >>> user_shard("user1", 4) == user_shard("user1", 4) and user_shard("u", 1) == "0"
    True
    """
    return str((murmur2(user_id.encode()) & 0x7FFFFFFF) % partitions)


def _from_micros(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)
