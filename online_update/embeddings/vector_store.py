"""Item text vectors in Redis, under an embedding version.

The embedding worker writes; the trainer and the serving API read. A version is
complete before it becomes active (`driftrec embed --refresh` switches the pointer
in one command), so readers never mix vectors of two encoders.

Layout (prefix ``driftrec:emb:``): ``<prefix>active`` holds the active version;
``<prefix>v:<version>`` is a hash item_id -> float32 bytes; ``<prefix>ts:<version>`` a
hash item_id -> the item's event time in microseconds (last write wins by event time,
see ``put_newer``); ``<prefix>meta:<version>`` holds JSON: the encoder name and
dimension, and for versions the embedding worker built, the model spec that rebuilds the
encoder (``model``, ``pooling``) and ``state`` (``building`` until a refresh completes).
Every change of the active pointer is announced on the channel ``<prefix>active-changed``.
``<prefix>previous`` holds the version the last switch replaced, and the hash
``<prefix>inactive-since`` version -> ISO time records when a version stopped being
active (or, for a version never active, when retention first saw it).

Retention (``collect``): versions other than the active and the previous one (and any
the caller protects) are deleted with their vectors ``grace_s`` after they stopped being
active; a version still being built by a refresh (``state`` ``building``) is left alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import redis

__all__ = ["RedisVectorStore"]

# Last write wins by event time, per item, in one round trip. A refresh catching up on
# old offsets and the live worker may write the same item in either order; only the
# newer item (or the same item again: ``<=``) may replace a stored vector.
_PUT_NEWER = """
local written = 0
for i = 1, #ARGV, 3 do
  local old = redis.call('HGET', KEYS[2], ARGV[i])
  if (not old) or tonumber(old) <= tonumber(ARGV[i + 1]) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
    written = written + 1
  end
end
return written
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisVectorStore:
    """Read and write item vectors for one Redis; thread-safe like redis-py itself."""

    def __init__(self, client: redis.Redis, prefix: str = "driftrec:emb:") -> None:
        self.client = client
        self.prefix = prefix
        self._put_newer = client.register_script(_PUT_NEWER)

    def _key(self, version: str) -> str:
        return f"{self.prefix}v:{version}"

    def _stamps(self, version: str) -> str:
        return f"{self.prefix}ts:{version}"

    @property
    def channel(self) -> str:
        """Pub/sub channel that receives the new active version on every switch."""
        return f"{self.prefix}active-changed"

    def active_version(self) -> str | None:
        value = self.client.get(f"{self.prefix}active")
        return None if value is None else _text(value)

    def set_active(self, version: str) -> None:
        """Switch the active version: one SET (atomic for readers), then announce it; the
        version it replaces becomes the previous one."""
        old = self.active_version()
        with self.client.pipeline(transaction=True) as pipe:
            pipe.set(f"{self.prefix}active", version)
            if old is not None and old != version:
                pipe.set(f"{self.prefix}previous", old)
                pipe.hset(self._inactive, old, datetime.now(UTC).isoformat())
            pipe.hdel(self._inactive, version)
            pipe.publish(self.channel, version)
            pipe.execute()

    def set_active_if_none(self, version: str) -> bool:
        """Make ``version`` active only when no version is; True when it became active."""
        if not self.client.set(f"{self.prefix}active", version, nx=True):
            return False
        self.client.hdel(self._inactive, version)
        self.client.publish(self.channel, version)
        return True

    def previous_version(self) -> str | None:
        """The version the last ``set_active`` replaced."""
        value = self.client.get(f"{self.prefix}previous")
        return None if value is None else _text(value)

    @property
    def _inactive(self) -> str:
        return f"{self.prefix}inactive-since"

    def describe(self, version: str) -> dict[str, Any] | None:
        raw = self.client.get(f"{self.prefix}meta:{version}")
        return json.loads(raw) if raw else None

    def declare(self, version: str, *, encoder: str, dim: int, **info: Any) -> None:
        """Write the version's metadata; ``info`` adds JSON fields (model spec, state, ...)."""
        meta = {**info, "encoder": encoder, "dim": dim}
        self.client.set(f"{self.prefix}meta:{version}", json.dumps(meta))

    def update_meta(self, version: str, **info: Any) -> dict[str, Any]:
        """Merge ``info`` into a declared version's metadata; returns the new metadata."""
        meta = self.describe(version)
        if meta is None:
            raise KeyError(f"embedding version {version!r} was never declared")
        meta.update(info)
        self.client.set(f"{self.prefix}meta:{version}", json.dumps(meta))
        return meta

    def versions(self) -> list[str]:
        """Every declared version, sorted."""
        start = len(f"{self.prefix}meta:")
        return sorted(_text(k)[start:] for k in self.client.scan_iter(f"{self.prefix}meta:*"))

    def put(self, version: str, item_ids: Sequence[str], vectors: np.ndarray) -> None:
        """Store one vector per item (float32 bytes); one round trip."""
        if len(item_ids) != len(vectors):
            raise ValueError(f"{len(item_ids)} ids but {len(vectors)} vectors")
        if not item_ids:
            return
        data = np.ascontiguousarray(vectors, dtype=np.float32)
        mapping = {i: row.tobytes() for i, row in zip(item_ids, data, strict=True)}
        self.client.hset(self._key(version), mapping=mapping)  # type: ignore[arg-type]  # redis-py's stub wants a narrower dict type

    def put_newer(
        self, version: str, item_ids: Sequence[str], vectors: np.ndarray, stamps: Sequence[int]
    ) -> int:
        """Store each vector unless the version holds one from a newer item event time
        (``stamps``: integer microseconds); returns how many were written. One round trip."""
        if not len(item_ids) == len(vectors) == len(stamps):
            raise ValueError(f"{len(item_ids)} ids, {len(vectors)} vectors, {len(stamps)} stamps")
        if not item_ids:
            return 0
        data = np.ascontiguousarray(vectors, dtype=np.float32)
        args: list[str | int | bytes] = []
        for item_id, stamp, row in zip(item_ids, stamps, data, strict=True):
            args += [item_id, int(stamp), row.tobytes()]
        return int(self._put_newer(keys=[self._key(version), self._stamps(version)], args=args))

    def delete(self, version: str, item_ids: Sequence[str]) -> None:
        """Forget items (catalog tombstones)."""
        if item_ids:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.hdel(self._key(version), *item_ids)
                pipe.hdel(self._stamps(version), *item_ids)
                pipe.execute()

    def get(self, version: str, item_ids: Sequence[str], dim: int) -> tuple[np.ndarray, np.ndarray]:
        """Vectors ``[N, dim]`` (zeros where missing) and a found-mask ``[N]``; one round trip."""
        out = np.zeros((len(item_ids), dim), dtype=np.float32)
        found = np.zeros(len(item_ids), dtype=bool)
        if not item_ids:
            return out, found
        for row, raw in enumerate(self.client.hmget(self._key(version), list(item_ids))):
            if isinstance(raw, bytes) and len(raw) == dim * 4:
                out[row] = np.frombuffer(raw, dtype=np.float32)
                found[row] = True
        return out, found

    def known(self, version: str) -> int:
        return int(self.client.hlen(self._key(version)))

    def item_ids(self, version: str, limit: int | None = None) -> list[str]:
        """Up to ``limit`` ids of items written by ``put_newer``, in Redis's scan order."""
        out: list[str] = []
        # the stamps hash has the same fields and small values (NOVALUES needs Redis 7.4)
        for key, _ in self.client.hscan_iter(self._stamps(version), count=1000):
            out.append(_text(key))
            if limit is not None and len(out) >= limit:
                break
        return out

    def stored_versions(self) -> list[str]:
        """Every version with metadata or vectors (vectors can outlive lost metadata)."""
        found = set(self.versions())
        start = len(f"{self.prefix}v:")
        found.update(_text(k)[start:] for k in self.client.scan_iter(f"{self.prefix}v:*"))
        return sorted(found)

    def collect(
        self,
        grace_s: float,
        *,
        protect: Iterable[str] = (),
        dry_run: bool = False,
        now: datetime | None = None,
    ) -> dict[str, str]:
        """Delete versions past their grace period (see the module docstring); returns
        each stored version -> what happens to it ("delete" or why it is kept)."""
        now = now or datetime.now(UTC)
        keep = {v: "protected" for v in protect}
        if (previous := self.previous_version()) is not None:
            keep[previous] = "previous"
        if (active := self.active_version()) is not None:
            keep[active] = "active"
        since = {
            _text(k): datetime.fromisoformat(_text(v))
            for k, v in self.client.hgetall(self._inactive).items()
        }
        out: dict[str, str] = {}
        for version in self.stored_versions():
            if version in keep:
                out[version] = keep[version]
            elif (self.describe(version) or {}).get("state") == "building":
                out[version] = "building"
            elif version not in since:
                out[version] = "grace starts now"
                if not dry_run:
                    self.client.hsetnx(self._inactive, version, now.isoformat())
            elif since[version] > now - timedelta(seconds=grace_s):
                out[version] = f"in grace until {since[version] + timedelta(seconds=grace_s)}"
            else:
                out[version] = "delete"
                if not dry_run:
                    try:
                        self.drop(version)
                    except ValueError:  # switched to it since we read the pointer
                        out[version] = "active"
        return out

    def drop(self, version: str) -> None:
        """Delete a version's vectors and metadata; refuses the active version."""
        if version == self.active_version():
            raise ValueError(f"{version!r} is the active embedding version: switch first")
        with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(self._key(version), self._stamps(version), f"{self.prefix}meta:{version}")
            pipe.hdel(self._inactive, version)
            pipe.execute()
