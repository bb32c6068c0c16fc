"""A real Redis server on localhost, from Debian's ``redis-server`` package."""

from __future__ import annotations

import shutil
from urllib.parse import urlparse

from driftrec.core import InfraError
from driftrec.ops.infra.process import ManagedProcess, port_open, wait_until
from driftrec.ops.settings import Settings

__all__ = ["RedisServer"]


class RedisServer:
    """Start, check and stop the local Redis described by ``settings.redis_url``."""

    def __init__(self, settings: Settings) -> None:
        url = urlparse(settings.redis_url)
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or 6379
        self.root = settings.data_dir.resolve() / "redis"
        self.process = ManagedProcess(
            name="redis",
            pid_file=self.root / "redis.pid",
            log_file=settings.data_dir.resolve() / "logs" / "redis.log",
            signature="redis-server",
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def is_local(self) -> bool:
        return self.host in {"127.0.0.1", "localhost", "::1"}

    def healthy(self) -> bool:
        if not port_open(self.host, self.port):
            return False
        import redis  # deferred: `driftrec status` should not pay for it when the port is closed

        try:
            return bool(redis.Redis(host=self.host, port=self.port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def start(self, timeout: float = 20.0) -> str:
        if self.process.alive():
            if wait_until(self.healthy, timeout):
                return "already running"
            raise InfraError(
                f"Redis (pid {self.process.pid()}) runs but does not answer on {self.address}; see {self.process.log_file}"
            )
        if port_open(self.host, self.port):
            raise InfraError(
                f"port {self.address} is taken by another program, so driftrec cannot start Redis there. "
                "Stop it, or set DRIFTREC_REDIS_URL to that Redis (then `driftrec up` leaves Redis alone) "
                "or to a free port."
            )
        server = shutil.which("redis-server")
        if server is None:
            raise InfraError(
                "`redis-server` is not installed: apt-get install redis-server, "
                "or point DRIFTREC_REDIS_URL at an existing Redis."
            )
        self.root.mkdir(parents=True, exist_ok=True)
        self.process.start(
            [
                server,
                "--bind",
                self.host,
                "--port",
                str(self.port),
                "--dir",
                str(self.root),
                "--daemonize",
                "no",
                # The joiner's snapshots and the registry must survive a restart: an
                # append-only file synced every second (the RDB dump stays as a backup).
                "--save",
                "60 1000",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--protected-mode",
                "yes",
            ],
            cwd=self.root,
        )
        self.process.await_healthy(self.healthy, timeout, f"Redis on {self.address}")
        return "started"

    def stop(self) -> bool:
        return self.process.stop()
