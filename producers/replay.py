"""Replay a click log into Kafka: items to the items topic, events keyed by user.

`--speed N` replays at N times the log's own clock (event-time gaps divided by N);
`max` sends as fast as the producer takes them. A rejected row goes to the
dead-letter topic with its file, line and reason, and the replay goes on.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeAlias

from driftrec.core import DeadLetter, DriftrecConfig, Item, encode
from driftrec.producers.kafka_io import ensure_topics, make_producer
from driftrec.producers.records import Record, Rejected

__all__ = ["Encoded", "ReplaySummary", "encode_records", "replay", "replay_encoded"]

#: (kind, key, value, event time in epoch seconds): one message as it goes on the wire.
Encoded: TypeAlias = tuple[str, bytes, bytes, float]


@dataclass
class ReplaySummary:
    """What a replay sent, per event type, and how many rows it rejected."""

    sent: Counter[str] = field(default_factory=Counter)
    items: int = 0
    #: Items events refer to that the log never announced (no catalog row, no text).
    uncatalogued: int = 0
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
            f"{self.uncatalogued} items shown without a catalog row (scored from their id, "
            "no text)",
            f"rejected {self.rejected} rows"
            + (" (see the dead-letter topic)" if self.rejected else ""),
        ]


class _Pacer:
    """Sleeps so that event time advances at ``speed`` times wall time."""

    def __init__(self, speed: float | None) -> None:
        self.speed = speed
        self.origin: tuple[float, float] | None = None

    def wait_for(self, ts: float) -> None:
        if self.speed is None:
            return
        if self.origin is None:
            self.origin = (ts, time.monotonic())
            return
        log_start, wall_start = self.origin
        delay = wall_start + (ts - log_start) / self.speed - time.monotonic()
        if delay > 0.001:
            time.sleep(delay)


def encode_records(records: Iterable[Record]) -> Iterator[Encoded]:
    """Records as what goes on the wire: ``(kind, key, value, event time)``.

    ``kind`` is ``"item"``, ``"rejected"`` or the event type; rejected rows become
    dead letters carrying their file, line and reason. An event whose item the log has
    not announced is preceded, the first time, by ``("uncatalogued", item id, b"", ts)``:
    nothing is sent for it, the replay only counts it.
    """
    announced: set[str] = set()
    for record in records:
        if isinstance(record, Item):
            announced.add(record.item_id)
            yield "item", record.item_id.encode(), encode(record), 0.0
        elif isinstance(record, Rejected):
            letter = DeadLetter(
                reason=record.reason,
                stage="replay",
                ts=datetime.now(UTC),
                file=record.source,
                line=record.line,
                payload=record.raw[:4096],
            )
            yield "rejected", record.source.encode(), encode(letter), 0.0
        else:
            ts = record.ts.timestamp()
            if record.item_id not in announced:
                announced.add(record.item_id)
                yield "uncatalogued", record.item_id.encode(), b"", ts
            yield record.type, record.user_id.encode(), encode(record), ts


def replay(
    records: Iterable[Record],
    settings: DriftrecConfig,
    *,
    speed: float | None = None,
    on_event: Callable[[int], None] | None = None,
    producer: Any | None = None,
) -> ReplaySummary:
    """Send ``records`` to Kafka; ``speed=None`` means as fast as possible."""
    return replay_encoded(
        encode_records(records), settings, speed=speed, on_event=on_event, producer=producer
    )


def replay_encoded(
    encoded: Iterable[Encoded],
    settings: DriftrecConfig,
    *,
    speed: float | None = None,
    on_event: Callable[[int], None] | None = None,
    producer: Any | None = None,
) -> ReplaySummary:
    """Send already-encoded records (see ``encode_records`` and ``driftrec.producers.prefetch``)."""
    ensure_topics(settings)
    own_producer = producer is None
    kafka = make_producer(settings) if producer is None else producer
    summary = ReplaySummary()
    pacer = _Pacer(speed)
    send = kafka.send
    topics = {"item": settings.topic_items, "rejected": settings.topic_deadletter}
    events_topic = settings.topic_events
    started = time.perf_counter()
    try:
        for kind, key, value, ts in encoded:
            if kind == "uncatalogued":
                summary.uncatalogued += 1
                continue
            topic = topics.get(kind)
            if topic is None:
                pacer.wait_for(ts)
                send(events_topic, key=key, value=value)
                summary.sent[kind] += 1
                if on_event is not None:
                    on_event(1)
            else:
                send(topic, key=key, value=value)
                if kind == "item":
                    summary.items += 1
                else:
                    summary.rejected += 1
        kafka.flush()
    finally:
        if own_producer:
            kafka.close()
    summary.seconds = time.perf_counter() - started
    return summary
