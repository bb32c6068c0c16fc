"""Replay a click log into Kafka: items to the items topic, events keyed by user.

`--speed N` replays at N times the log's own clock (event-time gaps divided by N);
`max` sends as fast as the producer takes them. A rejected row goes to the
dead-letter topic with its file, line and reason, and the replay goes on.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ops.settings import Settings
from producers.kafka_io import ensure_topics, make_producer
from producers.records import Record, Rejected
from producers.schemas import DeadLetter, Item, encode

__all__ = ["ReplaySummary", "replay"]


@dataclass
class ReplaySummary:
    """What a replay sent, per event type, and how many rows it rejected."""

    sent: Counter[str] = field(default_factory=Counter)
    items: int = 0
    rejected: int = 0
    seconds: float = 0.0

    @property
    def events(self) -> int:
        return sum(self.sent.values())

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        per_type = ", ".join(f"{k}={v}" for k, v in sorted(self.sent.items())) or "none"
        return [
            f"sent {self.events} events ({per_type}) and {self.items} items "
            f"in {self.seconds:.1f} s ({self.events_per_s:,.0f} events/s)",
            f"rejected {self.rejected} rows"
            + (" (see the dead-letter topic)" if self.rejected else ""),
        ]


class _Pacer:
    """Sleeps so that event time advances at ``speed`` times wall time."""

    def __init__(self, speed: float | None) -> None:
        self.speed = speed
        self.origin: tuple[datetime, float] | None = None

    def wait_for(self, ts: datetime) -> None:
        if self.speed is None:
            return
        if self.origin is None:
            self.origin = (ts, time.monotonic())
            return
        log_start, wall_start = self.origin
        due = wall_start + (ts - log_start).total_seconds() / self.speed
        delay = due - time.monotonic()
        if delay > 0.001:
            time.sleep(delay)


def replay(
    records: Iterable[Record],
    settings: Settings,
    *,
    speed: float | None = None,
    on_event: Callable[[int], None] | None = None,
    producer: Any | None = None,
) -> ReplaySummary:
    """Send ``records`` to Kafka; ``speed=None`` means as fast as possible."""
    ensure_topics(settings)
    own_producer = producer is None
    kafka = make_producer(settings) if producer is None else producer
    summary = ReplaySummary()
    pacer = _Pacer(speed)
    send = kafka.send
    events_topic, items_topic = settings.topic_events, settings.topic_items
    started = time.perf_counter()
    try:
        for record in records:
            if isinstance(record, Item):
                send(items_topic, key=record.item_id.encode(), value=encode(record))
                summary.items += 1
            elif isinstance(record, Rejected):
                letter = DeadLetter(
                    reason=record.reason,
                    stage="replay",
                    ts=datetime.now(UTC),
                    file=record.source,
                    line=record.line,
                    payload=record.raw[:4096],
                )
                send(settings.topic_deadletter, key=record.source.encode(), value=encode(letter))
                summary.rejected += 1
            else:
                pacer.wait_for(record.ts)
                send(events_topic, key=record.user_id.encode(), value=encode(record))
                summary.sent[record.type] += 1
                if on_event is not None:
                    on_event(1)
        kafka.flush()
    finally:
        if own_producer:
            kafka.close()
    summary.seconds = time.perf_counter() - started
    return summary
