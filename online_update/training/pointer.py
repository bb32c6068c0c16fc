"""Which checkpoint is the trainer's current one, fenced by an owner epoch (in Redis).

One trainer writes a model, but during a rebalance two workers can briefly both believe
they own the examples partition. Each checkpoint is written to a file of its own; it
becomes the one a restart resumes from only when its writer's epoch is still the newest
claim, checked and switched in one Lua script. A worker that lost the partition can
still write a file, but never make it current, so it cannot overwrite its successor.
The same script records the source offsets the checkpoint covers, so a new owner can
learn where to read on from one Redis read, before it loads the model.

A Redis that restarted empty has no epoch: the running owner, whose model is then the
only copy, makes its checkpoint current under a restore epoch (``driftrec.core``), set
only where no epoch exists yet, and writes on under it.

>>> class FakeRedis:  # the commands the pointer uses, for the example only
...     def __init__(self): self.data = {}
...     def incr(self, key): self.data[key] = self.data.get(key, 0) + 1; return self.data[key]
...     def get(self, key): return self.data.get(key)
...     def register_script(self, _):
...         def advance(keys, args):
...             if self.data.get(keys[0]) != int(args[0]): return 0
...             self.data[keys[1]], self.data[keys[2]] = args[1], args[2]; return 1
...         return advance
>>> pointer = CheckpointPointer(FakeRedis(), "t:")
>>> old, new = pointer.claim(), pointer.claim()
>>> pointer.advance(old, "stale.pt", {"examples:0": 9}), pointer.current()
(None, None)
>>> pointer.advance(new, "fresh.pt", {"examples:0": 41}), pointer.current(), pointer.covered()
(2, 'fresh.pt', {'examples:0': 41})
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from driftrec.core import restore_epoch

__all__ = ["CheckpointPointer"]

log = logging.getLogger(__name__)

# KEYS: epoch, current, covered. ARGV: the writer's epoch, the checkpoint's path, the
# offsets it covers (JSON), and 1 to set the epoch where none exists. Returns 1 when
# written, 0 when another epoch is current, 2 when there is no epoch (and ARGV[4] is 0).
_ADVANCE = """
local current = redis.call('GET', KEYS[1])
if not current then
  if ARGV[4] ~= '1' then return 2 end
  redis.call('SET', KEYS[1], ARGV[1])
elseif tonumber(current) ~= tonumber(ARGV[1]) then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[3], ARGV[3])
return 1
"""
_WRITTEN, _LOST = 1, 2


class CheckpointPointer:
    """The current checkpoint of one trainer (``prefix`` names it) and its owner epoch."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.epoch_key = f"{prefix}epoch"
        self.current_key = f"{prefix}current"
        self.covered_key = f"{prefix}covered"
        self._advance = client.register_script(_ADVANCE)

    def claim(self) -> int:
        """Become the owner: every earlier owner's ``advance`` fails from now on."""
        return int(self.client.incr(self.epoch_key))

    def current(self) -> str | None:
        """The path of the checkpoint a new owner resumes from (None: start fresh)."""
        raw = self.client.get(self.current_key)
        return raw.decode() if isinstance(raw, bytes) else raw

    def covered(self) -> dict[str, int]:
        """The offsets ("topic:partition" -> last offset) the current checkpoint covers."""
        raw = self.client.get(self.covered_key)
        return {str(k): int(v) for k, v in json.loads(raw).items()} if raw else {}

    def advance(self, epoch: int, path: str, offsets: Mapping[str, int]) -> int | None:
        """Make ``path``, which covers ``offsets``, current if ``epoch`` is still the
        newest claim; returns the epoch it was written under (None: fenced out). Where
        Redis lost the epoch, that is a new restore epoch the caller writes on under."""
        keys = [self.epoch_key, self.current_key, self.covered_key]
        covered = json.dumps(dict(offsets))
        done = self._advance(keys=keys, args=[epoch, path, covered, 0])
        if done == _LOST:
            log.warning("the trainer's owner epoch is gone from Redis (it restarted empty?)")
            epoch = restore_epoch()
            done = self._advance(keys=keys, args=[epoch, path, covered, 1])
        return epoch if done == _WRITTEN else None
