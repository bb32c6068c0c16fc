"""`driftrec bench pipeline`: end-to-end learning rate against faust's and Kafka's own
ceilings, and freshness, saturated and paced.

In one run, on fresh topics: start a joiner and a trainer worker, replay N synthetic
events at max speed, and time until the trainer has applied every example the stream
can emit (known exactly from ``driftrec.stream.testing.expected_examples``). Then, over
the same events topic: a bare faust agent that only takes and acks
(``faust_msgs_per_s``, see ``faust_ceiling``) and a bare aiokafka consumer
(``raw_messages_per_s``). ``ratio_vs_faust`` is the pipeline's events/s over faust's
rate; ``ratio`` its examples/s over the raw consumer's. Freshness is the trainer's own
measure, from the moment the joiner emitted an example (its window closed or its last
outcome arrived) to the moment the learner applied it: saturated
(``freshness_p95_s``), and in a second run on fresh topics with events paced at half the
measured rate (``paced_freshness_p95_s``), which is what a live stream sees.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
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


def _isolated(settings: Settings) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return settings.model_copy(
        update={
            "app_id": f"bench-{tag}",
            "redis_prefix": f"bench:{tag}:",
            **{
                f"topic_{kind}": f"bench.{tag}.{kind}"
                for kind in ("events", "items", "examples", "metrics", "deadletter")
            },
        }
    )


def _paced(rate: float) -> Callable[[int], None]:
    """An ``on_event`` callback that holds the replay to ``rate`` events per second."""
    state = {"sent": 0, "start": time.perf_counter()}

    def on_event(n: int) -> None:
        state["sent"] += n
        ahead = state["sent"] / rate - (time.perf_counter() - state["start"])
        if ahead > 0.005:
            time.sleep(ahead)

    return on_event


def _run(settings: Settings, n_events: int, rate: float | None) -> dict[str, Any]:
    """Replay ``n_events`` through a joiner and a trainer worker (``rate`` events/s, or
    as fast as possible); time it until every expected example is applied."""
    bench = _isolated(settings)
    client = redis.Redis.from_url(settings.redis_url)
    expected = len(expected_examples(open_source("default", "synthetic", limit=n_events), bench))
    ensure_topics(bench)
    with tempfile.TemporaryDirectory(prefix="driftrec-bench-") as tmp:
        # The joiner and the trainer in their own processes, as deployed: two cores, two workers.
        workers = [
            WorkerProcess(bench, Path(tmp) / f"{role}.log", role, data_dir=Path(tmp), web_port=0)
            for role in ("joiner", "trainer")
        ]
        try:
            _wait_for_group(bench, bench.app_id)
            _wait_for_group(bench, f"{bench.app_id}-trainer")
            started = time.perf_counter()
            on_event = _paced(rate) if rate else None
            records = open_source("default", "synthetic", limit=n_events)
            summary = replay(records, bench, on_event=on_event)
            status: dict[str, Any] = {}
            while int(status.get("examples_seen", 0)) < expected:
                for worker in workers:
                    if worker.proc.poll() is not None:
                        raise InfraError(f"benchmark worker died:\n{worker.log_tail()}")
                if time.perf_counter() - started > 900:
                    raise InfraError(
                        f"pipeline applied {status.get('examples_seen')} of {expected} examples in 900 s"
                    )
                time.sleep(0.1)
                raw = client.get(f"{bench.redis_prefix}metrics:trainer")
                status = json.loads(raw) if raw else {}
            elapsed = time.perf_counter() - started
            overlapping = sum(w.log_tail(1_000_000).count("is overlapping") for w in workers)
        finally:
            for worker in workers:
                worker.stop()
    return {
        "bench": bench,
        "events": summary.events,
        "examples": expected,
        "seconds": elapsed,
        "status": status,
        "overlapping_timer_warnings": overlapping,
    }


def _faust_rate(settings: Settings, topic: str, n: int) -> float:
    """Messages/s of a bare faust take-and-ack agent over ``topic`` (its own process)."""
    with tempfile.TemporaryDirectory(prefix="driftrec-faust-") as tmp:
        out = Path(tmp) / "rate.json"
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "driftrec.ops.bench.faust_ceiling"),
                *(settings.kafka_bootstrap, topic, str(n), str(out)),
            ],
            cwd=tmp,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 300
            while not out.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise InfraError("the bare faust agent did not finish")
                time.sleep(0.2)
            return float(json.loads(out.read_text())["messages_per_s"])
        finally:
            proc.terminate()
            proc.wait(30)


def bench_pipeline(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    n_events = int(args.events)
    saturated = _run(settings, n_events, rate=None)
    bench: Settings = saturated["bench"]
    events_rate = saturated["events"] / saturated["seconds"]
    examples_rate = saturated["examples"] / saturated["seconds"]
    faust_rate = _faust_rate(settings, bench.topic_events, saturated["events"])
    raw_rate = asyncio.run(_raw_rate(bench, bench.topic_events, saturated["events"]))
    client = redis.Redis.from_url(settings.redis_url)
    _cleanup(settings, bench, client)
    paced = _run(settings, n_events, rate=events_rate / 2)
    _cleanup(settings, paced["bench"], client)
    return {
        "events": saturated["events"],
        "examples": saturated["examples"],
        "seconds": round(saturated["seconds"], 2),
        "examples_per_s": round(examples_rate, 1),
        "events_per_s": round(events_rate, 1),
        "faust_msgs_per_s": round(faust_rate, 1),
        "ratio_vs_faust": round(events_rate / faust_rate, 3) if faust_rate else None,
        "raw_messages_per_s": round(raw_rate, 1),
        "ratio": round(examples_rate / raw_rate, 4) if raw_rate else None,
        "freshness_p50_s": saturated["status"].get("freshness_p50_s"),
        "freshness_p95_s": saturated["status"].get("freshness_p95_s"),
        "paced_events_per_s": round(paced["events"] / paced["seconds"], 1),
        "paced_freshness_p50_s": paced["status"].get("freshness_p50_s"),
        "paced_freshness_p95_s": paced["status"].get("freshness_p95_s"),
        "overlapping_timer_warnings": saturated["overlapping_timer_warnings"]
        + paced["overlapping_timer_warnings"],
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
