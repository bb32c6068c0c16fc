"""Prometheus metrics of one server, and the ASGI middleware that records requests.

Each app has its own ``CollectorRegistry`` (not the process-global one), so several apps
in one process (tests, the benchmark) never share or collide on series. Endpoints are
labelled by route template (``/models/{version}/promote``), never by raw path, so a
client cannot create unbounded series; unmatched paths share the label ``unmatched``.

Series: ``driftrec_http_requests_total{endpoint,method,status}``,
``driftrec_http_request_duration_seconds{endpoint}`` (histogram),
``driftrec_model_active{version}`` (1 for the version being served),
``driftrec_model_swaps_total``, ``driftrec_model_load_failures_total``.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CONTENT_TYPE_LATEST", "MetricsMiddleware", "ServingMetrics"]

# Resolution where the latency goal (p99 <= 20 ms) is decided.
_BUCKETS = (0.001, 0.002, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServingMetrics:
    """The server's series (see the module docstring)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "driftrec_http_requests",
            "HTTP requests by endpoint, method and status code.",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "driftrec_http_request_duration_seconds",
            "Time from request start to the last response byte, by endpoint.",
            ["endpoint"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.active = Gauge(
            "driftrec_model_active",
            "1 for the model version this server scores with.",
            ["version"],
            registry=self.registry,
        )
        self.swaps = Counter(
            "driftrec_model_swaps", "Model versions swapped in.", registry=self.registry
        )
        self.load_failures = Counter(
            "driftrec_model_load_failures",
            "Active versions that could not be loaded (kept serving the previous one).",
            registry=self.registry,
        )

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, method, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def swapped(self, version: str) -> None:
        self.active.clear()
        self.active.labels(version).set(1)
        self.swaps.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times every HTTP request (pure ASGI: no per-request task or copy)."""

    def __init__(self, app: ASGIApp, metrics: ServingMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route: Any = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(
                endpoint, scope.get("method", ""), status, time.perf_counter() - started
            )
