"""`driftrec demo`: the whole system on one machine, fed the drifting synthetic log.

Starts (unless already running) a worker, the embedding worker and the serving API as
background processes with pid files under ``<data_dir>/demo`` and logs under
``<data_dir>/logs``, and checks each until it is healthy before going on:

- **worker**: its faust web port (when on) is free before the start, and after it the
  consumer group ``app_id`` has a member;
- **embedder**: the consumer group ``<app_id>-embedder`` has a member; its first batch
  is reported while the log replays (``DemoWatch``), when the first item vectors land;
- **serve**: the port (``DRIFTREC_SERVE_PORT``) is free before the start, and after it
  this very process listens there and answers ``/livez``. Readiness (``/healthz``: a
  model and item vectors) comes once the trainer's first checkpoint is promoted, and
  is reported while the log replays.

A port held by another program, a process that exits, or a check that times out is an
``InfraError`` naming the process, what holds the port, and the log to read. A second
`driftrec demo` finds its processes running (by pid file and command line) and checks
them again; `driftrec demo --stop` stops exactly the processes the pid files name,
with the children in their sessions, and nothing else.
"""

from __future__ import annotations

import _thread
import secrets
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from driftrec.core import InfraError
from driftrec.ops.infra.process import ManagedProcess, describe_pid, listening_pids, port_open
from driftrec.ops.settings import Settings
from driftrec.ops.worker_process import settings_env

__all__ = [
    "DemoProcess",
    "DemoWatch",
    "check_until_healthy",
    "demo_processes",
    "demo_specs",
    "start_demo",
    "stop_demo",
    "token_path",
]

HOST = "127.0.0.1"
#: What a check returns: (healthy, what it saw).
Check = Callable[[], tuple[bool, str]]


@dataclass(frozen=True)
class DemoProcess:
    """One background process of the demo: how to start it and the port it must own."""

    name: str
    args: list[str]
    process: ManagedProcess
    port: int | None


def demo_specs(settings: Settings) -> list[DemoProcess]:
    root = settings.data_dir.resolve()
    port = settings.serve_port
    specs = [
        ("worker", ["worker", "--loglevel", "warn"], settings.web_port or None),
        ("embedder", ["embed", "--threads", "1"], None),
        ("serve", ["serve", "--host", HOST, "--port", str(port)], port),
    ]
    return [
        DemoProcess(
            name,
            args,
            ManagedProcess(
                name=name,
                pid_file=root / "demo" / f"{name}.pid",
                log_file=root / "logs" / f"{name}.log",
                signature=f"driftrec.ops.cli {args[0]}",
            ),
            owned_port,
        )
        for name, args, owned_port in specs
    ]


def demo_processes(settings: Settings) -> dict[str, ManagedProcess]:
    return {spec.name: spec.process for spec in demo_specs(settings)}


def token_path(settings: Settings) -> Path:
    return settings.data_dir.resolve() / "demo" / "admin-token"


def _admin_token(settings: Settings) -> str:
    """The configured admin token, or one generated once for the demo and kept on disk."""
    if settings.admin_token is not None:
        return settings.admin_token.get_secret_value()
    path = token_path(settings)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def _http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:  # our own localhost URL
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (OSError, ValueError):
        return None


def _group_check(settings: Settings, group: str) -> Check:
    from kafka import KafkaAdminClient

    admin: list[KafkaAdminClient] = []

    def check() -> tuple[bool, str]:
        if not admin:
            admin.append(
                KafkaAdminClient(
                    bootstrap_servers=settings.bootstrap_servers,
                    client_id="driftrec-demo-check",
                    **settings.kafka_client_options(),
                )
            )
        (info,) = admin[0].describe_consumer_groups([group])
        members = len(info.members)
        return info.state == "Stable" and members > 0, (
            f"consumer group {group!r} is {info.state} with {members} member(s)"
        )

    return check


def _serve_check(spec: DemoProcess) -> Check:
    def check() -> tuple[bool, str]:
        pid, port = spec.process.pid(), spec.port
        owners = listening_pids(port) if port else set()
        if pid not in owners:
            return False, f"not listening on {HOST}:{port} yet"
        status = _http_status(f"http://{HOST}:{port}/livez")
        return status == 200, f"answers on http://{HOST}:{port} (/livez {status})"

    return check


def _checks(settings: Settings, spec: DemoProcess) -> Check:
    if spec.name == "worker":
        return _group_check(settings, settings.app_id)
    if spec.name == "embedder":
        return _group_check(settings, f"{settings.app_id}-embedder")
    return _serve_check(spec)


def _port_free(spec: DemoProcess) -> None:
    if spec.port is None or not port_open(HOST, spec.port):
        return
    holders = ", ".join(describe_pid(p) for p in sorted(listening_pids(spec.port)))
    setting = "DRIFTREC_SERVE_PORT" if spec.name == "serve" else "DRIFTREC_WEB_PORT"
    raise InfraError(
        f"{spec.name} cannot start: port {HOST}:{spec.port} is taken by "
        f"{holders or 'another program'}. Stop it (`driftrec demo --stop` in the checkout "
        f"that started it), or set {setting} to a free port."
    )


def check_until_healthy(spec: DemoProcess, check: Check, timeout: float) -> str:
    """Poll ``check`` until healthy; an exit or a timeout is an InfraError with the log."""
    process, seen = spec.process, "nothing yet"
    deadline = time.monotonic() + timeout
    while True:
        try:
            healthy, seen = check()
        except Exception as error:  # a check that cannot ask yet is not healthy
            healthy, seen = False, f"check failed: {error}"
        if healthy:
            return seen
        if not process.alive():
            code = process.exit_code()
            raise InfraError(
                f"{spec.name} exited during start-up"
                + ("" if code is None else f" with status {code}")
                + f"; its log is {process.log_file}:\n{process.log_tail()}"
            )
        if time.monotonic() > deadline:
            tail = process.log_tail()
            process.stop()
            raise InfraError(
                f"{spec.name} did not become healthy within {timeout:.0f} s ({seen}); "
                f"stopped it; its log is {process.log_file}:\n{tail}"
            )
        time.sleep(0.25)


def start_demo(settings: Settings, *, timeout: float = 180.0) -> list[str]:
    """Start the background processes that are not running and check every one until it
    is healthy; one line of news each (InfraError when one cannot be made healthy)."""
    from driftrec.producers import ensure_topics

    ensure_topics(settings)
    token = _admin_token(settings)
    specs = demo_specs(settings)
    for spec in specs:  # every port first: a taken one fails before anything starts
        if not spec.process.alive():
            _port_free(spec)
    news = []
    for spec in specs:
        process = spec.process
        if process.alive():
            state = f"already running (pid {process.pid()})"
        else:
            env = settings_env(settings, admin_token=token)
            argv = [sys.executable, "-m", "driftrec.ops.cli", *spec.args]
            state = f"started (pid {process.start(argv, env=env)})"
        seen = check_until_healthy(spec, _checks(settings, spec), timeout)
        news.append(f"{spec.name}: {state}, healthy: {seen}; log {process.log_file}")
    return news


def stop_demo(settings: Settings) -> list[str]:
    return [
        f"{name}: {'stopped' if process.stop() else 'was not running'}"
        for name, process in demo_processes(settings).items()
    ]


class DemoWatch:
    """While the log replays: report the embedder's first batch and the API's readiness
    once each happens, and interrupt the replay if a demo process exits."""

    def __init__(self, settings: Settings, say: Callable[[str], None], poll_s: float = 1.0):
        self.settings = settings
        self.say = say
        self.poll_s = poll_s
        self.failed: str | None = None
        #: Checks that have not passed yet: the embedder's first batch, API readiness.
        self.pending = {"embedder", "serve"}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="driftrec-demo-watch", daemon=True)

    def finish(self, timeout: float) -> list[str]:
        """After the replay: wait up to ``timeout`` s for what is not reported yet;
        returns what still is not (empty when everything became healthy)."""
        deadline = time.monotonic() + timeout
        while self.pending and self.failed is None and time.monotonic() < deadline:
            time.sleep(0.25)
        if self.failed is not None:
            return [self.failed]
        return sorted(self.pending)

    def __enter__(self) -> DemoWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def _run(self) -> None:
        import redis
        from driftrec.online_update.embeddings import RedisVectorStore

        client = redis.Redis.from_url(self.settings.redis_url, socket_connect_timeout=2.0)
        store = RedisVectorStore(client, prefix=f"{self.settings.redis_prefix}emb:")
        url = f"http://{HOST}:{self.settings.serve_port}/healthz"
        pending = self.pending
        while not self._stop.wait(self.poll_s):
            for name, process in demo_processes(self.settings).items():
                if not process.alive():
                    self.failed = (
                        f"{name} exited; its log is {process.log_file}:\n{process.log_tail()}"
                    )
                    self.say(f"driftrec: error: {self.failed}")
                    _thread.interrupt_main()
                    return
            if not pending:
                continue
            try:
                version = store.active_version()
                known = store.known(version) if version else 0
            except Exception:  # Redis may be busy; ask again next round
                known = 0
            if "embedder" in pending and known:
                pending.discard("embedder")
                self.say(f"embedder: item vectors in Redis ({known} in version {version})")
            if "serve" in pending and _http_status(url) == 200:
                pending.discard("serve")
                self.say(f"serve: ready ({url} answers 200)")
