"""The model registry in Redis: every checkpoint a version, an active pointer that promote
and rollback move atomically (with pub/sub), and the auto-promotion policy.
"""

from __future__ import annotations

from driftrec.online_update.registry.promotion import ActiveSubscription, PromotionPolicy
from driftrec.online_update.registry.retention import GcPlan, RetentionPolicy
from driftrec.online_update.registry.versions import (
    ModelRegistry,
    RegistryError,
    RegistryEvent,
    SameWindow,
    VersionInfo,
    open_registry,
)

__all__ = [
    "ActiveSubscription",
    "GcPlan",
    "ModelRegistry",
    "PromotionPolicy",
    "RegistryError",
    "RegistryEvent",
    "RetentionPolicy",
    "SameWindow",
    "VersionInfo",
    "open_registry",
]
