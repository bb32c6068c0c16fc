"""`driftrec bench pipeline`: end-to-end learning rate against a bare consumer, and freshness.

In one run, on fresh topics: start a worker, replay N synthetic events at max speed,
and time until the trainer has applied every example the stream can emit (known
exactly from ``driftrec.stream.join_worker.expected_examples``). Then a bare aiokafka consumer
reads the same events topic from the start: ``raw_messages_per_s``. The pipeline reads
each event twice (joiner, then trainer as an example) and writes it once, so a ratio
near 0.5 is the ceiling. Freshness is the trainer's own measure: from the moment the
joiner emitted an example (its window closed or its last outcome arrived) to the moment
the learner applied it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from aiokafka import AIOKafkaConsumer
from driftrec.core import InfraError
from driftrec.ops.settings import Settings
from driftrec.ops.worker_process import WorkerProcess
from driftrec.producers import ensure_topics, open_source, replay
from driftrec.stream.testing import expected_examples
from kafka import KafkaAdminClient

__all__ = ["bench_pipeline"]


async def _raw_rate(settings: Settings, topic: str, expected: int) -> float:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **settings.kafka_client_options(),
    )
    await consumer.start()
    try:
        seen, started = 0, time.perf_counter()
        while seen < expected:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if not batches and time.perf_counter() - started > 60:
                break
            seen += sum(len(messages) for messages in batches.values())
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def _wait_for_group(settings: Settings, group: str, timeout_s: float = 60) -> None:
    admin = KafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, **settings.kafka_client_options()
    )
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            groups = admin.describe_consumer_groups([group])
            if groups and groups[0].state == "Stable" and groups[0].members:
                return
            time.sleep(0.5)
    finally:
        admin.close()
    raise InfraError(f"the benchmark worker did not join group {group} in {timeout_s:.0f} s")


def bench_pipeline(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    n_events = int(args.events)
    tag = uuid.uuid4().hex[:8]
    bench = settings.model_copy(
        update={
            "app_id": f"bench-{tag}",
            "redis_prefix": f"bench:{tag}:",
            **{
                f"topic_{kind}": f"bench.{tag}.{kind}"
                for kind in ("events", "items", "examples", "metrics", "deadletter")
            },
        }
    )
    client = redis.Redis.from_url(settings.redis_url)
    expected = len(expected_examples(open_source("default", "synthetic", limit=n_events), bench))
    ensure_topics(bench)
    with tempfile.TemporaryDirectory(prefix="driftrec-bench-") as tmp:
        # The joiner and the trainer in their own processes, as deployed: two cores, two workers.
        workers = [
            WorkerProcess(
                bench,
                Path(tmp) / f"{role}.log",
                role,
                data_dir=Path(tmp),
                web_port=0,
            )
            for role in ("joiner", "trainer")
        ]
        try:
            _wait_for_group(bench, bench.app_id)
            _wait_for_group(bench, f"{bench.app_id}-trainer")
            started = time.perf_counter()
            summary = replay(open_source("default", "synthetic", limit=n_events), bench)
            status: dict[str, Any] = {}
            while int(status.get("examples_seen", 0)) < expected:
                for worker in workers:
                    if worker.proc.poll() is not None:
                        raise InfraError(f"benchmark worker died:\n{worker.log_tail()}")
                if time.perf_counter() - started > 600:
                    raise InfraError(
                        f"pipeline applied {status.get('examples_seen')} of {expected} examples in 600 s"
                    )
                time.sleep(0.1)
                raw = client.get(f"{bench.redis_prefix}metrics:trainer")
                status = json.loads(raw) if raw else {}
            elapsed = time.perf_counter() - started
        finally:
            for worker in workers:
                worker.stop()
    raw_rate = asyncio.run(_raw_rate(bench, bench.topic_events, summary.events))
    examples_rate = expected / elapsed
    _cleanup(settings, bench, client)
    return {
        "events": summary.events,
        "examples": expected,
        "seconds": round(elapsed, 2),
        "examples_per_s": round(examples_rate, 1),
        "events_per_s": round(summary.events / elapsed, 1),
        "raw_messages_per_s": round(raw_rate, 1),
        "ratio": round(examples_rate / raw_rate, 3) if raw_rate else None,
        "freshness_p50_s": status.get("freshness_p50_s"),
        "freshness_p95_s": status.get("freshness_p95_s"),
    }


def _cleanup(settings: Settings, bench: Settings, client: redis.Redis) -> None:
    keys = list(client.scan_iter(f"{bench.redis_prefix}*"))
    if keys:
        client.delete(*keys)
    admin = KafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, **settings.kafka_client_options()
    )
    try:
        doomed = [
            t
            for t in admin.list_topics()
            if t.startswith(f"bench.{bench.app_id.removeprefix('bench-')}.")
        ]
        if doomed:
            admin.delete_topics(doomed)
    finally:
        admin.close()
