"""Replay into the real broker, then read everything back."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from driftrec.core.schemas import Click, Dwell, Impression, Item, decode_event
from driftrec.ops.settings import Settings
from driftrec.producers.records import Record, Rejected
from driftrec.producers.replay import replay
from kafka import KafkaConsumer

pytestmark = pytest.mark.integration

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def read_all(
    settings: Settings, topic: str, expected: int, timeout_s: float = 20.0
) -> list[tuple[bytes, bytes]]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=int(timeout_s * 1000),
    )
    messages: list[tuple[bytes, bytes]] = []
    try:
        for message in consumer:
            messages.append((message.key, message.value))
            if len(messages) >= expected:
                break
    finally:
        consumer.close()
    return messages


def small_log() -> list[Record]:
    records: list[Record] = [Item(item_id="i1", title="Goal!", category="sports", ts=T0)]
    for n in range(30):
        user = f"u{n % 3}"
        ts = T0 + timedelta(seconds=n)
        records.append(
            Impression(event_id=f"imp{n}", user_id=user, item_id="i1", ts=ts, position=n % 5)
        )
        if n % 4 == 0:
            records.append(
                Click(event_id=f"clk{n}", user_id=user, item_id="i1", ts=ts + timedelta(seconds=1))
            )
            records.append(
                Dwell(event_id=f"dw{n}", user_id=user, item_id="i1", ts=ts, seconds=12.5)
            )
    records.insert(
        10, Rejected(source="log.csv", line=7, reason="ts: naive timestamp", raw="a,b,c")
    )
    return records


def test_replay_then_read_back(isolated: Settings) -> None:
    records = small_log()
    summary = replay(records, isolated)
    assert summary.sent == Counter(impression=30, click=8, dwell=8)
    assert summary.items == 1 and summary.rejected == 1

    events = read_all(isolated, isolated.topic_events, 46)
    decoded = [(key.decode(), decode_event(value)) for key, value in events]
    assert Counter(e.type for _, e in decoded) == Counter(impression=30, click=8, dwell=8)
    assert all(key == event.user_id for key, event in decoded), "events are keyed by user"

    # Kafka keeps order per partition, so per user the events arrive in the order sent.
    sent_order: dict[str, list[str]] = defaultdict(list)
    for record in records:
        if isinstance(record, Impression | Click | Dwell):
            sent_order[record.user_id].append(record.event_id)
    got_order: dict[str, list[str]] = defaultdict(list)
    for key, event in decoded:
        got_order[key].append(event.event_id)
    assert got_order == sent_order

    items = read_all(isolated, isolated.topic_items, 1)
    assert [Item.model_validate_json(v).item_id for _, v in items] == ["i1"]

    letters = read_all(isolated, isolated.topic_deadletter, 1)
    letter = json.loads(letters[0][1])
    assert letter["file"] == "log.csv" and letter["line"] == 7
    assert "naive timestamp" in letter["reason"]


def test_replay_paces_by_event_time(isolated: Settings) -> None:
    records: list[Record] = [Item(item_id="i1", title="t", ts=T0)]
    records += [
        Impression(event_id=f"e{n}", user_id="u", item_id="i1", ts=T0 + timedelta(seconds=n))
        for n in range(5)
    ]
    # 4 s of log time at 8x speed must take about half a second of wall time.
    summary = replay(records, isolated, speed=8.0)
    assert 0.45 <= summary.seconds < 3.0
