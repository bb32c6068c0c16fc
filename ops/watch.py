"""`driftrec watch`: a live terminal view of what the stream is learning.

Reads what the agents publish to Redis (the trainer's status, each joiner's
counters, the registry's active version) once a second; rates are differences
between two readings, so the view itself costs the pipeline nothing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import redis
from driftrec.ops.settings import Settings
from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

__all__ = ["Snapshot", "read_snapshot", "render", "watch"]

_TASK_COLUMNS = {
    "click": ("auc", "logloss", "auc_cumulative"),
    "conversion": ("auc", "logloss", "auc_cumulative"),
    "dwell": ("mae", "mae_cumulative"),
}


@dataclass
class Snapshot:
    """One reading of everything the view shows."""

    at: float
    trainer: dict[str, Any] = field(default_factory=dict)
    joiners: dict[str, dict[str, Any]] = field(default_factory=dict)
    active_model: str | None = None
    embedding_version: str | None = None

    @property
    def events(self) -> int:
        kinds = ("impression", "click", "conversion", "dwell")
        return sum(int(j.get(k, 0)) for j in self.joiners.values() for k in kinds)

    @property
    def examples(self) -> int:
        return int(self.trainer.get("examples_seen", 0))


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def read_snapshot(client: redis.Redis, settings: Settings) -> Snapshot:
    prefix = settings.redis_prefix
    trainer, active, embedding = client.mget(
        f"{prefix}metrics:trainer", f"{prefix}registry:active", f"{prefix}emb:active"
    )
    joiners = client.hgetall(f"{prefix}metrics:joiner")
    return Snapshot(
        at=time.monotonic(),
        trainer=json.loads(trainer) if trainer else {},
        joiners={_text(k) or "": json.loads(v) for k, v in joiners.items()},
        active_model=_text(active),
        embedding_version=_text(embedding),
    )


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def render(now: Snapshot, before: Snapshot | None) -> Group:
    """The view for one reading; rates need the previous one."""
    elapsed = max(now.at - before.at, 1e-9) if before else 0.0
    events_rate = (now.events - before.events) / elapsed if before else 0.0
    examples_rate = (now.examples - before.examples) / elapsed if before else 0.0
    metrics = now.trainer.get("metrics", {})
    table = Table(title="prequential metrics (rolling window / since start)", expand=True)
    table.add_column("task")
    for name in ("rolling", "logloss", "cumulative"):
        table.add_column(name, justify="right")
    for task, columns in _TASK_COLUMNS.items():
        values = [_fmt(metrics.get(f"{task}.{c}")) for c in columns]
        label = f"{task} ({'MAE' if task == 'dwell' else 'AUC'})"
        table.add_row(label, values[0], values[1] if len(columns) == 3 else "", values[-1])
    header = Table.grid(expand=True)
    for _ in range(3):
        header.add_column()
    header.add_row(
        f"events/s [bold]{events_rate:,.0f}[/]  (total {now.events:,})",
        f"examples/s [bold]{examples_rate:,.0f}[/]  (applied {now.examples:,})",
        f"freshness p50/p95 {_fmt(now.trainer.get('freshness_p50_s'))}/{_fmt(now.trainer.get('freshness_p95_s'))} s",
    )
    header.add_row(
        f"active model [bold]{now.active_model or '-'}[/]",
        f"last checkpoint {now.trainer.get('checkpoint') or '-'}  "
        f"learner {now.trainer.get('learner') or '-'}",
        f"embeddings {now.embedding_version or 'none yet'}",
    )
    alarms = now.trainer.get("alarms", [])[-6:]
    alarm_lines = [
        f"[red]{a['detector']}[/] on {a['task']} at example {a['example_index']:,}" for a in alarms
    ]
    workers = (
        ", ".join(f"{wid} p{j.get('partitions')}" for wid, j in now.joiners.items())
        or "no joiner yet"
    )
    return Group(
        Panel(header, title="driftrec"),
        table,
        Panel("\n".join(alarm_lines) or "no drift alarm", title="drift alarms"),
        f"workers: {workers}",
    )


def watch(settings: Settings, *, once: bool = False, interval: float = 1.0) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    before = read_snapshot(client, settings)
    if once:
        time.sleep(interval)
        from rich.console import Console

        Console().print(render(read_snapshot(client, settings), before))
        return
    with Live(render(before, None), refresh_per_second=2, screen=False) as live:
        while True:
            time.sleep(interval)
            now = read_snapshot(client, settings)
            live.update(render(now, before))
            before = now
