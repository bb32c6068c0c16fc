"""The history streams and the joiner's status hash against the real Redis."""

from __future__ import annotations

import json

import pytest
import redis
from driftrec.ops.settings import Settings
from driftrec.stream import HistoryKeys, HistoryWriter, read_history
from driftrec.stream.join_agent import _forget_stopped

pytestmark = pytest.mark.integration


def test_entries_come_back_in_order_with_their_worker_and_time(
    live_settings: Settings, redis_prefix: str, redis_client: redis.Redis
) -> None:
    settings = live_settings.model_copy(update={"redis_prefix": redis_prefix})
    writer = HistoryWriter(redis_client, settings, "host:42")
    key = HistoryKeys.of(redis_prefix).trainer
    for n in range(3):
        writer.append(key, {"n": n})
    entries = read_history(redis_client, key)
    assert [(e.worker, e.data) for e in entries] == [("host:42", {"n": n}) for n in range(3)]
    assert [e.ms for e in entries] == sorted(e.ms for e in entries)
    assert [e.data["n"] for e in read_history(redis_client, key, after=entries[0].id)] == [1, 2]
    assert [e.data["n"] for e in read_history(redis_client, key, until=entries[1].id)] == [0, 1]


def test_statuses_of_long_stopped_workers_are_forgotten(
    redis_prefix: str, redis_client: redis.Redis
) -> None:
    key = f"{redis_prefix}metrics:joiner"
    redis_client.hset(
        key, mapping={"old:1": json.dumps({"ts": 100.0}), "new:2": json.dumps({"ts": 900.0})}
    )
    _forget_stopped(redis_client, key, before=500.0)
    assert set(redis_client.hkeys(key)) == {b"new:2"}
