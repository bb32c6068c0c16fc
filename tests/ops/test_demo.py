"""The demo's processes against the real Kafka and Redis: checked until healthy, a taken
port or an exiting process is a clear error, a second start and a start after a stop
work, and a stop stops exactly what the demo started.

Each test runs the demo under its own topics, Redis prefix, consumer group, data dir and
ports (the shared services and any other demo are left alone), with the hashing text
encoder so the embedder starts in a second.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from driftrec.core import InfraError
from driftrec.ops.demo import (
    DemoProcess,
    check_until_healthy,
    demo_processes,
    start_demo,
    stop_demo,
)
from driftrec.ops.infra.process import ManagedProcess
from driftrec.ops.settings import Settings

from tests.ops.real_processes import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def demo(isolated: Settings, redis_prefix: str, tmp_path: Path) -> Iterator[Settings]:
    settings = isolated.model_copy(
        update={
            "redis_prefix": redis_prefix,
            "data_dir": tmp_path,
            "app_id": f"t{uuid.uuid4().hex[:8]}",
            "serve_port": free_port(),
            "web_port": free_port(),
            "text_model": "hashing:32",
        }
    )
    yield settings
    stop_demo(settings)


@pytest.mark.slow
def test_start_twice_stop_start_again_and_stop_only_ours(demo: Settings) -> None:
    bystander = subprocess.Popen(  # same kind of command line, not started by the demo
        [sys.executable, "-c", "import time; time.sleep(600)", "driftrec.ops.cli serve"]
    )
    try:
        first = start_demo(demo, timeout=120)
        assert [line.split(":")[0] for line in first] == ["worker", "embedder", "serve"]
        assert all(": started (pid" in line and "healthy: " in line for line in first), first
        assert f"answers on http://127.0.0.1:{demo.serve_port}" in first[2]
        assert "member(s)" in first[0] and "-embedder" in first[1]

        second = start_demo(demo, timeout=60)
        assert all("already running" in line and "healthy" in line for line in second)

        pids = {name: p.pid() for name, p in demo_processes(demo).items()}
        assert stop_demo(demo) == ["worker: stopped", "embedder: stopped", "serve: stopped"]
        assert all(not p.alive() for p in demo_processes(demo).values())
        assert bystander.poll() is None  # nothing else was stopped

        again = start_demo(demo, timeout=120)  # after a stop: the embedder finds its state
        assert all(": started (pid" in line for line in again), again
        assert {n: p.pid() for n, p in demo_processes(demo).items()} != pids
    finally:
        bystander.kill()
        bystander.wait(10)


def test_a_taken_port_fails_before_anything_starts_and_names_the_holder(
    demo: Settings,
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", demo.serve_port))
        holder.listen()
        with pytest.raises(InfraError) as error:
            start_demo(demo, timeout=30)
    message = str(error.value)
    assert f"serve cannot start: port 127.0.0.1:{demo.serve_port} is taken by pid" in message
    assert "DRIFTREC_SERVE_PORT" in message
    assert all(not p.alive() for p in demo_processes(demo).values())


def test_a_process_that_exits_during_start_up_is_named_with_its_log(tmp_path: Path) -> None:
    process = ManagedProcess(
        name="serve",
        pid_file=tmp_path / "serve.pid",
        log_file=tmp_path / "serve.log",
        signature="driftrec-exit-test",
    )
    process.start(
        [
            sys.executable,
            "-c",
            "import sys; print('cannot bind'); sys.exit(3)",
            "driftrec-exit-test",
        ]
    )
    spec = DemoProcess("serve", ["serve"], process, None)
    with pytest.raises(InfraError) as error:
        check_until_healthy(spec, lambda: (False, "not listening yet"), timeout=30)
    message = str(error.value)
    assert "serve exited during start-up with status 3" in message
    assert str(tmp_path / "serve.log") in message and "cannot bind" in message
