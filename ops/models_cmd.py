"""Plain functions behind ``driftrec models ...``: each returns text for the CLI to print.

They raise ``RegistryError`` (bad version, nothing to roll back to, corrupt artifact) and
``InfraError`` (Redis unreachable); the CLI prints the message and exits non-zero.
Checking the admin token is the caller's job.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from driftrec.core import InfraError
from driftrec.online_update.embeddings import RedisVectorStore
from driftrec.online_update.registry import ModelRegistry, RetentionPolicy, VersionInfo

__all__ = [
    "models_gc",
    "models_list",
    "models_promote",
    "models_rollback",
    "models_show",
]


@contextmanager
def _redis_errors() -> Iterator[None]:
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as error:
        raise InfraError(
            f"cannot reach the registry's Redis ({error}): start it with `driftrec up` "
            "or set DRIFTREC_REDIS_URL"
        ) from None


def _metric(info: VersionInfo, name: str) -> str:
    value = info.metrics.get(name)
    return "-" if value is None else f"{value:.4f}"


def models_list(registry: ModelRegistry, *, metric: str = "click.auc") -> list[str]:
    """One line per version, oldest first; the active one is marked with ``*``."""
    with _redis_errors():
        versions = registry.list_versions()
    if not versions:
        return ["no model versions published yet"]
    lines = [f"  {'version':<9} {'status':<9} {'created (UTC)':<19} {'examples':>9} {metric:>10}"]
    for info in versions:
        mark = "*" if info.status == "active" else " "
        created = info.created_at.strftime("%Y-%m-%d %H:%M:%S")
        lines.append(
            f"{mark} {info.version:<9} {info.status:<9} {created:<19} "
            f"{info.examples_seen:>9} {_metric(info, metric):>10}"
            + (f"  parent {info.parent}" if info.parent else "")
        )
    return lines


def models_show(registry: ModelRegistry, version: str) -> str:
    """Everything the registry holds about ``version``, as indented JSON."""
    with _redis_errors():
        info = registry.get(version)
    return json.dumps(info.model_dump(mode="json"), indent=2)


def models_promote(
    registry: ModelRegistry, version: str, *, reason: str = "manual promote (cli)"
) -> str:
    """Make ``version`` active; says what was active before."""
    with _redis_errors():
        before = registry.active_version_name()
        info = registry.promote(version, reason=reason)
    if before == info.version:
        return f"{info.version} was already active"
    return f"{info.version} is now active" + (f" (was {before})" if before else "")


def models_rollback(registry: ModelRegistry, *, reason: str = "manual rollback (cli)") -> str:
    """Re-activate the previously active version."""
    with _redis_errors():
        before = registry.active_version_name()
        info = registry.rollback(reason=reason)
    return f"rolled back to {info.version}" + (f" ({before} is now rejected)" if before else "")


def models_gc(
    registry: ModelRegistry,
    vectors: RedisVectorStore,
    policy: RetentionPolicy,
    *,
    embedding_grace_s: float,
    dry_run: bool = False,
) -> list[str]:
    """Apply retention to the registry and the embedding versions; one line per version.

    Embedding versions that a kept model version was trained on are kept too, so a
    rollback never lands on a model whose item vectors are gone.
    """
    verb = "would delete" if dry_run else "deleted"
    with _redis_errors():
        plan = registry.collect_garbage(policy, dry_run=dry_run)
        kept = {
            v.embedding_version
            for v in registry.list_versions()
            if v.version in plan.keep and v.embedding_version
        }
        embeddings = vectors.collect(embedding_grace_s, protect=kept, dry_run=dry_run)
    lines = [
        f"registry (keep the newest {policy.keep_candidates}, and versions active within "
        f"{policy.keep_active_s:g} s):"
    ]
    lines += [f"  keep    {name:<9} {why}" for name, why in sorted(plan.keep.items())]
    lines += [f"  {verb} {name} (artifact and Redis entries)" for name in plan.delete]
    lines.append(f"embedding versions (grace {embedding_grace_s:g} s):")
    for version, what in sorted(embeddings.items()):
        lines.append(
            f"  {verb} {version} (vectors and metadata)"
            if what == "delete"
            else f"  keep    {version}  {what}"
        )
    return lines
