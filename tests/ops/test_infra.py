"""Local infrastructure: pid files, port checks and the errors a newcomer sees."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from driftrec.core.errors import InfraError
from driftrec.ops.cli import main
from driftrec.ops.infra.kafka import KafkaBroker
from driftrec.ops.infra.process import ManagedProcess, parse_host_port, port_open
from driftrec.ops.infra.redis import RedisServer
from driftrec.ops.settings import Settings


@pytest.fixture
def listener() -> Iterator[int]:
    """A port some other program holds."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    yield sock.getsockname()[1]
    sock.close()


def test_parse_host_port() -> None:
    assert parse_host_port("127.0.0.1:9092", 1) == ("127.0.0.1", 9092)
    assert parse_host_port("kafka", 9092) == ("kafka", 9092)
    with pytest.raises(InfraError, match="host:port"):
        parse_host_port("host:notaport", 1)


def test_managed_process_lifecycle(tmp_path: Path) -> None:
    proc = ManagedProcess(
        "sleeper", tmp_path / "s.pid", tmp_path / "s.log", signature="driftrec-sleeper-test"
    )
    assert proc.pid() is None and not proc.stop()
    code = "import time, sys; sys.argv.append('driftrec-sleeper-test'); time.sleep(60)"
    pid = proc.start([sys.executable, "-c", code, "driftrec-sleeper-test"])
    assert proc.pid() == pid and proc.alive()
    assert proc.stop(timeout=5)
    assert proc.pid() is None and not (tmp_path / "s.pid").exists()


def test_stale_pid_file_is_not_ours(tmp_path: Path) -> None:
    pid_file = tmp_path / "x.pid"
    pid_file.write_text("1")  # pid 1 is alive but is not our program
    proc = ManagedProcess("x", pid_file, tmp_path / "x.log", signature="kafka.Kafka-not-this")
    assert proc.pid() is None
    assert not proc.stop(), "down must never signal a process it did not start"


def test_redis_port_taken_by_someone_else(tmp_path: Path, listener: int) -> None:
    settings = Settings(redis_url=f"redis://127.0.0.1:{listener}/0", data_dir=tmp_path)
    with pytest.raises(InfraError, match=r"taken by another program.*DRIFTREC_REDIS_URL"):
        RedisServer(settings).start()


def test_kafka_port_taken_by_someone_else(tmp_path: Path, listener: int) -> None:
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{listener}", data_dir=tmp_path)
    with pytest.raises(InfraError, match=r"taken by another program.*DRIFTREC_KAFKA_BOOTSTRAP"):
        KafkaBroker(settings).start()


def test_missing_programs_say_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    free = Settings(
        redis_url="redis://127.0.0.1:1/0", kafka_bootstrap="127.0.0.1:2", data_dir=tmp_path
    )
    with pytest.raises(InfraError, match="apt-get install redis-server"):
        RedisServer(free).start()
    with pytest.raises(InfraError, match=r"install maven.*DRIFTREC_KAFKA_BOOTSTRAP"):
        KafkaBroker(free).start()


def test_external_services_are_left_alone(tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap="kafka.example.internal:9092", data_dir=tmp_path)
    assert not KafkaBroker(settings).is_local
    assert RedisServer(settings).is_local


def test_port_open_on_closed_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert not port_open("127.0.0.1", port)


@pytest.mark.integration
def test_status_reports_both_services_healthy(
    live_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "kafka" in out and "redis" in out and out.count("healthy") == 2


def test_kafka_cluster_id_never_reads_as_an_option(monkeypatch: pytest.MonkeyPatch) -> None:
    """1 in 64 random ids starts with "-", which kafka-storage took for an option."""
    import uuid

    from driftrec.ops.infra import kafka

    ids = iter([uuid.UUID(bytes=b"\xf8" + b"\x00" * 15), uuid.UUID(bytes=b"\x00" * 16)])
    monkeypatch.setattr(kafka.uuid, "uuid4", lambda: next(ids))
    assert kafka._cluster_id() == "AAAAAAAAAAAAAAAAAAAAAA"
