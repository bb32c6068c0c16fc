"""`driftrec bench replay`: replay throughput against a bare kafka-python producer.

Both sides send the same N synthetic events to fresh topics on the same broker in
one run; the bare producer gets the bytes pre-serialised, so the ratio is the price
of reading, validating and pacing the log.
"""

from __future__ import annotations

import argparse
import time
import uuid
from typing import Any

from driftrec.core import Item, encode
from driftrec.ops.settings import Settings
from driftrec.producers import (
    Rejected,
    ensure_topics,
    make_producer,
    open_source,
    prefetched,
    replay_encoded,
)
from kafka import KafkaAdminClient

__all__ = ["bench_replay"]


def _bench_settings(settings: Settings, tag: str) -> Settings:
    return settings.model_copy(
        update={
            "topic_events": f"bench.{tag}.events",
            "topic_items": f"bench.{tag}.items",
            "topic_deadletter": f"bench.{tag}.deadletter",
            "topic_examples": f"bench.{tag}.examples",
            "topic_metrics": f"bench.{tag}.metrics",
        }
    )


def _raw_rate(settings: Settings, n_events: int) -> float:
    """Events/s of a bare producer sending the same events as pre-serialised bytes."""
    messages = [
        (record.user_id.encode(), encode(record))
        for record in open_source("default", "synthetic", limit=n_events)
        if not isinstance(record, Item | Rejected)
    ]
    topic = f"{settings.topic_events}.raw"
    ensure_topics(settings, [topic])
    producer = make_producer(settings)
    try:
        started = time.perf_counter()
        for key, value in messages:
            producer.send(topic, key=key, value=value)
        producer.flush()
        return len(messages) / (time.perf_counter() - started)
    finally:
        producer.close()


def bench_replay(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    n_events = int(args.events)
    bench = _bench_settings(settings, uuid.uuid4().hex[:8])
    try:
        # Exactly what `driftrec replay` does: read and encode in a child process, send here.
        summary = replay_encoded(prefetched("default", "synthetic", limit=n_events), bench)
        raw = _raw_rate(bench, n_events)
    finally:
        admin = KafkaAdminClient(
            bootstrap_servers=settings.bootstrap_servers, **settings.kafka_client_options()
        )
        try:
            doomed = [
                t for t in admin.list_topics() if t.startswith(bench.topic_events.rsplit(".", 1)[0])
            ]
            if doomed:
                admin.delete_topics(doomed)
        finally:
            admin.close()
    return {
        "events": summary.events,
        "events_per_s": round(summary.events_per_s, 1),
        "raw_events_per_s": round(raw, 1),
        "ratio": round(summary.events_per_s / raw, 3) if raw else None,
    }
