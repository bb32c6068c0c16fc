"""The model registry: versioned trainer checkpoints in an artifact directory, indexed in Redis.

Redis layout under ``prefix`` (default ``driftrec:registry:``):

- ``seq``: INCR counter; version *n* is named ``v{n:06d}`` (monotonic, gaps allowed).
- ``version:<name>``: hash with ``meta`` (``VersionInfo`` as JSON, never pickle),
  ``status`` (candidate, active, retired, rejected) and, once a switch replaced it as
  the active version, ``inactive_since`` (ISO time).
- ``index``: sorted set of version names scored by number.
- ``active``: the name of the active version; ``history``: list of previously active
  versions, newest first (``rollback`` pops it, so repeated rollbacks walk back).
- channel ``active``: one JSON ``ActiveChange`` per switch of the active version.
- ``events``: a stream (bounded to about ``events_max_len`` entries) of what happened,
  for the dashboard's markers: ``checkpoint`` (published), ``promote``, ``auto-promote``,
  ``rollback``; written in the same transaction or script as the change itself.

Each switch (pointer, statuses, history, publish) is one Lua script from
online_update.promotion, so it is atomic: readers never see a half-done switch and
concurrent promotes serialise. The scripts build key names from the prefix, so this
needs a single Redis (or a replica set), not Redis Cluster.

Statuses: ``candidate`` (published, never active), ``active``, ``retired`` (replaced
by a promotion; a rollback may bring it back) and ``rejected`` (rolled back from).

Retention (online_update.registry.retention): with a ``RetentionPolicy`` every publish
ends with ``collect_garbage``, which deletes the versions the policy does not keep, their
Redis entries and artifact files together; the active and the previous version are never
deleted.

>>> version_name(42)
'v000042'
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeAlias, cast

import redis
from driftrec.core import DriftrecConfig, DriftrecError
from driftrec.online_update.registry.promotion import (
    ACTIVATE_SCRIPT,
    ROLLBACK_SCRIPT,
    ActiveChange,
    ActiveSubscription,
    PromotionPolicy,
    decide,
)
from driftrec.online_update.registry.retention import (
    DELETE_SCRIPT,
    GcPlan,
    RetentionPolicy,
    plan,
)
from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError, field_validator

__all__ = [
    "ActiveChange",
    "ActiveSubscription",
    "ModelRegistry",
    "RegistryError",
    "RegistryEvent",
    "SameWindow",
    "Status",
    "VersionInfo",
    "open_registry",
    "version_name",
]

_log = logging.getLogger(__name__)

Status = Literal["candidate", "active", "retired", "rejected"]
HISTORY_LIMIT = 1000
_RETRIES = 20
#: The event kinds that make a version active.
_SWITCHES = ("promote", "auto-promote", "rollback")
_CHUNK = 1 << 20


#: (active version, candidate metrics, active version's metrics) on the same examples.
SameWindow: TypeAlias = tuple[str, Mapping[str, float | None], Mapping[str, float | None]]


class RegistryError(DriftrecError):
    """An unknown version, a corrupted artifact, or a rollback with nowhere to go."""


class VersionInfo(BaseModel):
    """Everything the registry knows about one published checkpoint."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str
    created_at: AwareDatetime
    parent: str | None
    examples_seen: int
    offsets: dict[str, int]
    metrics: dict[str, float | None]
    embedding_version: str
    config_fingerprint: str
    sha256: str
    artifact: str
    status: Status = "candidate"
    #: When a switch last replaced it as the active version (None: active or never was).
    inactive_since: AwareDatetime | None = None

    @field_validator("metrics")
    @classmethod
    def _nan_is_none(cls, metrics: dict[str, float | None]) -> dict[str, float | None]:
        # JSON has no NaN; storing None keeps publish()'s result equal to get()'s.
        return {k: None if v is None or math.isnan(v) else v for k, v in metrics.items()}


class RegistryEvent(BaseModel):
    """One entry of the registry's ``events`` stream; ``ms`` is Redis's clock."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    ms: int
    kind: Literal["checkpoint", "promote", "auto-promote", "rollback"]
    version: str
    previous: str | None = None
    reason: str = ""
    examples_seen: int | None = None


def version_name(number: int) -> str:
    """The name of version ``number``."""
    return f"v{number:06d}"


def _text(value: bytes | str) -> str:
    # Works with clients created with or without decode_responses=True.
    return value.decode() if isinstance(value, bytes) else value


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class ModelRegistry:
    """Publish, look up, promote and roll back model versions (thread-safe, synchronous)."""

    def __init__(
        self,
        redis_client: redis.Redis,
        artifact_dir: Path,
        prefix: str = "driftrec:registry:",
        *,
        retention: RetentionPolicy | None = None,
        events_max_len: int = 10_000,
    ) -> None:
        self.redis = redis_client
        #: The events stream is trimmed to about this many entries (a checkpoint every
        #: 30 s is about 3,000 a day).
        self.events_max_len = events_max_len
        self.artifact_dir = Path(artifact_dir)
        self.prefix = prefix
        self.channel = f"{prefix}active"
        #: When set, every ``publish`` ends with ``collect_garbage(retention)``.
        self.retention = retention
        self._activate = redis_client.register_script(ACTIVATE_SCRIPT)
        self._rollback = redis_client.register_script(ROLLBACK_SCRIPT)
        self._delete = redis_client.register_script(DELETE_SCRIPT)

    def _key(self, version: str) -> str:
        return f"{self.prefix}version:{version}"

    # ---- publishing -------------------------------------------------------------------

    def publish(
        self,
        checkpoint_path: Path,
        *,
        parent: str | None,
        examples_seen: int,
        offsets: dict[str, int],
        metrics: dict[str, float | None],
        embedding_version: str,
        config_fingerprint: str,
    ) -> VersionInfo:
        """Copy ``checkpoint_path`` into the artifact dir as a new candidate version."""
        source = Path(checkpoint_path)
        if not source.is_file():
            raise RegistryError(f"no checkpoint file at {source}: save a checkpoint first")
        if parent is not None and not self._numbered(parent):
            raise RegistryError(f"parent version {parent} is not in this registry")
        try:  # validate before copying, so bad metadata leaves no orphan artifact
            draft = VersionInfo(
                version="",
                created_at=datetime.now(UTC),
                parent=parent,
                examples_seen=examples_seen,
                offsets=offsets,
                metrics=metrics,
                embedding_version=embedding_version,
                config_fingerprint=config_fingerprint,
                sha256="",
                artifact="",
            )
        except ValidationError as error:
            raise RegistryError(f"cannot publish {source}: {error}") from None
        self.artifact_dir.mkdir(parents=True, exist_ok=True)
        sha, tmp = self._copy(source)
        try:
            version = version_name(int(self.redis.incr(f"{self.prefix}seq")))
            # The digest in the name keeps registries that share a directory from colliding.
            target = self.artifact_dir / f"{version}-{sha[:12]}{source.suffix or '.bin'}"
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.artifact_dir)
        info = draft.model_copy(
            update={"version": version, "sha256": sha, "artifact": str(target.resolve())}
        )
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(
            self._key(version),
            mapping={
                "meta": info.model_dump_json(exclude={"status", "inactive_since"}),
                "status": "candidate",
            },
        )
        pipe.zadd(f"{self.prefix}index", {version: int(version[1:])})
        pipe.xadd(
            f"{self.prefix}events",
            {"kind": "checkpoint", "version": version, "examples_seen": examples_seen},
            maxlen=self.events_max_len,
            approximate=True,
        )
        pipe.execute()
        if self.retention is not None:
            try:  # the version is published; a failed clean-up is retried on the next one
                self.collect_garbage(self.retention)
            except (OSError, redis.RedisError) as error:
                _log.warning("registry retention failed, retried next publish: %s", error)
        return info

    def _numbered(self, version: str) -> bool:
        """Whether ``version`` is, or was before retention deleted it, in this registry."""
        if self.redis.exists(self._key(version)):
            return True
        name = _normalise(version)
        if not (name.startswith("v") and name[1:].isdigit()):
            return False
        return 0 < int(name[1:]) <= int(self.redis.get(f"{self.prefix}seq") or 0)

    def _copy(self, source: Path) -> tuple[str, Path]:
        """Copy to a temp file in the artifact dir (same filesystem, so os.replace is atomic)."""
        digest = hashlib.sha256()
        fd, name = tempfile.mkstemp(prefix=".publish.", suffix=".tmp", dir=self.artifact_dir)
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as out, source.open("rb") as src:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return digest.hexdigest(), tmp

    # ---- reading ----------------------------------------------------------------------

    def get(self, version: str) -> VersionInfo:
        """The version called ``version`` ("v000003"; "3" and "v3" are accepted too)."""
        name = _normalise(version)
        fields = self.redis.hgetall(self._key(name))
        if not fields:
            raise RegistryError(f"no version {version} in the registry: see `driftrec models list`")
        return _parse({_text(k): _text(v) for k, v in fields.items()})

    def list_versions(self) -> list[VersionInfo]:
        """Every version, oldest first."""
        # zrange's declared result also covers the withscores form.
        raw = cast("list[bytes | str]", self.redis.zrange(f"{self.prefix}index", 0, -1))
        names = [_text(n) for n in raw]
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(self._key(name))
        rows = pipe.execute()
        return [_parse({_text(k): _text(v) for k, v in row.items()}) for row in rows if row]

    def active_version_name(self) -> str | None:
        """The active version's name: one GET, cheap enough to poll."""
        value = self.redis.get(f"{self.prefix}active")
        return None if value is None else _text(value)

    def active(self) -> VersionInfo | None:
        """The active version, or None before the first promotion."""
        name = self.active_version_name()
        return None if name is None else self.get(name)

    def history(self) -> list[str]:
        """Previously active versions, newest first: where ``rollback`` goes next."""
        return [_text(v) for v in self.redis.lrange(f"{self.prefix}history", 0, -1)]

    def events(self, after: str = "-") -> list[RegistryEvent]:
        """The recorded events after stream id ``after`` ("-": all kept), oldest first."""
        start = "-" if after == "-" else f"({after}"
        # redis-py types xrange loosely (None for pipelines); a direct call returns rows.
        rows = cast(
            "list[tuple[bytes | str, dict[bytes | str, bytes | str]]]",
            self.redis.xrange(f"{self.prefix}events", min=start),
        )
        out = []
        for raw_id, raw in rows:
            fields = {_text(k): _text(v) for k, v in raw.items()}
            entry_id = _text(raw_id)
            out.append(
                RegistryEvent(
                    id=entry_id,
                    ms=int(entry_id.partition("-")[0]),
                    kind=cast("Any", fields["kind"]),
                    version=fields["version"],
                    previous=fields.get("previous") or None,
                    reason=fields.get("reason", ""),
                    examples_seen=int(fields["examples_seen"])
                    if "examples_seen" in fields
                    else None,
                )
            )
        return out

    def last_activation(self, version: str, *, batch: int = 100) -> int | None:
        """When (ms, Redis's clock) ``version`` last became active, from the events
        stream read newest first; None when no kept event says so."""
        key, end = f"{self.prefix}events", "+"
        while True:
            rows = cast(
                "list[tuple[bytes | str, dict[bytes | str, bytes | str]]]",
                self.redis.xrevrange(key, max=end, count=batch),
            )
            for raw_id, raw in rows:
                fields = {_text(k): _text(v) for k, v in raw.items()}
                if fields.get("version") == version and fields.get("kind") in _SWITCHES:
                    return int(_text(raw_id).partition("-")[0])
            if len(rows) < batch:
                return None
            end = f"({_text(rows[-1][0])}"

    def open_artifact(self, version: str) -> Path:
        """The artifact's path, after checking its sha256 against the published one."""
        info = self.get(version)
        path = Path(info.artifact)
        if not path.is_file():
            raise RegistryError(
                f"artifact {path} of {info.version} is missing: re-publish or roll back"
            )
        if _sha256(path) != info.sha256:
            raise RegistryError(
                f"artifact {path} of {info.version} sha256 mismatch: re-publish or roll back"
            )
        return path

    # ---- retention ----------------------------------------------------------------------

    def collect_garbage(
        self,
        policy: RetentionPolicy,
        *,
        dry_run: bool = False,
        now: datetime | None = None,
    ) -> GcPlan:
        """Delete the versions ``policy`` does not keep (Redis entries, then the artifact
        file); with ``dry_run`` only say which. Returns the plan (what was refused at
        the last moment, because it became active or previous meanwhile, is moved to
        ``keep``)."""
        versions = self.list_versions()
        head = self.redis.lindex(f"{self.prefix}history", 0)
        found = plan(
            [(v.version, v.inactive_since or _legacy_inactive(v)) for v in versions],
            active=self.active_version_name(),
            previous=None if head is None else _text(head),
            policy=policy,
            now=now or datetime.now(UTC),
        )
        if dry_run:
            return found
        artifacts = {v.version: Path(v.artifact) for v in versions}
        deleted = []
        for name in found.delete:
            outcome = _text(self._delete(args=[self.prefix, name]))
            if outcome != "ok":
                found.keep[name] = outcome
                continue
            artifacts[name].unlink(missing_ok=True)
            deleted.append(name)
        found.delete = deleted
        return found

    # ---- switching the active version -------------------------------------------------

    def promote(self, version: str, *, reason: str) -> VersionInfo:
        """Make ``version`` active (its artifact must verify); a no-op if it already is."""
        name = self.get(version).version
        self.open_artifact(name)
        self._switch(name, expected="*", reason=reason)
        return self.get(name)

    def maybe_promote(
        self,
        info: VersionInfo,
        policy: PromotionPolicy,
        same_window: SameWindow | None = None,
    ) -> bool:
        """Promote ``info`` if ``policy`` allows (see online_update.promotion); True if active.

        ``same_window`` is ``(active version, candidate metrics, active metrics)`` measured
        by the caller on the same recent examples; when it names the version that is
        active at decision time it replaces the metrics stored at publish time, which
        were measured on older windows (after a drift every new window looks worse).
        The switch is a compare-and-set on the active pointer: if another promotion lands
        between reading the active version and switching, the rule is applied again.
        """
        verified = False
        for _ in range(_RETRIES):
            current = self.active()
            if current is not None and current.version == info.version:
                return True
            if (
                current is not None
                and same_window is not None
                and same_window[0] == current.version
            ):
                decision = decide(same_window[1], same_window[2], policy)
            else:
                decision = decide(
                    info.metrics, None if current is None else current.metrics, policy
                )
            if not decision.promote:
                return False
            if not verified:
                self.open_artifact(info.version)
                verified = True
            expected = "" if current is None else current.version
            reason = f"auto: {decision.reason}"
            if self._switch(info.version, expected=expected, reason=reason, kind="auto-promote"):
                return True
        raise RegistryError("the active version kept changing during auto-promotion: retry")

    def rollback(self, *, reason: str = "rollback") -> VersionInfo:
        """Re-activate the previously active version; the one rolled back from is rejected."""
        for _ in range(_RETRIES):
            head = self.redis.lindex(f"{self.prefix}history", 0)
            if head is None:
                raise RegistryError(
                    "nothing to roll back to: no version was active before this one; "
                    "promote a version with `driftrec models promote <version>`"
                )
            target = _text(head)
            self.open_artifact(target)
            outcome, _ = self._rollback(
                args=[self.prefix, target, reason, _now(), self.events_max_len]
            )
            if _text(outcome) == "ok":
                return self.get(target)
        raise RegistryError("the activation history kept changing during rollback: retry")

    def _switch(self, version: str, *, expected: str, reason: str, kind: str = "promote") -> bool:
        """Run the activation script; False when the active version was not ``expected``."""
        outcome, _ = self._activate(
            args=[
                self.prefix,
                version,
                expected,
                reason,
                _now(),
                HISTORY_LIMIT,
                kind,
                self.events_max_len,
            ]
        )
        result = _text(outcome)
        if result == "missing":
            raise RegistryError(f"no version {version} in the registry: see `driftrec models list`")
        return result != "conflict"

    # ---- watching ---------------------------------------------------------------------

    def subscribe(self) -> ActiveSubscription:
        """A subscription to active-version changes, already confirmed by Redis."""
        return ActiveSubscription(self.redis, self.channel)


def _normalise(version: str) -> str:
    digits = version[1:] if version[:1] in {"v", "V"} else version
    return version_name(int(digits)) if digits.isdigit() else version


def _parse(fields: dict[str, str]) -> VersionInfo:
    data = json.loads(fields["meta"])
    data["status"] = fields.get("status", "candidate")
    data["inactive_since"] = fields.get("inactive_since")
    return VersionInfo.model_validate(data)


def _legacy_inactive(info: VersionInfo) -> datetime | None:
    """Versions retired before switches recorded the time: their creation (a lower bound)."""
    return info.created_at if info.status in ("retired", "rejected") else None


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)  # make the rename itself durable
    finally:
        os.close(fd)


def open_registry(config: DriftrecConfig, artifact_dir: Path | None = None) -> ModelRegistry:
    """The registry at ``config.redis_url`` under ``<redis_prefix>registry:``; artifacts
    default to ``<data_dir>/registry``; retention from the config's ``registry_keep_*``.
    The trainer, the server and the CLI all use this."""
    client = redis.Redis.from_url(config.redis_url)
    return ModelRegistry(
        client,
        artifact_dir or config.data_dir / "registry",
        prefix=f"{config.redis_prefix}registry:",
        retention=RetentionPolicy.from_config(config),
    )
