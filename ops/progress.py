"""A rich progress bar with the event rate, shared by replay, eval and benchmarks."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

__all__ = ["event_progress"]


@contextmanager
def event_progress(
    label: str, total: int | None, enabled: bool = True
) -> Iterator[Callable[[int], None]]:
    """Yields ``advance(n)``; draws nothing when disabled or when stderr is not a terminal."""
    if not enabled:
        yield lambda n: None
        return
    progress = Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]} events/s"),
        TimeElapsedColumn(),
        transient=False,
        disable=not sys.stderr.isatty(),
        refresh_per_second=4,
    )
    progress.console.stderr = True
    task = progress.add_task(label, total=total, rate="-")
    pending = 0

    def advance(n: int) -> None:
        nonlocal pending
        pending += n
        if pending >= 1000:  # per-event redraw bookkeeping would cost more than the send
            progress.update(task, advance=pending)
            speed = progress.tasks[0].speed
            progress.update(task, rate=f"{speed:,.0f}" if speed else "-")
            pending = 0

    with progress:
        yield advance
        progress.update(task, advance=pending)
