"""`driftrec up | down | status` over both local services.

A service whose address is not on this machine is someone else's cluster:
`up` and `down` leave it alone and `status` only checks that it answers.
"""

from __future__ import annotations

from dataclasses import dataclass

from driftrec.ops.infra.kafka import KafkaBroker
from driftrec.ops.infra.redis import RedisServer
from driftrec.ops.settings import Settings

__all__ = ["ServiceStatus", "services_down", "services_status", "services_up"]


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    address: str
    pid: int | None
    healthy: bool
    managed: bool  # started and owned by `driftrec up`

    def line(self) -> str:
        health = "healthy" if self.healthy else "DOWN"
        owner = (
            f"pid {self.pid}" if self.pid else ("external" if not self.managed else "not running")
        )
        return f"{self.name:<6} {self.address:<22} {owner:<14} {health}"


def _services(settings: Settings) -> list[KafkaBroker | RedisServer]:
    return [KafkaBroker(settings), RedisServer(settings)]


def services_up(settings: Settings) -> list[str]:
    """Start whatever local service is not running yet; one line of news per service."""
    news = []
    for service in _services(settings):
        name = service.process.name
        if not service.is_local:
            state = "answers" if service.healthy() else "does NOT answer"
            news.append(f"{name}: external at {service.address} ({state}); not started")
            continue
        news.append(f"{name}: {service.start()} on {service.address} (pid {service.process.pid()})")
    return news


def services_down(settings: Settings) -> list[str]:
    """Stop only the processes `up` started (by pid file)."""
    news = []
    for service in _services(settings):
        stopped = service.stop()
        news.append(
            f"{service.process.name}: {'stopped' if stopped else 'was not running (nothing to stop)'}"
        )
    return news


def services_status(settings: Settings) -> list[ServiceStatus]:
    return [
        ServiceStatus(
            name=s.process.name,
            address=s.address,
            pid=s.process.pid(),
            healthy=s.healthy(),
            managed=s.is_local,
        )
        for s in _services(settings)
    ]
