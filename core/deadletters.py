"""Dead letters of the stream agents: where a record came from and why it was refused."""

from __future__ import annotations

from datetime import UTC, datetime

from driftrec.core.schemas import DeadLetter, as_payload

__all__ = ["dead_letter"]


def dead_letter(
    reason: str,
    stage: str,
    topic: str,
    partition: int | None,
    offset: int | None,
    payload: bytes | str | None,
) -> DeadLetter:
    """A dead letter for a record read from ``topic`` at ``partition``/``offset``."""
    return DeadLetter(
        reason=reason[:2048],
        stage=stage,
        ts=datetime.now(UTC),
        topic=topic,
        partition=partition,
        offset=offset,
        payload=as_payload(payload or b""),
    )
