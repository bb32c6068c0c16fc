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
from typing import ClassVar

from driftrec.core import InfraError

__all__ = [
    "ManagedProcess",
    "describe_pid",
    "listening_pids",
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


def listening_pids(port: int) -> set[int]:
    """Pids of the processes with a TCP socket listening on ``port`` (Linux ``/proc``;
    empty where it cannot tell, e.g. another user's process)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{inode}]")
    pids: set[int] = set()
    if not inodes:
        return pids
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        pids.add(int(proc.name))
                        break
    return pids


def describe_pid(pid: int) -> str:
    """``pid 123 (command line) in /its/working/dir``, as far as /proc tells."""
    cwd = ""
    with contextlib.suppress(OSError):
        cwd = f" in {os.readlink(f'/proc/{pid}/cwd')}"
    command = _cmdline(pid).strip() or "?"
    return f"pid {pid} ({command[:120]}){cwd}"


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
        self._last_pid[self.name] = proc.pid
        self.pid_file.write_text(str(proc.pid))
        # Until exec() completes /proc still shows our own command line; wait for it so
        # that pid() does not mistake the fresh child for a stale pid file.
        wait_until(
            lambda: self.signature in _cmdline(proc.pid) or proc.poll() is not None, 10.0, 0.02
        )
        return proc.pid

    def exit_code(self) -> int | None:
        """The exit status of a process this CLI started and that has exited, else None."""
        pid = self._started_pid()
        for child in _DETACHED:
            if child.pid == pid:
                return child.poll()
        return None

    def _started_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return self._last_pid.get(self.name)

    #: pid of each process started in this CLI, by name (its pid file may be gone).
    _last_pid: ClassVar[dict[str, int]] = {}

    def alive(self) -> bool:
        return self.pid() is not None

    def exited_early(self) -> bool:
        """True when the pid file is there but the process has died."""
        return self.pid_file.exists() and self.pid() is None

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM, wait, then SIGKILL, to the process and the children in its session
        (``start`` made it a session leader). Returns whether a process was stopped."""
        pid = self.pid()
        if pid is None:
            return False
        _signal(pid, signal.SIGTERM)
        if not wait_until(lambda: not _cmdline(pid), timeout, interval=0.2):
            _signal(pid, signal.SIGKILL)
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


def _signal(pid: int, sig: signal.Signals) -> None:
    """``sig`` to the session ``pid`` leads (what ``ManagedProcess.start`` started), or to
    ``pid`` alone when it leads none."""
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
