"""One batch of catalog records -> item vectors in one embedding version.

Shared by the live embedding worker (``driftrec.online_update.embeddings.embedder``) and the refresh
(``driftrec.online_update.embeddings.embed_refresh``): the text an item is embedded from, decoding a batch of
items-topic records (newest item per id, tombstones, dead letters), and ``VersionWriter``,
which encodes and stores a batch under one version, last write wins by event time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from driftrec.core import (
    ConfigError,
    DeadLetter,
    DriftrecConfig,
    InvalidEvent,
    Item,
    dead_letter,
    decode_item,
)
from driftrec.online_update.embeddings.text_encoder import Pooling, TextEncoder, load_text_encoder
from driftrec.online_update.embeddings.vector_cache import CachedEncoder
from driftrec.online_update.embeddings.vector_store import RedisVectorStore

__all__ = [
    "DecodedBatch",
    "EmbedStats",
    "VersionWriter",
    "declare_version",
    "decode_batch",
    "event_stamp",
    "item_text",
    "model_spec",
    "open_version",
    "vector_store_for",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def item_text(item: Item) -> str:
    """The text an item is embedded from.

    >>> from datetime import datetime, timezone
    >>> ts = datetime(2024, 1, 1, tzinfo=timezone.utc)
    >>> item_text(Item(item_id="i", title="Rain in Paris", text="Umbrellas sold out", ts=ts))
    'Rain in Paris. Umbrellas sold out'
    >>> item_text(Item(item_id="i", title="Rain in Paris", ts=ts))
    'Rain in Paris'
    """
    return f"{item.title}. {item.text}" if item.text.strip() else item.title


def event_stamp(item: Item) -> int:
    """The item's event time in integer microseconds (exact, unlike float seconds)."""
    return (item.ts - _EPOCH) // timedelta(microseconds=1)


def vector_store_for(
    settings: DriftrecConfig, client: redis.Redis | None = None
) -> RedisVectorStore:
    """The vector store every driftrec process uses: prefix ``<redis_prefix>emb:``."""
    client = client or redis.Redis.from_url(settings.redis_url)
    return RedisVectorStore(client, prefix=f"{settings.redis_prefix}emb:")


@dataclass
class DecodedBatch:
    """Newest item per id, ids to delete, and the records that did not decode."""

    items: list[Item] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


def decode_batch(records: Sequence[Any], topic: str) -> DecodedBatch:
    """Decode kafka records (``partition``, ``offset``, ``key``, ``value``) of the items topic.

    Within a batch the newest event time wins per item (the later record on a tie); a
    tombstone deletes the id unless a newer record of it follows in the same batch.
    """
    newest: dict[str, tuple[Item, int]] = {}
    deleted: dict[str, int] = {}
    out = DecodedBatch()
    for n, record in enumerate(records):
        if record.value is None and record.key:
            item_id = bytes(record.key).decode("utf-8", errors="replace")
            deleted[item_id] = n
            newest.pop(item_id, None)
            continue
        try:
            item = decode_item(record.value or b"")
        except InvalidEvent as error:
            letter = dead_letter(
                str(error), "embedder", topic, record.partition, record.offset, record.value
            )
            out.dead_letters.append(letter)
            continue
        known = newest.get(item.item_id)
        if known is None or item.ts >= known[0].ts:
            newest[item.item_id] = (item, n)
            deleted.pop(item.item_id, None)
    out.items = [item for item, _ in sorted(newest.values(), key=lambda pair: pair[1])]
    out.deleted = sorted(deleted)
    return out


@dataclass
class EmbedStats:
    """Counters of one worker (or refresh) run."""

    records: int = 0
    items: int = 0
    encoded: int = 0
    cache_hits: int = 0
    written: int = 0
    stale: int = 0
    deleted: int = 0
    dead_letters: int = 0
    batches: int = 0
    switches: list[str] = field(default_factory=list)


class VersionWriter:
    """One embedding version and the encoder that fills it."""

    def __init__(
        self, store: RedisVectorStore, encoder: TextEncoder, batch_size: int = 256
    ) -> None:
        self.store = store
        self.encoder = encoder
        self.version = encoder.version
        self.batch_size = batch_size

    def write(self, items: Sequence[Item], deleted: Sequence[str], stats: EmbedStats) -> None:
        """Encode ``items`` and store them (newer event time wins); delete ``deleted``."""
        if items:
            cache = self.encoder.stats if isinstance(self.encoder, CachedEncoder) else None
            hits, misses = (cache.hits, cache.misses) if cache else (0, 0)
            vectors = self.encoder.encode([item_text(i) for i in items], self.batch_size)
            if cache is not None:
                stats.cache_hits += cache.hits - hits
                stats.encoded += cache.misses - misses
            else:
                stats.encoded += len(items)
            written = self.store.put_newer(
                self.version,
                [i.item_id for i in items],
                vectors,
                [event_stamp(i) for i in items],
            )
            stats.written += written
            stats.stale += len(items) - written
        if deleted:
            self.store.delete(self.version, deleted)
            stats.deleted += len(deleted)


def open_version(
    store: RedisVectorStore,
    version: str,
    settings: DriftrecConfig,
    *,
    device: str | None = None,
    batch_size: int = 256,
) -> VersionWriter:
    """A writer for a declared version, its encoder rebuilt from the version's metadata."""
    meta = store.describe(version) or {}
    if "model" not in meta:
        raise ConfigError(
            f"embedding version {version!r} does not say which model built it, so this worker "
            "cannot write it: run `driftrec embed --refresh --model ...` to build a version "
            "the worker can follow"
        )
    encoder = load_text_encoder(meta["model"], device, pooling=meta.get("pooling", "auto"))
    if encoder.version != version:
        raise ConfigError(
            f"the active embedding version is {version!r}, but model {meta['model']!r} loads "
            f"as {encoder.version!r} here (other files or settings): make the model directory "
            "match, or run `driftrec embed --refresh` to build a new version"
        )
    cached = CachedEncoder(encoder, settings.data_dir / "text-cache", flush_every=512)
    return VersionWriter(store, cached, batch_size)


def model_spec(model: str) -> str:
    """``model`` as other processes can load it: a directory becomes an absolute path.

    >>> model_spec("minilm"), model_spec("hashing:64")
    ('minilm', 'hashing:64')
    """
    if model == "minilm" or model == "hashing" or model.startswith("hashing:"):
        return model
    return str(Path(model).expanduser().resolve())


def declare_version(
    store: RedisVectorStore, encoder: TextEncoder, model: str, pooling: Pooling, state: str
) -> None:
    """Declare ``encoder.version`` with what rebuilds its encoder (``open_version``)."""
    store.declare(
        encoder.version,
        encoder=encoder.name,
        dim=encoder.dim,
        model=model_spec(model),
        pooling=pooling,
        state=state,
        declared_at=datetime.now(UTC).isoformat(),
    )
