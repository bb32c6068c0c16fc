"""The stream runtime: the faust app and its agents (joiner, trainer), the catalog follower,
and the Redis adapters they write through (joiner snapshots, the feature store).

Agents are thin loops around the pure code of ``driftrec.features`` and
``driftrec.online_update.training``. ``driftrec.stream.testing`` holds the offline oracle
the integration tests compare the live stream to.
"""

from __future__ import annotations

from driftrec.stream.app import ROLES, create_app
from driftrec.stream.feature_store import RedisFeatureStore, user_shard
from driftrec.stream.history import HistoryEntry, HistoryKeys, HistoryWriter, read_history
from driftrec.stream.join_worker import JoinWorker, PartitionState
from driftrec.stream.telemetry import WorkerMetrics

__all__ = [
    "ROLES",
    "HistoryEntry",
    "HistoryKeys",
    "HistoryWriter",
    "JoinWorker",
    "PartitionState",
    "RedisFeatureStore",
    "WorkerMetrics",
    "create_app",
    "read_history",
    "user_shard",
]
