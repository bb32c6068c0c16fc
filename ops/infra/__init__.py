"""Local infrastructure: the Kafka broker and Redis server behind `driftrec up | down | status`."""

from __future__ import annotations

from driftrec.ops.infra.services import ServiceStatus, services_down, services_status, services_up

__all__ = ["ServiceStatus", "services_down", "services_status", "services_up"]
