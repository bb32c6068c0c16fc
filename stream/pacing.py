"""Backpressure between the joiner and the trainer of one worker.

Where a worker runs both agents, they share one process: a joiner with a backlog of
events would run far ahead, and its examples would wait minutes in Kafka for a trainer
starved of CPU (freshness of a minute and rising in a 100k-event soak). Instead, before
each batch the joiner waits until the trainer beside it has learned every example the
joiner sent more than ``max_lag_s`` ago. The backlog then waits in the events topic, as
consumer lag that monitoring shows, and an example is learned within about
``max_lag_s`` plus one trainer batch of being sent. (A bound on the number of examples
ahead was tried first: at the trainer's pace on a busy machine, 4,000 examples were
still a minute.) A worker whose trainer runs elsewhere (another worker holds the
examples partition, or ``--role joiner``) never waits.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

__all__ = ["TrainerBacklog"]


class TrainerBacklog:
    """The examples a joiner sent that the trainer in the same worker has not learned.

    >>> now = [0.0]
    >>> backlog = TrainerBacklog(max_lag_s=1.0, clock=lambda: now[0])
    >>> backlog.attach()
    >>> backlog.sent(offset=7, examples=80)
    >>> now[0] = 0.5; backlog.sent(offset=8, examples=50)
    >>> backlog.full, backlog.waiting
    (False, 130)
    >>> now[0] = 1.2  # the examples at offset 7 are 1.2 s old, unlearned
    >>> backlog.full
    True
    >>> backlog.learned(offset=7)
    >>> backlog.full, backlog.waiting
    (False, 50)
    """

    def __init__(self, max_lag_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_lag_s = max_lag_s
        self._clock = clock
        self._sent: deque[tuple[int, int, float]] = deque()  # (offset, examples, sent at)
        self._local = False
        self._changed = asyncio.Event()

    @property
    def waiting(self) -> int:
        """Examples sent and not yet learned."""
        return sum(examples for _, examples, _ in self._sent)

    @property
    def full(self) -> bool:
        """Whether the oldest example not yet learned was sent too long ago."""
        return (
            self._local and bool(self._sent) and self._clock() - self._sent[0][2] > self.max_lag_s
        )

    def attach(self) -> None:
        """The trainer of this worker owns the examples partition: pace the joiner."""
        self._local = True

    def detach(self) -> None:
        """The trainer is elsewhere (or moving): the joiner runs free."""
        self._local = False
        self._sent.clear()
        self._changed.set()

    def sent(self, offset: int, examples: int) -> None:
        """The joiner's message at ``offset`` of the examples topic holds ``examples``."""
        if self._local:
            self._sent.append((offset, examples, self._clock()))

    def learned(self, offset: int) -> None:
        """The trainer learned every message up to ``offset``."""
        while self._sent and self._sent[0][0] <= offset:
            self._sent.popleft()
        self._changed.set()

    async def room(self) -> None:
        """Return once the joiner may send more."""
        while self.full:
            self._changed.clear()
            await self._changed.wait()
