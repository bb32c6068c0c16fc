"""The faust app: topics, consumer settings, and the agents registered on it.

``faust -A driftrec.stream.app worker`` and ``driftrec worker`` both start this app. The
consumer settings are chosen on purpose (values in seconds):

- ``processing_guarantee="at_least_once"``: faust's ``exactly_once`` has many open
  bugs; instead the agents' topics are not acked at all: the agents commit the offsets
  a joiner snapshot or trainer checkpoint covers once it is durable
  (stream/offsets.py), and the sinks are idempotent (examples carry their impression's
  event id, which the trainer deduplicates).
- ``broker_session_timeout=10``, ``broker_heartbeat_interval=2``: a killed worker
  is noticed and its partitions move within ~10 s, without flapping on a busy host.
- ``broker_max_poll_interval=300``: torch work runs in an executor, but a long
  checkpoint must never get a healthy worker kicked out of the group.
- ``stream_recovery_delay=0.5``: start consuming soon after a rebalance.
- ``stream_buffer_maxsize=131072``: a few seconds of traffic can wait in faust's
  buffer while an agent snapshots or checkpoints, without pausing the fetcher.
"""

from __future__ import annotations

from typing import Any

import faust
from driftrec.core import DriftrecConfig
from driftrec.stream.offsets import SeekingTransport
from driftrec.stream.telemetry import WorkerMetrics

__all__ = ["ROLES", "create_app"]

#: What a worker runs: everything, or one side of the pipeline in its own process
#: (the trainer then has its own consumer group, ``<app_id>-trainer``).
ROLES = ("all", "joiner", "trainer")


def _credentials(settings: DriftrecConfig) -> Any:
    protocol = settings.kafka_security_protocol
    if protocol.startswith("SASL") and settings.kafka_sasl_username:
        password = (
            settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else ""
        )
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=password,
            mechanism=settings.kafka_sasl_mechanism or "PLAIN",
            ssl_context=_ssl_context(settings) if protocol == "SASL_SSL" else None,
        )
    if protocol == "SSL":
        return faust.SSLCredentials(_ssl_context(settings))
    return None


def _ssl_context(settings: DriftrecConfig) -> Any:
    import ssl

    context = ssl.create_default_context(
        cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
    )
    if settings.kafka_ssl_certfile:
        context.load_cert_chain(
            str(settings.kafka_ssl_certfile),
            str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
        )
    return context


def create_app(
    settings: DriftrecConfig, role: str = "all", metrics: WorkerMetrics | None = None
) -> faust.App:
    """A faust app wired to ``settings`` with the agents of ``role`` registered; they
    record into ``metrics`` (a fresh, unserved set when None)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    app_id = f"{settings.app_id}-trainer" if role == "trainer" else settings.app_id
    datadir = settings.data_dir / "faust" / role
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        app_id,
        broker=[f"kafka://{server}" for server in settings.bootstrap_servers],
        broker_credentials=_credentials(settings),
        store="memory://",
        processing_guarantee="at_least_once",
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        broker_max_poll_interval=300.0,
        stream_recovery_delay=0.5,
        stream_wait_empty=False,
        stream_buffer_maxsize=131_072,
        consumer_auto_offset_reset="earliest",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        producer_linger=0.005,
        web_enabled=settings.web_port > 0,
        web_port=max(settings.web_port, 1),
        web_bind="127.0.0.1",
        datadir=str(datadir),
    )
    app.transport = SeekingTransport(app.conf.broker_consumer, app)
    from driftrec.stream.join_agent import register_joiner
    from driftrec.stream.pacing import TrainerBacklog
    from driftrec.stream.train_agent import register_trainer

    # Only agents in one process share a backlog; apart, each runs at its own pace.
    backlog = TrainerBacklog(settings.trainer_max_lag_s) if role == "all" else None
    metrics = metrics or WorkerMetrics()
    if role in ("all", "joiner"):
        register_joiner(app, settings, backlog, metrics=metrics)
    if role in ("all", "trainer"):
        register_trainer(app, settings, backlog, metrics=metrics)
    return app
