"""`driftrec serve --workers N` (ops.serving.workers): one port, N processes, even split.

The unit tests pin the port check and the fair-share rule; the integration test runs
real processes against the real Redis: both answer on the port, keep-alive connections
end up split evenly, a killed process is replaced, and SIGTERM stops them all.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from driftrec.core import InfraError
from driftrec.ops.serving.workers import FairShare, reuseport_socket, serve_workers
from driftrec.ops.settings import Settings
from driftrec.ops.worker_process import settings_env

from tests.ops.real_processes import free_port, wait_for

HOST = "127.0.0.1"


def test_a_port_in_use_fails_before_any_process_starts() -> None:
    with socket.socket() as plain:
        plain.bind((HOST, 0))
        plain.listen()
        port = plain.getsockname()[1]
        with pytest.raises(InfraError, match=f"{HOST}:{port}"):
            serve_workers(Settings(), HOST, port, 2)
    # An older `driftrec serve --workers` listens with SO_REUSEPORT, which a new group's
    # sockets would silently share: the check binds without it, so it fails too.
    with reuseport_socket(HOST, 0) as group:
        port = group.getsockname()[1]
        with pytest.raises(InfraError, match="another server holds the port"):
            serve_workers(Settings(), HOST, port, 2)


@pytest.mark.parametrize(
    ("counts", "over"),
    [
        ([5, 3], True),  # 5 > ceil(8 / 2)
        ([4, 4], False),
        ([3, 5], False),
        ([5, 4], False),  # an odd total leaves one process a connection over
        ([6, 4], True),
        ([2, 1, 0], True),  # 2 > ceil(3 / 3)
    ],
)
def test_a_process_over_its_share_asks_the_client_to_reconnect(
    counts: list[int], over: bool
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"a", b"b")]})
        await send({"type": "http.response.body", "body": b"{}"})

    shared = [0] * len(counts)
    share = FairShare(app, shared, slot=0)
    share.connections = lambda: counts[0]
    shared[1:] = counts[1:]
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(share({"type": "http"}, None, send))
    assert shared == counts  # it published its own count
    headers = sent[0]["headers"]
    assert ((b"connection", b"close") in headers) is over
    assert (b"a", b"b") in headers


def _get(conn: http.client.HTTPConnection, path: str) -> tuple[int, dict[str, Any]]:
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def fresh(port: int) -> int | None:
    """The pid of the process that answers ``/livez`` on a new connection."""
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        status, body = _get(conn, "/livez")
        return int(body["pid"]) if status == 200 else None
    except OSError:
        return None
    finally:
        conn.close()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.integration
def test_workers_share_the_port_evenly_replace_a_dead_process_and_stop_together(
    live_settings: Settings, redis_prefix: str, tmp_path: Path
) -> None:
    settings = live_settings.model_copy(update={"redis_prefix": redis_prefix, "data_dir": tmp_path})
    port = free_port()
    code = (
        "import sys; from driftrec.ops.serving.workers import serve_workers; "
        "from driftrec.ops.settings import Settings; "
        "serve_workers(Settings(), '127.0.0.1', int(sys.argv[1]), 2, startup_s=1.0)"
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        parent = subprocess.Popen(
            [sys.executable, "-c", code, str(port)],
            env=settings_env(settings),
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    tail = lambda: log.read_text(errors="replace")[-3000:]  # noqa: E731
    seen: set[int] = set()
    try:
        # Both processes answer on the one port (fresh connections hash to either).
        def both() -> bool:
            pid = fresh(port)
            if pid is not None:
                seen.add(pid)
            return len(seen) == 2

        wait_for(
            "two processes answering", both, 120, lambda: f"pids {seen}\n{tail()}", every_s=0.1
        )
        first = set(seen)

        # Eight keep-alive connections end up four and four: a process over its share
        # answers "Connection: close" and the client's reconnect is hashed again.
        conns = [http.client.HTTPConnection(HOST, port, timeout=5) for _ in range(8)]
        split: dict[int, int] = {}

        def even() -> bool:
            split.clear()
            for conn in conns:
                status, body = _get(conn, "/livez")  # reconnects by itself after a close
                assert status == 200
                split[body["pid"]] = split.get(body["pid"], 0) + 1
            return sorted(split.values()) == [4, 4]

        wait_for("an even split of 8 connections", even, 30, lambda: f"split {split}")
        for conn in conns:
            conn.close()

        # A process killed after it was up is replaced; the other keeps serving.
        victim = min(first)
        os.kill(victim, signal.SIGKILL)

        def replaced() -> bool:
            pid = fresh(port)
            if pid is not None:
                seen.add(pid)
            return len(seen - first) == 1 and pid is not None and pid not in first

        wait_for("a replacement process answering", replaced, 120, lambda: f"{seen}\n{tail()}")
        assert parent.poll() is None, tail()
    finally:
        parent.send_signal(signal.SIGTERM)
        code_at_exit = parent.wait(timeout=60)
    assert code_at_exit == 0, tail()
    assert not [pid for pid in seen if _alive(pid)], f"processes left running: {seen}"


def test_a_process_that_fails_while_starting_stops_them_all(tmp_path: Path) -> None:
    # A Redis URL redis-py refuses: every API process exits while building its app.
    settings = Settings(redis_url="nosuch://x", data_dir=tmp_path)
    port = free_port()
    started = time.monotonic()
    with pytest.raises(InfraError, match="exited with code 1 while starting"):
        serve_workers(settings, HOST, port, 2)
    assert time.monotonic() - started < 60
