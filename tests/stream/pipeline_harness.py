"""Run real `driftrec worker` processes against the real broker, and check what they did
by the exact set of example ids the trainer applied, for integration and stress tests."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import redis
from driftrec.features import stable_hash
from driftrec.online_update.learning.checkpoint import read_extra, read_meta
from driftrec.ops.infra.kafka import KafkaBroker
from driftrec.ops.infra.process import port_open
from driftrec.ops.settings import Settings
from driftrec.ops.worker_process import WorkerProcess
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

__all__ = [
    "PrivateKafka",
    "PrivateRedis",
    "WorkerProcess",
    "applied_counts",
    "joiner_statuses",
    "start_worker",
    "trainer_status",
    "wait_for_group",
    "wait_until_exactly_applied",
]


def start_worker(settings: Settings, data_dir: Path, log_path: Path) -> WorkerProcess:
    """A worker with short snapshot and checkpoint cadences, so tests finish quickly."""
    return WorkerProcess(
        settings,
        log_path,
        data_dir=data_dir,
        snapshot_every_s=1.0,
        checkpoint_every_s=2.0,
        checkpoint_every_examples=2000,
        # The oracle leaves the impressions still in their windows at the end of the log
        # pending; so must the stream, however long a test waits.
        idle_timeout_s=3600.0,
        web_port=0,
        metrics_port=0,  # several workers per test: none serves Prometheus
    )


def _redis(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url, socket_timeout=5)


def trainer_status(settings: Settings) -> dict[str, Any] | None:
    try:
        raw = _redis(settings).get(f"{settings.redis_prefix}metrics:trainer")
    except redis.ConnectionError:
        return None  # the Redis-restart test takes it away on purpose
    return json.loads(raw) if raw else None


def joiner_statuses(settings: Settings) -> dict[str, dict[str, Any]]:
    raw = _redis(settings).hgetall(f"{settings.redis_prefix}metrics:joiner")
    return {k.decode(): json.loads(v) for k, v in raw.items()}


def applied_counts(settings: Settings) -> tuple[Counter[int], int]:
    """How often the current checkpoint's model learned each example (by the hash of its
    impression id), and the examples offset it covers (-1: no checkpoint yet)."""
    raw = _redis(settings).get(f"{settings.redis_prefix}trainer:{settings.app_id}:current")
    if raw is None:
        return Counter(), -1
    path = Path(raw.decode())
    try:
        applied, meta = read_extra(path)["applied"], read_meta(path)
    except FileNotFoundError:  # replaced by a newer one since we read the pointer
        return Counter(), -1
    return Counter(applied.tolist()), meta.offsets.get(f"{settings.topic_examples}:0", -1)


def _snapshot_offsets(settings: Settings) -> list[int]:
    client = _redis(settings)
    key = f"{settings.redis_prefix}stream:{settings.app_id}:{settings.topic_events}:p"
    return [int(client.hget(f"{key}{p}", "offset") or -1) for p in range(settings.partitions)]


def _end_offsets(settings: Settings) -> tuple[list[int], int]:
    """Last offsets of the events partitions and of the examples topic (-1 when empty)."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    try:
        events = [TopicPartition(settings.topic_events, p) for p in range(settings.partitions)]
        examples = TopicPartition(settings.topic_examples, 0)
        ends = consumer.end_offsets([*events, examples])
        return [ends[tp] - 1 for tp in events], ends[examples] - 1
    finally:
        consumer.close()


def wait_until_exactly_applied(
    settings: Settings, expected: Iterable[str], timeout_s: float, workers: list[WorkerProcess]
) -> None:
    """Wait until the pipeline is quiet (every event snapshotted, every example covered by
    the current checkpoint), then check that the checkpointed model learned exactly the
    ``expected`` examples: none missing, none twice, none extra."""
    want = {stable_hash(event_id, "example") for event_id in expected}
    deadline = time.monotonic() + timeout_s
    seen: tuple[Counter[int], int] = (Counter(), -1)
    while time.monotonic() < deadline:
        for worker in workers:
            if worker.proc.poll() is not None:
                raise AssertionError(
                    f"worker exited with {worker.proc.returncode}:\n{worker.log_tail()}"
                )
        try:
            seen = applied_counts(settings)
            events_end, examples_end = _end_offsets(settings)
            quiet = _snapshot_offsets(settings) == events_end and seen[1] == examples_end
        except redis.ConnectionError:
            quiet = False
        if quiet and len(seen[0]) >= len(want):
            break
        time.sleep(0.5)
    counts = seen[0]
    missing = want - set(counts)
    extra = set(counts) - want
    twice = sorted(k for k, n in counts.items() if n > 1)
    if missing or extra or twice or not counts:
        logs = "\n---\n".join(w.log_tail() for w in workers)
        raise AssertionError(
            f"after {timeout_s} s the checkpointed model learned {sum(counts.values())} examples: "
            f"{len(missing)} of the {len(want)} expected missing, {len(twice)} twice, "
            f"{len(extra)} unexpected\n{_where(settings, missing, seen[1])}\n{logs}"
        )


def _where(settings: Settings, missing: set[int], checkpoint_offset: int) -> str:
    """Where the pipeline stood, and where the missing examples' impressions sit in the
    events topic and whether they were ever emitted: the first question when an example
    is lost is whether the joiner or the trainer lost it."""
    from driftrec.core import decode_event, decode_examples

    events_end, examples_end = _end_offsets(settings)
    located: dict[int, tuple[int, int]] = {}  # example key -> (events partition, offset)
    emitted: dict[int, int] = {}  # example key -> examples offset
    for record in _read_all(settings, settings.topic_events, settings.partitions):
        event_id = json.loads(record.value).get("event_id", "")
        key = stable_hash(event_id, "example")
        if key in missing and decode_event(record.value).type == "impression":
            located[key] = (record.partition, record.offset)
    for record in _read_all(settings, settings.topic_examples, 1):
        for example in decode_examples(record.value)[0]:
            key = stable_hash(example.impression.event_id, "example")
            if key in missing:
                emitted[key] = record.offset
    return (
        f"snapshot offsets {_snapshot_offsets(settings)}, events ends {events_end}; "
        f"checkpoint covers examples offset {checkpoint_offset} of {examples_end}; "
        f"{len(emitted)} of the {len(missing)} missing were emitted, at examples offsets "
        f"{sorted(set(emitted.values()))}; their impressions per events partition "
        f"(count, first offset, last offset) {_spans(located.values())}; trainer status "
        f"{trainer_status(settings)}; joiner statuses {joiner_statuses(settings)}"
    )


def _spans(places: Iterable[tuple[int, int]]) -> dict[int, tuple[int, int, int]]:
    """partition -> (how many, first offset, last offset) of (partition, offset) places."""
    by_partition: dict[int, list[int]] = {}
    for partition, offset in places:
        by_partition.setdefault(partition, []).append(offset)
    return {p: (len(o), min(o), max(o)) for p, o in sorted(by_partition.items())}


def _read_all(settings: Settings, topic: str, partitions: int) -> list[Any]:
    """Every message of ``topic`` up to its end offsets now (a loaded machine can pause a
    consumer for seconds, so read to the ends, not until a quiet spell)."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        receive_message_max_bytes=256 * 1024 * 1024,
    )
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        records: list[Any] = []
        deadline = time.monotonic() + 120
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, f"{topic}: read {len(records)} of {ends}"
            for batch in consumer.poll(timeout_ms=1000).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def wait_for_group(settings: Settings, group: str, members: int, timeout_s: float = 180) -> None:
    """Wait until consumer group ``group`` is stable with ``members`` members."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        deadline = time.monotonic() + timeout_s
        state: Any = None
        while time.monotonic() < deadline:
            try:
                state = admin.describe_consumer_groups([group])[0]
            except KafkaError as error:  # a fresh broker: no coordinator elected yet
                if not error.retriable:
                    raise
                state = error
            else:
                if state.state == "Stable" and len(state.members) == members:
                    return
            time.sleep(0.25)
        raise AssertionError(f"group {group} not stable with {members} members: {state}")
    finally:
        admin.close()


class PrivateRedis:
    """A redis-server of the test's own (append-only file, fsync every second, as
    `driftrec up` runs it) that the test can kill -9 and start again on the same data."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_ports(1)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        server = shutil.which("redis-server")
        assert server, "redis-server is not installed"
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.root)]
        args += ["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]
        self.proc = subprocess.Popen([server, *args], stdout=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return
            except (redis.ConnectionError, redis.BusyLoadingError):
                time.sleep(0.05)
        raise AssertionError(f"private redis on {self.port} did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class PrivateKafka:
    """A single-node KRaft broker of the test's own (its own ports and log directory, the
    jars `driftrec up` fetched) that the test can kill -9 and start again on its data."""

    def __init__(self, settings: Settings, root: Path) -> None:
        port = free_ports(2)  # the broker's, and its controller's next to it
        self.settings = settings.model_copy(
            update={"kafka_bootstrap": f"127.0.0.1:{port}", "data_dir": root, "kafka_heap": "512m"}
        )
        self.broker = KafkaBroker(self.settings)

    def start(self) -> None:
        self.broker.start(timeout=120)

    def kill(self) -> None:
        pid = self.broker.process.pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 20
            while port_open(self.broker.host, self.broker.port):
                assert time.monotonic() < deadline, f"broker {pid} still listens after kill -9"
                time.sleep(0.1)


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive free ports, outside the kernel's ephemeral range.

    A port from ``bind(0)`` is ephemeral: any client connection (and a stress round makes
    hundreds) may take it, or its neighbour, before the server binds it or while a killed
    server is down, and the start fails with "Address already in use". Ports outside
    that range are only ever taken by a listener."""
    low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    outside = [p for p in range(10_000, 65_536 - count) if p + count - 1 < low or p > high]
    for port in random.sample(outside, 200):
        if all(_bindable(p) for p in range(port, port + count)):
            return port
    raise AssertionError(f"no {count} consecutive free ports outside {low}-{high}")


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# -- the scenarios the integration tests run once and `make stress` runs round after round --


def log_options(n_events: int) -> dict[str, str]:
    return {"n_events": str(n_events), "n_users": str(max(50, n_events // 30)), "seed": "11"}


def _records(n_events: int) -> list[Any]:
    from driftrec.producers.sources import open_source

    return list(open_source("default", "synthetic", options=log_options(n_events)))


def _expected(records: list[Any], settings: Settings) -> list[str]:
    from driftrec.stream.testing import expected_examples

    expected = expected_examples(records, settings)
    assert len(expected) == len(set(expected)) > len(records) // 3
    return expected


def _wait_for_progress(settings: Settings, examples: int, worker: WorkerProcess) -> None:
    deadline = time.monotonic() + 240
    while ((trainer_status(settings) or {}).get("examples_seen", 0)) < examples:
        assert time.monotonic() < deadline, worker.log_tail()
        assert worker.proc.poll() is None, worker.log_tail()
        time.sleep(0.2)


def run_uninterrupted(settings: Settings, tmp: Path, workers: list[WorkerProcess], n: int) -> None:
    from driftrec.producers.replay import replay

    records = _records(n)
    replay(records, settings)
    workers.append(start_worker(settings, tmp / "data", tmp / "worker.log"))
    wait_until_exactly_applied(settings, _expected(records, settings), 240, workers)


def _half_replayed(
    settings: Settings, tmp: Path, workers: list[WorkerProcess], n: int
) -> tuple[list[Any], WorkerProcess]:
    """The log, with one worker started, the first half replayed and a tenth learned:
    the moment the scenarios below break something."""
    from driftrec.producers.replay import replay

    records = _records(n)
    worker = start_worker(settings, tmp / "data", tmp / "worker1.log")
    workers.append(worker)
    replay(records[: len(records) // 2], settings)
    _wait_for_progress(settings, len(records) // 10, worker)
    return records, worker


def run_kill_single(settings: Settings, tmp: Path, workers: list[WorkerProcess], n: int) -> None:
    """kill -9 the only worker mid-replay; a new one resumes from snapshots and checkpoint."""
    from driftrec.producers.replay import replay

    records, first = _half_replayed(settings, tmp, workers, n)
    first.kill()
    replay(records[len(records) // 2 :], settings)
    workers.append(start_worker(settings, tmp / "data", tmp / "worker2.log"))
    wait_until_exactly_applied(settings, _expected(records, settings), 240, workers[1:])


def run_two_workers(settings: Settings, tmp: Path, workers: list[WorkerProcess], n: int) -> None:
    """Two workers split the partitions; the joiner work adds up, the trainer is one."""
    from driftrec.producers.replay import replay

    records = _records(n)
    workers.append(start_worker(settings, tmp / "data", tmp / "w1.log"))
    workers.append(start_worker(settings, tmp / "data", tmp / "w2.log"))
    wait_for_group(settings, settings.app_id, members=2)
    replay(records, settings)
    wait_until_exactly_applied(settings, _expected(records, settings), 240, workers)
    busy = {w: s for w, s in joiner_statuses(settings).items() if s.get("impression", 0) > 0}
    assert len(busy) == 2, f"both workers should join events: {busy}"
    owned = [set(s["partitions"]) for s in busy.values()]
    assert not owned[0] & owned[1] and owned[0] | owned[1] == set(range(settings.partitions))


def run_kill_one_of_two(
    settings: Settings, tmp: Path, workers: list[WorkerProcess], n: int
) -> None:
    """kill -9 one of two workers mid-replay: its partitions (and maybe the trainer) move."""
    from driftrec.producers.replay import replay

    records = _records(n)
    workers.append(start_worker(settings, tmp / "data", tmp / "w1.log"))
    workers.append(start_worker(settings, tmp / "data", tmp / "w2.log"))
    wait_for_group(settings, settings.app_id, members=2)
    half = len(records) // 2
    replay(records[:half], settings)
    _wait_for_progress(settings, len(records) // 10, workers[0])
    workers[0].kill()
    replay(records[half:], settings)
    wait_until_exactly_applied(settings, _expected(records, settings), 240, workers[1:])


def run_churn(settings: Settings, tmp: Path, workers: list[WorkerProcess], n: int) -> None:
    """A third worker joins and leaves again and again while two learn: each rebalance
    moves partitions (and maybe the trainer) mid-stream, with batches in flight."""
    from driftrec.producers.replay import replay

    records = _records(n)
    workers.append(start_worker(settings, tmp / "data", tmp / "w1.log"))
    workers.append(start_worker(settings, tmp / "data", tmp / "w2.log"))
    wait_for_group(settings, settings.app_id, members=2)
    chunks = 4
    for i in range(chunks):
        replay(records[i * len(records) // chunks : (i + 1) * len(records) // chunks], settings)
        guest = start_worker(settings, tmp / "data", tmp / f"guest{i}.log")
        wait_for_group(settings, settings.app_id, members=3)
        guest.stop()
        wait_for_group(settings, settings.app_id, members=2)
    wait_until_exactly_applied(settings, _expected(records, settings), 240, workers)


def run_broker_restart(settings: Settings, tmp: Path, workers: list[WorkerProcess], n: int) -> None:
    """kill -9 the broker mid-replay and start it again on its log directory: the worker
    rides out the outage, and nothing is lost or applied twice."""
    from driftrec.producers.replay import replay

    broker = PrivateKafka(settings, tmp / "kafka")
    broker.start()
    settings = broker.settings
    try:
        records, worker = _half_replayed(settings, tmp, workers, n)
        broker.kill()
        time.sleep(OUTAGE_S)  # the outage itself: how long the broker stays away
        assert worker.proc.poll() is None, f"the worker exited in the outage:\n{worker.log_tail()}"
        broker.start()
        replay(records[len(records) // 2 :], settings)
        wait_until_exactly_applied(settings, _expected(records, settings), 240, workers)
    finally:
        for w in workers:
            w.stop()
        workers.clear()
        broker.kill()


#: How long the broker-restart scenario keeps the broker away: a few seconds, as in a
#: rolling restart of a real single broker.
OUTAGE_S = 5.0


def run_redis_lost(settings: Settings, tmp: Path, workers: list[WorkerProcess], n: int) -> None:
    """Redis comes back empty (a lost disk) while Kafka's committed offsets are at the end
    of both topics: a new worker must not trust Kafka. The joiner and the trainer rewind
    to what their (now empty) state covers, and the new model learns every example once."""
    from driftrec.producers.replay import replay

    records = _records(n)
    expected = _expected(records, settings)
    replay(records, settings)
    first = start_worker(settings, tmp / "data", tmp / "first.log")
    workers.append(first)
    wait_until_exactly_applied(settings, expected, 240, workers)
    first.stop()
    client = _redis(settings)
    client.delete(*client.scan_iter(f"{settings.redis_prefix}*"))
    workers.append(start_worker(settings, tmp / "data", tmp / "second.log"))
    wait_until_exactly_applied(settings, expected, 240, workers[1:])


def _redis_killed_mid_replay(
    settings: Settings, tmp: Path, workers: list[WorkerProcess], n: int, *, emptied: bool
) -> None:
    from driftrec.producers.replay import replay

    store = PrivateRedis(tmp / "redis")
    store.start()
    settings = settings.model_copy(update={"redis_url": store.url})
    try:
        records, worker = _half_replayed(settings, tmp, workers, n)
        store.kill()
        if emptied:  # its append-only file goes: it comes back with nothing
            shutil.rmtree(store.root)
            store.root.mkdir()
        replay(records[len(records) // 2 :], settings)  # the worker goes on, Redis is away
        deadline = time.monotonic() + 60
        while "Redis unavailable" not in worker.log_tail(20_000):  # it noticed, and waits
            assert time.monotonic() < deadline and worker.proc.poll() is None, worker.log_tail()
            time.sleep(0.2)
        store.start()
        wait_until_exactly_applied(settings, _expected(records, settings), 240, workers)
        if emptied:
            assert "Redis lost the state of events partitions" in worker.log_tail(1_000_000)
    finally:
        for w in workers:
            w.stop()
        workers.clear()
        store.kill()


def run_redis_restart(settings: Settings, tmp: Path, workers: list[WorkerProcess], n: int) -> None:
    """kill -9 Redis mid-replay and start it again on its append-only file: the worker
    waits it out, and nothing is lost or applied twice."""
    _redis_killed_mid_replay(settings, tmp, workers, n, emptied=False)


def run_redis_emptied(settings: Settings, tmp: Path, workers: list[WorkerProcess], n: int) -> None:
    """kill -9 Redis mid-replay and start it again empty (no persistence) while the
    worker runs: the worker writes its whole joiner state and its checkpoint again under
    new epochs and goes on; the model it checkpoints learned every example exactly once."""
    _redis_killed_mid_replay(settings, tmp, workers, n, emptied=True)
