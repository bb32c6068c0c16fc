"""Process plumbing for the local services: pid files, ports, bounded waits.

`driftrec down` must stop only what `driftrec up` started, so every check of a
pid also checks that the process is still the program we launched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from driftrec.core import InfraError

__all__ = [
    "ManagedProcess",
    "parse_host_port",
    "port_open",
    "wait_until",
]


def parse_host_port(address: str, default_port: int) -> tuple[str, int]:
    """``"host:port"`` (or a bare host) into a tuple."""
    host, _, port = address.strip().rpartition(":")
    if not host:
        return port or "127.0.0.1", default_port
    try:
        return host, int(port)
    except ValueError:
        raise InfraError(f"cannot read a port from {address!r}; expected host:port") from None


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.25) -> bool:
    """Poll ``check`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()


#: Popen objects of the services we started: holding them keeps Python from warning that
#: a child still runs when this process (the CLI) ends before the long-lived service.
_DETACHED: list[subprocess.Popen[bytes]] = []


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@dataclass(frozen=True)
class ManagedProcess:
    """A background program with a pid file and a log file under the data directory."""

    name: str
    pid_file: Path
    log_file: Path
    #: A fragment of the command line that identifies our process (guards against pid reuse).
    signature: str

    def pid(self) -> int | None:
        """The pid of our running process, or None (a stale pid file is removed)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if self.signature in _cmdline(pid):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def start(
        self, argv: Sequence[str], cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> int:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives the CLI that started it
            )
        _DETACHED.append(proc)
        self.pid_file.write_text(str(proc.pid))
        # Until exec() completes /proc still shows our own command line; wait for it so
        # that pid() does not mistake the fresh child for a stale pid file.
        wait_until(
            lambda: self.signature in _cmdline(proc.pid) or proc.poll() is not None, 10.0, 0.02
        )
        return proc.pid

    def alive(self) -> bool:
        return self.pid() is not None

    def exited_early(self) -> bool:
        """True when the pid file is there but the process has died."""
        return self.pid_file.exists() and self.pid() is None

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM, wait, then SIGKILL. Returns whether a process was stopped."""
        pid = self.pid()
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not wait_until(lambda: not _cmdline(pid), timeout, interval=0.2):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not _cmdline(pid), 5.0, interval=0.1)
        self.pid_file.unlink(missing_ok=True)
        for child in [c for c in _DETACHED if c.pid == pid]:  # reap it if it was our own child
            # An empty cmdline means it is exiting, not always reaped yet: wait, don't poll.
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5)
            _DETACHED.remove(child)
        return True

    def await_healthy(self, healthy: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait for a fresh start to answer; if it dies or times out, stop it and say why."""
        if wait_until(lambda: healthy() or self.exited_early(), timeout) and healthy():
            return
        tail = self.log_tail()
        self.stop()
        raise InfraError(
            f"{what} did not come up within {timeout:.0f} s; log: {self.log_file}\n{tail}"
        )

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
