"""Joiner snapshots in Redis, one key per events partition, fenced by an owner epoch.

A worker that is assigned a partition ``claim``s it: one transaction bumps the
partition's epoch and reads its snapshot. Every later ``save`` checks, in the same Lua
script that writes, that the writer's epoch is still the newest, so a worker that has
lost a partition (it was revoked and given to another worker, which claimed it) can no
longer overwrite its successor's snapshot: that write is refused and the partition
reported as fenced. A snapshot holds the state and the last source offset it covers,
written together, so they cannot part.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import redis

__all__ = ["FREE", "PartitionStore"]

#: The epoch of a state that no assignment claimed (faust's test context): never fenced.
FREE = 0

# KEYS: epoch key, snapshot key, ... (pairs). ARGV: epoch, snapshot, ... (pairs).
# Writes the pairs whose epoch is FREE or still current; returns the indexes refused.
_SAVE = """
local refused = {}
for i = 1, #KEYS, 2 do
  local mine = tonumber(ARGV[i])
  if mine ~= 0 and tonumber(redis.call('GET', KEYS[i]) or '0') ~= mine then
    table.insert(refused, (i + 1) / 2)
  else
    redis.call('SET', KEYS[i + 1], ARGV[i + 1])
  end
end
return refused
"""


class PartitionStore:
    """Snapshots and owner epochs of one app's events partitions (sync; agents call it
    from a thread through ``driftrec.stream.retry.call_redis``)."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self.client = client
        self.key = key  # "<prefix>stream:<app>:<topic>:p"; snapshot of partition 3 at "...:p3"
        self._save = client.register_script(_SAVE)

    def snapshot_key(self, partition: int) -> str:
        return f"{self.key}{partition}"

    def epoch_key(self, partition: int) -> str:
        return f"{self.key}{partition}:epoch"

    def claim(self, partitions: Iterable[int]) -> dict[int, tuple[int, bytes | None]]:
        """Take ownership: partition -> (new epoch, its snapshot or None), atomically."""
        wanted = sorted(partitions)
        if not wanted:
            return {}
        pipe = self.client.pipeline(transaction=True)
        for partition in wanted:
            pipe.incr(self.epoch_key(partition))
            pipe.get(self.snapshot_key(partition))
        replies = pipe.execute()
        return {p: (int(replies[2 * i]), replies[2 * i + 1]) for i, p in enumerate(wanted)}

    def load(self, partition: int) -> bytes | None:
        raw = self.client.get(self.snapshot_key(partition))
        return raw if isinstance(raw, bytes) else None

    def save(self, snapshots: Mapping[int, tuple[int, bytes]]) -> set[int]:
        """Write partition -> (epoch, snapshot) in one round trip; returns the partitions
        refused because another worker claimed them since."""
        if not snapshots:
            return set()
        order = sorted(snapshots)
        keys = [k for p in order for k in (self.epoch_key(p), self.snapshot_key(p))]
        args: list[int | bytes] = [v for p in order for v in snapshots[p]]
        refused = self._save(keys=keys, args=args)
        return {order[int(i) - 1] for i in refused}

    def reset(self) -> None:
        """Delete every snapshot and epoch of this app (tests, `driftrec worker --reset`)."""
        keys = list(self.client.scan_iter(f"{self.key}*"))
        if keys:
            self.client.delete(*keys)
