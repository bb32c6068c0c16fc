"""Malformed messages on every topic go to the dead-letter topic; the agents carry on."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from driftrec.core.schemas import Click, Impression, Item, encode
from driftrec.ops.settings import Settings
from driftrec.producers.kafka_io import ensure_topics, make_producer
from kafka import KafkaConsumer

from tests.stream.pipeline_harness import WorkerProcess, start_worker, trainer_status

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
def pipeline(isolated: Settings, redis_prefix: str) -> Settings:
    return isolated.model_copy(
        update={"app_id": f"test-{uuid.uuid4().hex[:8]}", "redis_prefix": redis_prefix}
    )


@pytest.fixture
def worker(pipeline: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    ensure_topics(pipeline)
    process = start_worker(pipeline, tmp_path / "data", tmp_path / "worker.log")
    yield process
    process.stop()


def dead_letters(
    settings: Settings, expected: int, timeout_s: float = 60
) -> list[dict[str, object]]:
    consumer = KafkaConsumer(
        settings.topic_deadletter,
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=None,
        consumer_timeout_ms=int(timeout_s * 1000),
    )
    letters = []
    try:
        for message in consumer:
            letters.append(json.loads(message.value))
            if len(letters) >= expected:
                break
    finally:
        consumer.close()
    return letters


def test_garbage_is_dead_lettered_with_where_and_why(
    pipeline: Settings, worker: WorkerProcess
) -> None:
    producer = make_producer(pipeline)
    garbage = [
        b"\x00\xff\xfe not json at all",
        json.dumps(
            {"type": "click", "event_id": 5, "user_id": "u", "item_id": "i", "ts": "yesterday"}
        ).encode(),
        json.dumps(
            {"type": "teleport", "event_id": "e", "user_id": "u", "item_id": "i", "ts": 0}
        ).encode(),
        b'{"type": "impression", "event_id": "big", "padding": "' + b"x" * 100_000 + b'"}',
        encode(Click(event_id="orphan", user_id="u0", item_id="i0", ts=T0)),  # no such impression
    ]
    for value in garbage:
        producer.send(pipeline.topic_events, key=b"u0", value=value)
    producer.send(pipeline.topic_items, key=b"bad", value=b'{"item_id": "", "title": 3}')
    producer.send(pipeline.topic_examples, key=b"u0", value=b'{"type": "example", "truncated')
    # After the garbage, a valid log must still become examples that the trainer learns from.
    producer.send(
        pipeline.topic_items, key=b"i1", value=encode(Item(item_id="i1", title="ok", ts=T0))
    )
    for n in range(50):
        ts = T0 + timedelta(minutes=n)
        producer.send(
            pipeline.topic_events,
            key=b"u1",
            value=encode(Impression(event_id=f"imp{n}", user_id="u1", item_id="i1", ts=ts)),
        )
    producer.flush()
    producer.close()

    letters = dead_letters(pipeline, expected=7)
    by_stage: dict[str, list[dict[str, object]]] = {}
    for letter in letters:
        by_stage.setdefault(str(letter["stage"]), []).append(letter)
    joiner = by_stage["joiner"]
    assert len(joiner) == 5
    for letter in joiner:
        assert letter["topic"] == pipeline.topic_events
        assert isinstance(letter["partition"], int) and isinstance(letter["offset"], int)
    reasons = " | ".join(str(letter["reason"]) for letter in joiner)
    for needle in ("JSON", "event_id", "teleport", "exceeds", "unknown_impression"):
        assert needle.lower() in reasons.lower(), f"{needle!r} not in {reasons}"
    assert by_stage["catalog"][0]["topic"] == pipeline.topic_items
    assert by_stage["trainer"][0]["topic"] == pipeline.topic_examples

    deadline = time.monotonic() + 90
    while (trainer_status(pipeline) or {}).get("examples_seen", 0) < 10:
        assert time.monotonic() < deadline, worker.log_tail()
        time.sleep(0.5)
    assert worker.proc.poll() is None, "the worker must survive bad input"
