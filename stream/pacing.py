"""Backpressure between the joiner and the trainer of one worker.

Where a worker runs both agents, they share one process: a joiner with a backlog of
events would run far ahead, and its examples would wait minutes in Kafka for a trainer
starved of CPU (freshness of a minute and rising in a 100k-event soak). Instead the
joiner waits before its next batch while more than ``limit`` of the examples it sent are
still unlearned by the trainer beside it; the backlog then waits in the events topic, as
consumer lag, and every example is learned within about ``limit`` / trainer rate of its
emission. A worker whose trainer runs elsewhere (another worker holds the examples
partition, or ``--role joiner``) never waits.
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["TrainerBacklog"]


class TrainerBacklog:
    """The examples a joiner sent that the trainer in the same worker has not learned.

    >>> backlog = TrainerBacklog(limit=100)
    >>> backlog.attach()
    >>> backlog.sent(offset=7, examples=80)
    >>> backlog.sent(offset=8, examples=50)
    >>> backlog.full, backlog.waiting
    (True, 130)
    >>> backlog.learned(offset=7)
    >>> backlog.full, backlog.waiting
    (False, 50)
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._sent: deque[tuple[int, int]] = deque()  # (offset, examples) in offset order
        self.waiting = 0
        self._local = False
        self._changed = asyncio.Event()

    @property
    def full(self) -> bool:
        return self._local and self.waiting > self.limit

    def attach(self) -> None:
        """The trainer of this worker owns the examples partition: pace the joiner."""
        self._local = True

    def detach(self) -> None:
        """The trainer is elsewhere (or moving): the joiner runs free."""
        self._local = False
        self._sent.clear()
        self.waiting = 0
        self._changed.set()

    def sent(self, offset: int, examples: int) -> None:
        """The joiner's message at ``offset`` of the examples topic holds ``examples``."""
        if self._local:
            self._sent.append((offset, examples))
            self.waiting += examples

    def learned(self, offset: int) -> None:
        """The trainer learned every message up to ``offset``."""
        while self._sent and self._sent[0][0] <= offset:
            self.waiting -= self._sent.popleft()[1]
        self._changed.set()

    async def room(self) -> None:
        """Return once the joiner may send more."""
        while self.full:
            self._changed.clear()
            await self._changed.wait()
