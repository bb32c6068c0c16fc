"""`driftrec watch`: a live terminal view of what the stream is learning.

Reads the live status once a second (ops.dashboard.read_live_status: the trainer's
status, each joiner's heartbeat, the active versions, and rates over a sliding window
of the history), so the view itself costs the pipeline nothing and tells the truth: a
worker whose heartbeat is older than ``DRIFTREC_HEARTBEAT_TIMEOUT_S`` is gone, rates
fall to 0 when nothing moves, lag and freshness are coloured against their targets.
The dashboard (``/dashboard`` of `driftrec serve`) shows the same numbers with history.
"""

from __future__ import annotations

import time

import redis
from driftrec.ops.dashboard import LiveStatus, read_live_status
from driftrec.ops.settings import Settings
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

__all__ = ["render", "watch"]

_TASK_COLUMNS = {
    "click": ("auc", "logloss", "auc_cumulative"),
    "conversion": ("auc", "logloss", "auc_cumulative"),
    "dwell": ("mae", "mae_cumulative"),
}


def _fmt(value: object) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _judged(text: str, behind: bool | None) -> str:
    """``text`` red when behind its target, green when within, plain when unknown."""
    if behind is None:
        return text
    return f"[bold red]{text} (behind)[/]" if behind else f"[green]{text}[/]"


def render(status: LiveStatus) -> Group:
    """The view of one live status."""
    trainer = status.trainer if status.trainer_alive else {}
    metrics = trainer.get("metrics", {})
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
    window = f"{status.window_s:g} s"
    freshness = f"freshness p50/p95 {_fmt(status.freshness_p50_s)}/{_fmt(status.freshness_p95_s)} s"
    header.add_row(
        f"events/s [bold]{status.events_rate:,.0f}[/] over {window}  (total {status.events_total:,})",
        f"examples/s [bold]{status.examples_rate:,.0f}[/] over {window}  "
        f"(applied {status.examples_seen:,})",
        _judged(freshness, status.freshness_behind),
    )
    if status.trainer_alive:
        trainer_line = f"last checkpoint {trainer.get('checkpoint') or '-'}  learner {trainer.get('learner') or '-'}"
    elif status.trainer_age_s is None:
        trainer_line = "no trainer yet"
    else:
        trainer_line = (
            f"[bold red]trainer silent {status.trainer_age_s:,.0f} s[/] (stopped or stalled)"
        )
    header.add_row(
        f"active model [bold]{status.active_model or '-'}[/]",
        trainer_line,
        _judged(f"lag {status.lag_total:,}", status.lag_behind),
    )
    header.add_row(f"embeddings {status.embedding_version or 'none yet'}", "", "")
    alarms = trainer.get("alarms", [])[-6:]
    alarm_lines = [
        f"[red]{a['detector']}[/] on {a['task']} at example {a['example_index']:,}" for a in alarms
    ]
    workers = ", ".join(f"{w.id} p{w.partitions}" for w in status.workers) or "no joiner alive"
    if status.gone_workers:
        workers += f"  ({status.gone_workers} stopped, no heartbeat)"
    return Group(
        Panel(header, title="driftrec"),
        table,
        Panel("\n".join(alarm_lines) or "no drift alarm", title="drift alarms"),
        f"workers: {workers}",
    )


def watch(settings: Settings, *, once: bool = False, interval: float = 1.0) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    if once:
        Console().print(render(read_live_status(client, settings)))
        return
    with Live(render(read_live_status(client, settings)), refresh_per_second=2) as live:
        while True:
            time.sleep(interval)
            live.update(render(read_live_status(client, settings)))
