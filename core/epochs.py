"""Owner epochs that survive a Redis that restarted empty.

Joiner partitions and the trainer's model are fenced by owner epochs in Redis: each claim
counts the epoch up by one, and a write succeeds only under the newest. A Redis that
comes back empty has no epoch left, so a running owner writes its whole state again
under ``restore_epoch()``, set only where no epoch exists yet.
"""

from __future__ import annotations

import time

__all__ = ["restore_epoch"]


def restore_epoch() -> int:
    """The wall clock in milliseconds: above any epoch claims (counting from 1) reached
    before the loss, so no earlier owner's epoch can match it; later claims count on
    from it."""
    return time.time_ns() // 1_000_000
