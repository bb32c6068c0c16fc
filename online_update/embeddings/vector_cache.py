"""Text-vector cache: encode each (encoder version, text) once, in memory and on disk.

``CachedEncoder`` wraps any ``TextEncoder`` and only sends it the texts it has not seen,
deduplicated. With a ``cache_dir`` the new vectors are written as safetensors shards (one
per flush, the keys and encoder version in the shard's JSON header), so a second run of
the evaluator reads them back instead of re-encoding. Nothing is pickled.

>>> from driftrec.online_update.embeddings.text_encoder import HashingTextEncoder
>>> enc = CachedEncoder(HashingTextEncoder(dim=32))
>>> enc.encode(["a b", "c", "a b"]).shape
(3, 32)
>>> enc.stats
CacheStats(hits=1, misses=2, loaded=0)
>>> _ = enc.encode(["c"]); enc.stats.hits
2
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np
from driftrec.core import DriftrecError
from driftrec.online_update.embeddings.text_encoder import FloatMatrix, TextEncoder, check_texts
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

__all__ = ["CacheStats", "CachedEncoder", "cache_key"]

_FORMAT = "driftrec-vector-cache/1"
log = logging.getLogger(__name__)


def cache_key(version: str, text: str) -> str:
    """32 hex digits naming one text under one encoder version."""
    data = f"{version}\x1f{text}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@dataclass
class CacheStats:
    """``hits``: texts served without encoding (repeats within a call included);
    ``misses``: distinct texts sent to the encoder; ``loaded``: vectors read from disk."""

    hits: int = 0
    misses: int = 0
    loaded: int = 0


class CachedEncoder:
    """A ``TextEncoder`` that remembers every vector it has produced.

    ``flush_every``: write a shard once this many new vectors are pending, checked at the
    end of each ``encode`` call (1 = after every call that encoded something). Call
    ``flush()`` (or use it as a context manager) to write the rest. Shards of other encoder
    versions live in other subdirectories and are never read.
    """

    def __init__(
        self, encoder: TextEncoder, cache_dir: Path | None = None, *, flush_every: int = 1
    ) -> None:
        self.encoder = encoder
        self.flush_every = max(1, flush_every)
        self.stats = CacheStats()
        self._memory: dict[str, FloatMatrix] = {}
        self._pending: list[str] = []
        self.shard_dir: Path | None = None
        if cache_dir is not None:
            self.shard_dir = Path(cache_dir) / _slug(encoder.version)
            self.shard_dir.mkdir(parents=True, exist_ok=True)
            self._load()

    @property
    def name(self) -> str:
        return self.encoder.name

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def version(self) -> str:
        return self.encoder.version

    def __len__(self) -> int:
        return len(self._memory)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> FloatMatrix:
        items = check_texts(texts, batch_size)
        version = self.encoder.version
        keys = [cache_key(version, text) for text in items]
        todo: dict[str, str] = {}
        for key, text in zip(keys, items, strict=True):
            if key not in self._memory and key not in todo:
                todo[key] = text
        if todo:
            vectors = np.ascontiguousarray(
                self.encoder.encode(list(todo.values()), batch_size=batch_size), dtype=np.float32
            )
            if vectors.shape != (len(todo), self.dim):
                raise DriftrecError(
                    f"encoder {version} returned shape {vectors.shape} for {len(todo)} texts, "
                    f"expected ({len(todo)}, {self.dim}): the encoder is broken"
                )
            for key, row in zip(todo, vectors, strict=True):
                self._memory[key] = row
            if self.shard_dir is not None:
                self._pending.extend(todo)
        self.stats.misses += len(todo)
        self.stats.hits += len(items) - len(todo)
        if len(self._pending) >= self.flush_every:
            self.flush()
        if not keys:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._memory[key] for key in keys])

    def flush(self) -> Path | None:
        """Write pending vectors as one shard; the shard path, or None if nothing was due."""
        if self.shard_dir is None or not self._pending:
            return None
        vectors = np.stack([self._memory[key] for key in self._pending])
        metadata = {
            "format": _FORMAT,
            "version": self.encoder.version,
            "dim": str(self.dim),
            "keys": json.dumps(self._pending),
        }
        name = f"{time.time_ns():x}-{os.getpid()}-{secrets.token_hex(4)}.safetensors"
        path = self.shard_dir / name
        tmp = path.with_suffix(".tmp")
        save_file({"vectors": vectors}, tmp, metadata=metadata)
        # rename last: a reader never sees a half-written shard, even from another process
        os.replace(tmp, path)
        self._pending = []
        return path

    def __enter__(self) -> CachedEncoder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.flush()

    def _load(self) -> None:
        if self.shard_dir is None:
            return
        for path in sorted(self.shard_dir.glob("*.safetensors")):
            try:
                with safe_open(str(path), framework="np") as shard:
                    meta = shard.metadata() or {}
                    vectors = shard.get_tensor("vectors")
                keys = json.loads(meta["keys"])
            except (OSError, KeyError, ValueError, SafetensorError) as exc:
                # a damaged shard costs re-encoding, never a crash
                log.warning("skipping unreadable vector-cache shard %s: %s", path, exc)
                continue
            good = (
                meta.get("format") == _FORMAT
                and meta.get("version") == self.encoder.version
                and vectors.shape == (len(keys), self.dim)
            )
            if not good:
                log.warning("skipping vector-cache shard %s written by another encoder", path)
                continue
            vectors = np.ascontiguousarray(vectors, dtype=np.float32)
            for key, row in zip(keys, vectors, strict=True):
                self._memory[str(key)] = row
            self.stats.loaded += len(keys)


def _slug(version: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", version)[:80]
    return f"{readable}-{hashlib.sha256(version.encode()).hexdigest()[:8]}"
