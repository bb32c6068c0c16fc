"""What the dashboard and `driftrec watch` show, read from Redis: the history (samples
and markers on one time axis) and the live status (who is alive, rates, lag, freshness).

Everything is read from what the worker and the registry wrote (stream/history.py,
the registry's ``events`` stream, the status keys); nothing here asks a worker, so any
number of browsers cost the pipeline nothing.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

import redis
from driftrec.core import EVENT_TYPES
from driftrec.online_update.registry import ModelRegistry, RegistryEvent
from driftrec.ops.dashboard.series import (
    Band,
    increments,
    reference_band,
    reference_window,
    windowed_rates,
)
from driftrec.ops.settings import Settings
from driftrec.stream import HistoryEntry, HistoryKeys, read_history
from pydantic import BaseModel

__all__ = [
    "TASK_METRICS",
    "Cursor",
    "HistoryView",
    "LiveStatus",
    "Marker",
    "WorkerState",
    "read_history_view",
    "read_live_status",
]

#: The rolling metrics the charts draw (and the reference band is computed for).
TASK_METRICS = ("click.auc", "click.logloss", "conversion.auc", "conversion.logloss", "dwell.mae")


class Cursor(BaseModel):
    """The last stream id the client has of each history stream ("-": none)."""

    trainer: str = "-"
    joiner: str = "-"
    events: str = "-"
    registry: str = "-"


class Marker(BaseModel):
    """A point event on the time axis: a drift alarm or a model event."""

    ms: int
    kind: Literal[
        "drift-alarm", "embedding-switch", "checkpoint", "promote", "auto-promote", "rollback"
    ]
    label: str


class HistoryView(BaseModel):
    """The history after a cursor, ready to draw: ``trainer`` and ``joiner`` rows are
    ``{"ms": ..., series name: value}``."""

    cursor: Cursor
    now_ms: int
    trainer: list[dict[str, Any]]
    joiner: list[dict[str, Any]]
    markers: list[Marker]
    active: str | None
    reference: dict[str, Band]
    reference_window: tuple[int, int] | None
    label_free: dict[str, Any] | None


def _now_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def _events_total(data: dict[str, Any]) -> float:
    return float(sum(int(data.get(kind, 0)) for kind in EVENT_TYPES))


def _trainer_row(entry: HistoryEntry) -> dict[str, Any]:
    data = entry.data
    metrics = data.get("metrics", {})
    row: dict[str, Any] = {"ms": entry.ms, **{m: metrics.get(m) for m in TASK_METRICS}}
    for key in ("examples_seen", "freshness_p50_s", "freshness_p95_s", "psi_max", "click_psi"):
        row[key] = data.get(key)
    for partition, lag in data.get("lag", {}).items():
        row[f"lag.examples:{partition}"] = lag
    return row


def _marker(event: RegistryEvent) -> Marker:
    if event.kind == "checkpoint":
        label = f"checkpoint {event.version} ({event.examples_seen or 0:,} examples)"
    elif event.kind == "rollback":
        label = f"rollback {event.previous or '-'} -> {event.version}"
    else:
        label = f"{event.kind} {event.version}"
    return Marker(ms=event.ms, kind=event.kind, label=label)


def _worker_marker(entry: HistoryEntry) -> Marker | None:
    data = entry.data
    if data.get("kind") == "drift-alarm":
        label = f"{data['detector']} on {data['task']} at example {data['example_index']:,}"
        return Marker(ms=entry.ms, kind="drift-alarm", label=label)
    if data.get("kind") == "embedding-switch":
        label = f"embeddings {data.get('previous')} -> {data.get('version')}"
        return Marker(ms=entry.ms, kind="embedding-switch", label=label)
    return None


def read_history_view(
    client: redis.Redis,
    registry: ModelRegistry,
    settings: Settings,
    cursor: Cursor,
    pinned: tuple[int, int] | None = None,
) -> HistoryView:
    """Rows and markers after ``cursor``, with rates over ``settings.rate_window_s``, the
    reference window (``pinned``, or the one before the active version's promotion) with
    the band of each task metric in it, and the latest label-free drift."""
    keys = HistoryKeys.of(settings.redis_prefix)
    window_ms = int(settings.rate_window_s * 1000)
    now_ms = _now_ms(client)

    def with_lookback(key: str, after: str) -> tuple[list[HistoryEntry], int]:
        """New entries, preceded by the window before them (rates need it); returns the
        entries and how many of them are lookback."""
        if after == "-":
            entries = read_history(client, key)
            return entries, 0
        start = int(after.partition("-")[0]) - window_ms
        entries = read_history(client, key, after=f"{max(start, 0)}-0")
        return entries, sum(1 for e in entries if _id_le(e.id, after))

    trainer, old_t = with_lookback(keys.trainer, cursor.trainer)
    joiner, old_j = with_lookback(keys.joiner, cursor.joiner)
    examples = increments((e.ms, e.worker, float(e.data.get("examples_seen", 0))) for e in trainer)
    events = increments((e.ms, e.worker, _events_total(e.data)) for e in joiner)
    examples_rate = windowed_rates(examples, [e.ms for e in trainer], window_ms)
    events_rate = windowed_rates(events, [e.ms for e in joiner], window_ms)
    trainer_rows = [
        {**_trainer_row(e), "examples_rate": round(r, 2)}
        for e, r in zip(trainer[old_t:], examples_rate[old_t:], strict=True)
    ]
    joiner_rows = [
        {
            "ms": e.ms,
            "events_rate": round(r, 2),
            **{f"lag.events:{p}": n for p, n in e.data.get("lag", {}).items()},
        }
        for e, r in zip(joiner[old_j:], events_rate[old_j:], strict=True)
    ]
    registry_events = registry.events(after=cursor.registry)
    worker_events = read_history(client, keys.events, after=cursor.events)
    markers = [_marker(e) for e in registry_events]
    markers += [m for m in map(_worker_marker, worker_events) if m is not None]
    markers.sort(key=lambda m: m.ms)

    active = registry.active_version_name()
    activated = None if active is None else registry.last_activation(active)
    activations = [] if activated is None or active is None else [(activated, active)]
    span = int(settings.reference_window_s * 1000)
    window = reference_window(activations, active, span, pinned)
    bands: dict[str, Band] = {}
    if window is not None:
        start, end = f"{max(window[0] - 1, 0)}-0", f"{window[1]}-18446744073709551615"
        rows = [_trainer_row(e) for e in read_history(client, keys.trainer, start, until=end)]
        for metric in TASK_METRICS:
            band = reference_band(((r["ms"], r[metric]) for r in rows), *window)
            if band is not None:
                bands[metric] = band
    status = client.get(f"{settings.redis_prefix}metrics:trainer")
    label_free = json.loads(status).get("label_free") if status else None
    last = Cursor(
        trainer=trainer[-1].id if trainer else cursor.trainer,
        joiner=joiner[-1].id if joiner else cursor.joiner,
        events=worker_events[-1].id if worker_events else cursor.events,
        registry=registry_events[-1].id if registry_events else cursor.registry,
    )
    return HistoryView(
        cursor=last,
        now_ms=now_ms,
        trainer=trainer_rows,
        joiner=joiner_rows,
        markers=markers,
        active=active,
        reference=bands,
        reference_window=window,
        label_free=label_free,
    )


def _id_le(a: str, b: str) -> bool:
    """Stream id ``a`` <= ``b`` (ids compare as (ms, seq) pairs, not as text)."""
    ams, _, aseq = a.partition("-")
    bms, _, bseq = b.partition("-")
    return (int(ams), int(aseq or 0)) <= (int(bms), int(bseq or 0))


class WorkerState(BaseModel):
    """A joiner that sent a heartbeat within the timeout."""

    id: str
    partitions: list[int]
    age_s: float
    lag: dict[str, int]


class LiveStatus(BaseModel):
    """What is true now; ``*_behind`` is None when there is nothing to judge yet."""

    trainer: dict[str, Any]
    trainer_age_s: float | None
    trainer_alive: bool
    workers: list[WorkerState]
    gone_workers: int
    window_s: float
    events_rate: float
    examples_rate: float
    events_total: int
    examples_seen: int
    lag: dict[str, int]
    lag_total: int
    lag_behind: bool | None
    freshness_p50_s: float | None
    freshness_p95_s: float | None
    freshness_behind: bool | None
    freshness_target_s: float
    lag_target: int
    active_model: str | None
    embedding_version: str | None


def read_live_status(client: redis.Redis, settings: Settings) -> LiveStatus:
    """The live status: workers whose heartbeat is older than ``heartbeat_timeout_s`` are
    gone (a stopped trainer's last numbers are not shown as current), rates are over the
    last ``rate_window_s`` of history."""
    prefix = settings.redis_prefix
    keys = HistoryKeys.of(prefix)
    now, now_ms = time.time(), _now_ms(client)
    timeout = settings.heartbeat_timeout_s
    raw_trainer, active, embedding = client.mget(
        f"{prefix}metrics:trainer", f"{prefix}registry:active", f"{prefix}emb:active"
    )
    trainer = json.loads(raw_trainer) if raw_trainer else {}
    trainer_age = now - float(trainer["ts"]) if "ts" in trainer else None
    trainer_alive = trainer_age is not None and trainer_age <= timeout
    workers, gone = [], 0
    for worker_id, raw in client.hgetall(f"{prefix}metrics:joiner").items():
        joiner = json.loads(raw)
        age = now - float(joiner.get("ts", 0.0))
        if age > timeout:
            gone += 1
            continue
        workers.append(
            WorkerState(
                id=_text(worker_id),
                partitions=joiner.get("partitions", []),
                age_s=round(age, 1),
                lag={str(k): int(v) for k, v in joiner.get("lag", {}).items()},
            )
        )
    workers.sort(key=lambda w: w.id)
    window_ms = int(settings.rate_window_s * 1000)
    # One sample before the window as the base of each worker's first increase in it.
    since = f"{max(now_ms - 2 * window_ms, 0)}-0"
    joiner_hist = read_history(client, keys.joiner, after=since)
    trainer_hist = read_history(client, keys.trainer, after=since)
    events = increments((e.ms, e.worker, _events_total(e.data)) for e in joiner_hist)
    examples = increments(
        (e.ms, e.worker, float(e.data.get("examples_seen", 0))) for e in trainer_hist
    )
    lag = {f"events:{p}": n for w in workers for p, n in w.lag.items()}
    if trainer_alive:
        lag.update({f"examples:{p}": int(n) for p, n in trainer.get("lag", {}).items()})
    lag_total = sum(lag.values())
    p50 = trainer.get("freshness_p50_s") if trainer_alive else None
    p95 = trainer.get("freshness_p95_s") if trainer_alive else None
    return LiveStatus(
        trainer=trainer,
        trainer_age_s=None if trainer_age is None else round(trainer_age, 1),
        trainer_alive=trainer_alive,
        workers=workers,
        gone_workers=gone,
        window_s=settings.rate_window_s,
        events_rate=round(windowed_rates(events, [now_ms], window_ms)[0], 2),
        examples_rate=round(windowed_rates(examples, [now_ms], window_ms)[0], 2),
        events_total=int(
            sum(_events_total(json.loads(v)) for v in client.hvals(f"{prefix}metrics:joiner"))
        ),
        examples_seen=int(trainer.get("examples_seen", 0)),
        lag=lag,
        lag_total=lag_total,
        lag_behind=(lag_total > settings.lag_target) if lag else None,
        freshness_p50_s=p50,
        freshness_p95_s=p95,
        freshness_behind=None if p95 is None else p95 > settings.freshness_target_s,
        freshness_target_s=settings.freshness_target_s,
        lag_target=settings.lag_target,
        active_model=_text(active) if active else None,
        embedding_version=_text(embedding) if embedding else None,
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
