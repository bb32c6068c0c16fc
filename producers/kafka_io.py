"""The kafka-python adapter of the producers: clients and topic creation."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from driftrec.core import DriftrecConfig, InfraError
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, NoBrokersAvailable, TopicAlreadyExistsError

__all__ = ["all_topics", "ensure_topics", "make_producer"]


def all_topics(settings: DriftrecConfig) -> list[str]:
    return [
        settings.topic_events,
        settings.topic_items,
        settings.topic_examples,
        settings.topic_metrics,
        settings.topic_deadletter,
    ]


def _unreachable(settings: DriftrecConfig) -> InfraError:
    return InfraError(
        f"no Kafka broker answers at {settings.kafka_bootstrap}: start one with `driftrec up`, "
        "or set DRIFTREC_KAFKA_BOOTSTRAP to your cluster"
    )


def make_producer(settings: DriftrecConfig, **overrides: Any) -> KafkaProducer:
    """A producer tuned for replay throughput: batches of up to 256 KiB, acks from the leader."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "acks": 1,
        "linger_ms": 20,
        "batch_size": 256 * 1024,
        "buffer_memory": 64 * 1024 * 1024,
        "max_request_size": 4 * 1024 * 1024,
        "retries": 5,
        **settings.kafka_client_options(),
        **overrides,
    }
    try:
        return KafkaProducer(**options)
    except NoBrokersAvailable:
        raise _unreachable(settings) from None


def ensure_topics(settings: DriftrecConfig, names: Iterable[str] | None = None) -> list[str]:
    """Create the driftrec topics that are missing; returns the ones created.

    The items topic is compacted by item id (the catalog keeps the latest version of
    each item); every other topic keeps a time-based retention.
    """
    wanted = list(names) if names is not None else all_topics(settings)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=settings.bootstrap_servers,
            request_timeout_ms=15_000,
            **settings.kafka_client_options(),
        )
    except NoBrokersAvailable:
        raise _unreachable(settings) from None
    try:
        existing = set(admin.list_topics())
        missing = [n for n in wanted if n not in existing]
        # Events and items spread over partitions; examples stay in one partition so the
        # trainer (one writer per model) sees them in emission order.
        spread = {settings.topic_events, settings.topic_items}
        topics = [
            NewTopic(
                name=name,
                num_partitions=settings.partitions if name in spread else 1,
                replication_factor=settings.replication_factor,
                topic_configs={"cleanup.policy": "compact"} if name == settings.topic_items else {},
            )
            for name in missing
        ]
        if topics:
            try:
                admin.create_topics(topics, timeout_ms=15_000)
            except TopicAlreadyExistsError:
                pass  # another process created it between our list and create
            except KafkaError as error:
                raise InfraError(f"creating topics {missing} failed: {error}") from error
        return missing
    finally:
        admin.close()
