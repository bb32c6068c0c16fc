"""Batches the agents take from faust streams."""

from __future__ import annotations

from typing import Any

import faust

__all__ = ["current"]


def current(app: faust.App, events: list[Any]) -> list[Any]:
    """The events of ``events`` fetched in the consumer's current generation.

    ``noack_take`` may hand over a batch it filled before a rebalance; faust seeks every
    partition back to its committed offset after one, so those events come again, in
    order, and taking the stale copies first would move a state past a gap."""
    generation = app.consumer_generation_id
    return [e for e in events if e.message.generation_id == generation]
