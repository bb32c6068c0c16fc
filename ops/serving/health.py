"""Readiness (``GET /healthz``) and liveness (``GET /livez``) of a serving process.

Readiness answers one question: can this process score a request with the registry's
active model right now? It is 503, with every reason it found, when

- Redis does not answer (features, vectors and the registry live there);
- the registry has no active version (e.g. Redis came back empty), even if a model is
  still loaded from before: what it would serve is no longer what the registry says;
- no model is loaded yet (or the active one failed to load and nothing else is);
- the loaded model's embedding version has no item vectors in Redis (every item would
  be scored without its text).

A server that serves the active version while a newer one failed to load is ready, with
``status`` ``degraded`` and ``last_error`` saying why. Liveness only says the process
runs its event loop; it touches nothing, so a load balancer can restart a hung process
without restarting every replica when Redis is down.

>>> Readiness(reasons=[], serving="v000001", active="v000001").status(None)
'ok'
>>> Readiness(reasons=["Redis is unreachable: x"], serving="v000001", active=None).status(None)
'unready'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import redis
from driftrec.online_update.embeddings import RedisVectorStore
from driftrec.online_update.registry import ModelRegistry
from driftrec.ops.serving.model_holder import ModelHolder

__all__ = ["Readiness", "check_readiness"]

HealthStatus = Literal["ok", "degraded", "unready"]


@dataclass(frozen=True)
class Readiness:
    """What ``check_readiness`` found; ``reasons`` is empty when the server can score."""

    reasons: list[str] = field(default_factory=list)
    serving: str | None = None
    active: str | None = None
    embedding_version: str | None = None
    item_vectors: int | None = None

    @property
    def ready(self) -> bool:
        return not self.reasons

    def status(self, last_error: str | None) -> HealthStatus:
        if self.reasons:
            return "unready"
        return "degraded" if last_error else "ok"


def check_readiness(
    holder: ModelHolder, registry: ModelRegistry, vectors: RedisVectorStore
) -> Readiness:
    """Ask Redis (at most two round trips) whether the loaded model can serve."""
    current = holder.current
    serving = None if current is None else current.version
    embedding = None if current is None else current.embedding_version
    try:
        active = registry.active_version_name()
        known = vectors.known(embedding) if embedding is not None else None
    except redis.RedisError as error:
        return Readiness([f"Redis is unreachable: {error}"], serving, holder.active, embedding)
    reasons = []
    if active is None:
        reasons.append(
            "the registry has no active model version: promote one with "
            "`driftrec models promote V` (or wait for the trainer's first checkpoint)"
        )
    if current is None:
        why = holder.last_error or "the active version is still loading"
        reasons.append(f"no model loaded: {why}")
    elif embedding is None:
        reasons.append("no embedding version is active yet: start the embedder (`driftrec embed`)")
    elif not known:
        reasons.append(
            f"no item vectors for embedding version {embedding!r}: "
            "the embedder has not written any, or they were deleted"
        )
    return Readiness(reasons, serving, active, embedding, known)
