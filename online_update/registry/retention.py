"""Which registry versions to keep, and the script that deletes one safely.

A trainer publishes a version per checkpoint (every 30 s by default), each an artifact
of tens of MB, so the registry must forget. ``plan`` keeps, and says why:

- the **active** version, and the **previous** one (the head of the activation history,
  where ``rollback`` goes): never deleted, whatever the policy says;
- the **newest** ``keep_candidates`` versions (the trainer's recent candidates, and its
  parent);
- every version that was **active within** ``keep_active_s`` (a version records
  ``inactive_since`` when a promotion or rollback replaces it), so rollback can walk
  back through that period.

Everything else is deleted: its Redis hash, its index entry and its place in the
activation history (so rollback skips it) in one Lua script that refuses when the version
became active or the previous one meanwhile, then its artifact file. A version's
``parent`` may name a deleted version.

>>> from datetime import datetime, timedelta, timezone
>>> now = datetime(2024, 1, 1, tzinfo=timezone.utc)
>>> rows = [("v000001", None), ("v000002", now - timedelta(hours=2)),
...         ("v000003", now - timedelta(minutes=5)), ("v000004", None), ("v000005", None)]
>>> p = plan(rows, active="v000005", previous="v000003",
...          policy=RetentionPolicy(keep_candidates=1, keep_active_s=3600), now=now)
>>> p.keep
{'v000005': 'active', 'v000003': 'previous'}
>>> p.delete
['v000001', 'v000002', 'v000004']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from driftrec.core import DriftrecConfig
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DELETE_SCRIPT", "GcPlan", "RetentionPolicy", "plan"]

# ARGV: prefix, version. Deletes the version's hash, index entry and history entries
# unless it is the active version or the history head. Returns 'ok' or why it refused.
DELETE_SCRIPT = """
local p, version = ARGV[1], ARGV[2]
if redis.call('GET', p .. 'active') == version then return 'active' end
if redis.call('LINDEX', p .. 'history', 0) == version then return 'previous' end
redis.call('DEL', p .. 'version:' .. version)
redis.call('ZREM', p .. 'index', version)
redis.call('LREM', p .. 'history', 0, version)
return 'ok'
"""


class RetentionPolicy(BaseModel):
    """How much of the registry to keep (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    keep_candidates: int = Field(5, ge=1, description="The newest N versions are kept.")
    keep_active_s: float = Field(
        3600.0, ge=0, description="Versions active within this many seconds are kept."
    )

    @classmethod
    def from_config(cls, config: DriftrecConfig) -> RetentionPolicy:
        return cls(
            keep_candidates=config.registry_keep_candidates,
            keep_active_s=config.registry_keep_active_s,
        )


@dataclass
class GcPlan:
    """Versions to keep (name -> why) and to delete (oldest first)."""

    keep: dict[str, str] = field(default_factory=dict)
    delete: list[str] = field(default_factory=list)


def plan(
    versions: Sequence[tuple[str, datetime | None]],
    *,
    active: str | None,
    previous: str | None,
    policy: RetentionPolicy,
    now: datetime,
) -> GcPlan:
    """Apply ``policy`` to ``versions`` (name, inactive_since), oldest first."""
    out = GcPlan()
    if active is not None:
        out.keep[active] = "active"
    if previous is not None:
        out.keep.setdefault(previous, "previous")
    for name, _ in versions[-policy.keep_candidates :]:
        out.keep.setdefault(name, "newest")
    cutoff = now - timedelta(seconds=policy.keep_active_s)
    for name, inactive_since in versions:
        if inactive_since is not None and inactive_since >= cutoff:
            out.keep.setdefault(name, f"active until {inactive_since.isoformat()}")
    out.delete = [name for name, _ in versions if name not in out.keep]
    return out
