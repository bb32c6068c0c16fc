"""Joiner snapshots in Redis, one hash per events partition, fenced by an owner epoch.

A snapshot is incremental: the partition's state is kept per key (a user's features,
an item's counters, a pending impression, a remembered event id, ...; see
``JoinerState.delta`` and ``FeatureState.delta``) in one Redis hash, and each save
writes only the keys changed since the last one, deletes the keys forgotten, and sets
``offset``, the last source offset the state covers, in the same script: state and
offset cannot part, and the cost of a save follows the traffic, not the history.

A worker that is assigned a partition ``claim``s it: one transaction bumps the
partition's epoch and reads its snapshot. Every later ``save`` checks, in the same Lua
script that writes, that the writer's epoch is still the newest, so a worker that has
lost a partition (revoked and given to another worker, which claimed it) can no longer
write into its successor's snapshot: that save is refused and the partition reported
as fenced.

A Redis that restarted empty (no persistence, a lost disk, a flush) has no epoch at all
for a partition a worker is still running: no claim happened since, yet a delta written
there would be a partial snapshot. ``save`` reports such a partition as ``lost`` and
writes nothing; the worker then writes its whole state again under a restore epoch
(``driftrec.core.restore_epoch``), which only succeeds while the epoch is still missing
(no other worker claimed it since).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import redis

__all__ = ["FREE", "PartitionStore", "Saved", "Snapshot"]

#: The epoch of a state that no assignment claimed (faust's test context): never fenced.
FREE = 0

# KEYS: epoch key, state key, ... (pairs). ARGV, per pair: epoch, restore flag, #writes,
# #deletes, then the writes as key, value and the deleted keys. A pair is applied when
# its epoch is FREE or still current, or, with the restore flag, when no epoch is set
# (which it then sets). Returns the (1-based) indexes of the pairs refused (another
# epoch is current) and of those lost (no epoch at all, and no restore flag).
_SAVE = """
local refused, lost = {}, {}
local at = 1
for i = 1, #KEYS, 2 do
  local mine, restore = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
  local writes, deletes = tonumber(ARGV[at + 2]), tonumber(ARGV[at + 3])
  at = at + 4
  local current = redis.call('GET', KEYS[i])
  local apply = mine == 0 or tonumber(current or '0') == mine
  if mine ~= 0 and not current then
    if restore == 1 then
      redis.call('SET', KEYS[i], mine)
      apply = true
    else
      table.insert(lost, (i + 1) / 2)
    end
  elseif not apply then
    table.insert(refused, (i + 1) / 2)
  end
  if apply then
    for j = at, at + 2 * writes - 1, 2 do
      redis.call('HSET', KEYS[i + 1], ARGV[j], ARGV[j + 1])
    end
    for j = at + 2 * writes, at + 2 * writes + deletes - 1 do
      redis.call('HDEL', KEYS[i + 1], ARGV[j])
    end
  end
  at = at + 2 * writes + deletes
end
return {refused, lost}
"""


class Snapshot(NamedTuple):
    """What one save writes for a partition: the owner epoch, keys to set, keys to drop."""

    epoch: int
    write: Mapping[str, str]
    delete: Sequence[str]
    #: The whole state, to be written only where the partition has no epoch (see ``save``).
    restore: bool = False


class Saved(NamedTuple):
    """Partitions a save did not write: ``fenced`` (another worker claimed them since)
    and ``lost`` (Redis has no epoch for them: it restarted empty)."""

    fenced: set[int]
    lost: set[int]


class PartitionStore:
    """Snapshots and owner epochs of one app's events partitions (sync; agents call it
    from a thread through ``driftrec.stream.retry.call_redis``)."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self.client = client
        self.key = key  # "<prefix>stream:<app>:<topic>:p"; partition 3's hash is "...:p3"
        self._save = client.register_script(_SAVE)

    def snapshot_key(self, partition: int) -> str:
        return f"{self.key}{partition}"

    def epoch_key(self, partition: int) -> str:
        return f"{self.key}{partition}:epoch"

    def claim(self, partitions: Iterable[int]) -> dict[int, tuple[int, dict[str, str]]]:
        """Take ownership: partition -> (new epoch, its snapshot's keys), atomically."""
        wanted = sorted(partitions)
        if not wanted:
            return {}
        pipe = self.client.pipeline(transaction=True)
        for partition in wanted:
            pipe.incr(self.epoch_key(partition))
            pipe.hgetall(self.snapshot_key(partition))
        replies = pipe.execute()
        return {
            p: (int(replies[2 * i]), _decoded(replies[2 * i + 1])) for i, p in enumerate(wanted)
        }

    def load(self, partition: int) -> dict[str, str]:
        return _decoded(self.client.hgetall(self.snapshot_key(partition)))

    def save(self, snapshots: Mapping[int, Snapshot]) -> Saved:
        """Apply every partition's changes in one round trip; returns the partitions not
        written, fenced or lost (see ``Saved``)."""
        if not snapshots:
            return Saved(set(), set())
        order = sorted(snapshots)
        keys: list[str] = []
        args: list[int | str] = []
        for partition in order:
            epoch, write, delete, restore = snapshots[partition]
            keys += [self.epoch_key(partition), self.snapshot_key(partition)]
            args += [epoch, int(restore), len(write), len(delete)]
            args += [x for pair in write.items() for x in pair]
            args += list(delete)
        refused, lost = self._save(keys=keys, args=args)
        return Saved({order[int(i) - 1] for i in refused}, {order[int(i) - 1] for i in lost})

    def reset(self) -> None:
        """Delete every snapshot and epoch of this app (tests, `driftrec worker --reset`)."""
        keys = list(self.client.scan_iter(f"{self.key}*"))
        if keys:
            self.client.delete(*keys)


def _decoded(raw: Mapping[bytes | str, bytes | str]) -> dict[str, str]:
    def text(value: bytes | str) -> str:
        return value.decode() if isinstance(value, bytes) else value

    return {text(k): text(v) for k, v in raw.items()}
