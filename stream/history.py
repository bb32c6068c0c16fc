"""Durable, bounded history of what the worker measured, for the dashboard's time axis.

Three Redis streams under ``<prefix>history:`` (the registry records its own events,
checkpoints and switches, in ``<prefix>registry:events``):

- ``trainer``: one sample a second while the trainer learns: rolling metrics per task,
  examples seen, freshness p50/p95, lag of the examples topic, label-free drift (PSI).
- ``joiner``: one sample per snapshot or heartbeat of each joiner: its cumulative
  counters (a process's own, so they restart at 0 with it), partitions and their lag.
- ``events``: drift alarms and embedding-version switches.

Every entry is ``{"worker": ..., "json": ...}``; its stream id is its time (Redis's
clock, so samples from several hosts share one axis). Each write trims the stream to
about ``history_max_len`` entries and drops entries older than ``history_retention_s``,
so a worker left running never fills Redis; a reload of the dashboard, or a second
browser, reads the same past from here.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, cast

import redis
from driftrec.core import DriftrecConfig

__all__ = ["HistoryEntry", "HistoryKeys", "HistoryWriter", "read_history"]


@dataclass(frozen=True)
class HistoryKeys:
    """The stream names under one Redis prefix."""

    trainer: str
    joiner: str
    events: str

    @classmethod
    def of(cls, prefix: str) -> HistoryKeys:
        return cls(f"{prefix}history:trainer", f"{prefix}history:joiner", f"{prefix}history:events")


@dataclass(frozen=True)
class HistoryEntry:
    """One entry: stream id, its time in ms, the writing worker, the payload."""

    id: str
    ms: int
    worker: str
    data: dict[str, Any]


class HistoryWriter:
    """Appends to the history streams (blocking: call it off the event loop)."""

    def __init__(self, client: redis.Redis, config: DriftrecConfig, worker: str) -> None:
        self.client = client
        self.keys = HistoryKeys.of(config.redis_prefix)
        self.worker = worker
        self.max_len = config.history_max_len
        self.retention_ms = int(config.history_retention_s * 1000)

    def append(self, key: str, data: dict[str, Any]) -> None:
        oldest = int(time.time() * 1000) - self.retention_ms
        pipe = self.client.pipeline(transaction=False)
        pipe.xadd(
            key,
            {"worker": self.worker, "json": json.dumps(data)},
            maxlen=self.max_len,
            approximate=True,
        )
        # Exact for time (a stream written once a second trims one entry at a time);
        # approximate for length, which Redis does in whole nodes, cheaply.
        pipe.xtrim(key, minid=oldest, approximate=False)
        pipe.execute()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def read_history(
    client: redis.Redis, key: str, after: str = "-", until: str = "+"
) -> list[HistoryEntry]:
    """Entries of ``key`` after stream id ``after`` ("-": from the oldest kept) up to
    ``until`` (inclusive; "+": the newest), oldest first."""
    start = "-" if after == "-" else f"({after}"
    # redis-py types xrange loosely (None for pipelines); a direct call returns rows.
    rows = cast(
        "list[tuple[bytes | str, dict[bytes | str, bytes | str]]]",
        client.xrange(key, min=start, max=until),
    )
    out = []
    for raw_id, fields in rows:
        entry_id = _text(raw_id)
        values = {_text(k): _text(v) for k, v in fields.items()}
        out.append(
            HistoryEntry(
                id=entry_id,
                ms=int(entry_id.partition("-")[0]),
                worker=values.get("worker", ""),
                data=json.loads(values.get("json", "{}")),
            )
        )
    return out
