"""Wait out a Redis outage instead of crashing: retry a blocking call with backoff.

Agents run every Redis call through ``call_redis``: the call runs in a thread (never
on the event loop), and while Redis is unreachable or still loading its data the agent
waits, logging how long, and tries again. No offset is committed meanwhile, so a worker that
sits out an outage loses nothing and a worker that is killed during one replays it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TypeVar

import redis

__all__ = ["REDIS_OUTAGE", "call_redis"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: What an unreachable, restarting or still-loading Redis raises.
REDIS_OUTAGE = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)


async def call_redis(
    fn: Callable[..., T],
    *args: object,
    what: str,
    executor: Executor | None = None,
    max_backoff_s: float = 2.0,
) -> T:
    """``fn(*args)`` in ``executor`` (default: a thread of the loop's), retried with
    exponential backoff until Redis answers. ``fn`` must be safe to run again after
    a failure (everything it changes is either in Redis or rebuilt by the retry)."""
    loop = asyncio.get_running_loop()
    backoff, since = 0.05, time.monotonic()
    while True:
        try:
            return await loop.run_in_executor(executor, fn, *args)
        except REDIS_OUTAGE as error:
            log.warning(
                "%s: Redis unavailable for %.1f s (%s); retrying",
                what,
                time.monotonic() - since,
                error,
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff_s)
