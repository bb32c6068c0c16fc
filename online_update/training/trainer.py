"""The incremental trainer: the one writer of a model, fed labelled examples.

Transport-free: the faust agent (stream/train_agent.py) hands it raw messages of
the examples topic with their offsets and acks them once ``checkpoint`` has made
their effect durable. Exactly-once *effect* on an at-least-once stream:

- a message at or below the checkpoint's offset was already applied (skipped);
- an example whose impression id was applied recently is a re-emission from a
  restarted joiner (skipped); the ids of recently applied examples are saved in
  the checkpoint with the model, so both checks survive a crash together.

Offsets move only once the batch they cover is learned: if learning raises (Redis
unreachable while reading item vectors, say), the same messages are taken again.

Each checkpoint is a file of its own; ``CheckpointPointer`` makes it the one to resume
from only while this trainer's owner epoch is the newest (``resume`` claims a new one),
so a worker that lost the examples partition cannot overwrite its successor's work
(``FencedOut``). Every checkpoint becomes a registry version; auto-promotion decides
whether it goes live (see online_update/registry/promotion.py).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from driftrec.core import DeadLetter, DriftrecError, Example, dead_letter, decode_examples
from driftrec.features import CLOCK_FEATURES, DENSE_FEATURES, FeatureEncoder, stable_hash
from driftrec.models import Batch
from driftrec.online_update.embeddings import RedisVectorStore
from driftrec.online_update.learning import (
    CheckpointError,
    LearnerConfig,
    OnlineLearner,
    StepResult,
    label_free_drift,
    load_checkpoint,
    read_extra,
    roc_auc,
    save_checkpoint,
)
from driftrec.online_update.registry import ModelRegistry, PromotionPolicy, SameWindow, VersionInfo
from driftrec.online_update.training.pointer import CheckpointPointer
from driftrec.online_update.training.text_switch import adopt_embedding_version, paired_sample

__all__ = [
    "FencedOut",
    "PendingCheckpoint",
    "RecentIds",
    "Trainer",
    "TrainerBatch",
]

log = logging.getLogger(__name__)


class FencedOut(DriftrecError):
    """Another worker claimed this trainer's model since this one resumed: stop writing."""


@dataclass
class PendingCheckpoint:
    """A copy of everything a checkpoint holds, taken between two batches."""

    learner: OnlineLearner
    offsets: dict[str, int]
    applied: torch.Tensor
    embedding_version: str
    window: list[tuple[Batch, np.ndarray]]


class RecentIds:
    """The last ``capacity`` applied example ids, as stable 64-bit hashes."""

    def __init__(self, capacity: int = 1_000_000) -> None:
        self.capacity = capacity
        self._order: deque[int] = deque()
        self._set: set[int] = set()

    def __contains__(self, key: int) -> bool:
        return key in self._set

    def add(self, key: int) -> None:
        self._order.append(key)
        self._set.add(key)
        if len(self._order) > self.capacity:
            self._set.discard(self._order.popleft())

    def to_tensor(self) -> torch.Tensor:
        return torch.tensor(list(self._order), dtype=torch.int64)

    @classmethod
    def from_tensor(cls, values: torch.Tensor, capacity: int = 1_000_000) -> RecentIds:
        ids = cls(capacity)
        for key in values.tolist():
            ids.add(int(key))
        return ids


@dataclass
class TrainerBatch:
    """Examples ready to learn from, and what the agent must dead-letter or skip."""

    examples: list[Example] = field(default_factory=list)
    produced_at: list[float] = field(default_factory=list)  # wall time each example was emitted
    dead_letters: list[DeadLetter] = field(default_factory=list)
    skipped_offsets: int = 0
    skipped_duplicates: int = 0
    offset_gaps: int = 0  # jumps past the next offset (never expected)
    last_offsets: dict[int, int] = field(default_factory=dict)


class Trainer:
    """Dedupe, vectorise, learn, checkpoint, publish; see the module docstring."""

    def __init__(
        self,
        *,
        learner_config: LearnerConfig,
        registry: ModelRegistry,
        vectors: RedisVectorStore,
        checkpoint_dir: Path,
        pointer: CheckpointPointer,
        topic: str,
        policy: PromotionPolicy | None = None,
    ) -> None:
        self.registry = registry
        self.vectors = vectors
        self.checkpoint_dir = checkpoint_dir
        self.pointer = pointer
        self.epoch: int | None = None  # owner epoch, claimed by ``resume``
        self.checkpoint_path: Path | None = None  # the current checkpoint, once there is one
        self.topic = topic
        self.policy = policy or PromotionPolicy()
        self.learner = OnlineLearner(learner_config)
        #: The learner the settings ask for; a resumed checkpoint keeps its own (see resume).
        self.learner_config = learner_config
        self.text_dim = learner_config.model.text_dim
        self.encoder = FeatureEncoder(self.text_dim)
        self.offsets: dict[int, int] = {}  # partition -> last applied offset
        self.applied = RecentIds()
        self.parent: str | None = None
        self.freshness: deque[float] = deque(maxlen=20_000)
        self.offset_gaps = 0  # offset jumps seen since this trainer was built
        self.last_checkpoint_at = time.monotonic()
        self.examples_at_checkpoint = 0
        self.last_version: VersionInfo | None = None
        #: The most recent examples with this learner's prequential click predictions, so a
        #: new version is compared with the active one on the same examples.
        self.window: deque[tuple[Batch, np.ndarray]] = deque()
        self.window_rows = 0
        self.window_size = 5000
        self._active_cache: tuple[str, OnlineLearner] | None = None
        #: The window the active version was published with: label-free drift compares
        #: the current window's inputs and predictions with it.
        self.reference: Reference | None = None
        #: The windows of this trainer's last published versions, so the reference can
        #: follow a manual promote or a rollback to one of them.
        self.published: OrderedDict[str, Reference] = OrderedDict()
        #: The embedding version this learner trains in; never simply "the active one".
        self.embedding_version: str | None = vectors.active_version()

    # -- recovery ---------------------------------------------------------------------------

    def resume(self) -> bool:
        """Claim the model (fencing out earlier owners), then continue from its current
        checkpoint, if there is one."""
        self.epoch = self.pointer.claim()
        current = self.pointer.current()
        if current is None:
            return False
        path = Path(current)
        if not path.exists():
            raise CheckpointError(
                f"the current checkpoint {path} is missing: the trainer's data directory "
                "must be shared by every worker that can run the trainer"
            )
        learner, meta = load_checkpoint(path)
        self._warn_if_settings_differ(learner.config)
        extra = read_extra(path)
        self.checkpoint_path = path
        self.learner = learner
        self.offsets = {
            int(key.rpartition(":")[2]): offset
            for key, offset in meta.offsets.items()
            if key.rpartition(":")[0] == self.topic
        }
        self.applied = RecentIds.from_tensor(
            extra.get("applied", torch.empty(0, dtype=torch.int64))
        )
        self.examples_at_checkpoint = learner.examples_seen
        self.embedding_version = meta.embedding_version or self.vectors.active_version()
        self._set_text_dim(learner.config.model.text_dim)
        active = self.registry.active()
        self.parent = active.version if active else None
        log.info(
            "trainer resumed at offsets %s with %d examples seen",
            self.offsets,
            learner.examples_seen,
        )
        return True

    # -- the hot path ---------------------------------------------------------------------

    def _warn_if_settings_differ(self, resumed: LearnerConfig) -> None:
        """A checkpoint's state only fits its own config, so the trainer continues with it;
        say so when the settings ask for another learner (the text width aside: it follows
        the embedding version)."""
        asked = dataclasses.replace(
            self.learner_config,
            model=dataclasses.replace(self.learner_config.model, text_dim=resumed.model.text_dim),
        )
        if asked.fingerprint() != resumed.fingerprint():
            log.warning(
                "resumed a checkpoint of learner %s while the settings give learner %s; "
                "training continues with the checkpoint's (use a new DRIFTREC_APP_ID or data "
                "directory to train the settings' learner from scratch)",
                resumed.fingerprint(),
                asked.fingerprint(),
            )

    def prepare(self, messages: Sequence[tuple[int, int, bytes | None, float]]) -> TrainerBatch:
        """(partition, offset, value, produced_at) messages -> examples not yet applied.

        A message holds one example or a pack of them (``ExamplePack``); an invalid
        example is dead-lettered alone, with its message's offset and its index."""
        out = TrainerBatch()
        batch_ids: set[int] = set()
        topic = self.topic
        for partition, offset, value, produced_at in messages:
            read = max(out.last_offsets.get(partition, -1), self.offsets.get(partition, -1))
            if read >= 0 and offset > read + 1:
                # Never expected (no transactions, no compaction on the examples topic):
                # messages this model will never learn, e.g. deleted by retention first.
                log.warning(
                    "examples partition %d: offset jumped from %d to %d; %d messages skipped",
                    partition,
                    read,
                    offset,
                    offset - read - 1,
                )
                out.offset_gaps += 1
            if offset > out.last_offsets.get(partition, -1):
                out.last_offsets[partition] = offset
            if offset <= self.offsets.get(partition, -1):
                out.skipped_offsets += 1
                continue
            examples, invalid = decode_examples(value or b"")
            for _, reason, excerpt in invalid:
                out.dead_letters.append(
                    dead_letter(reason, "trainer", topic, partition, offset, excerpt)
                )
            for example in examples:
                key = stable_hash(example.impression.event_id, "example")
                if key in self.applied or key in batch_ids:
                    out.skipped_duplicates += 1
                    continue
                batch_ids.add(key)
                out.examples.append(example)
                out.produced_at.append(produced_at)
        return out

    def _set_text_dim(self, dim: int) -> None:
        if dim != self.text_dim:
            self.text_dim = dim
            self.encoder = FeatureEncoder(dim)

    def follow_embedding_version(self) -> str | None:
        """Move the learner to the active embedding version if it changed (between batches).

        Returns how the switch was made, or None when there was nothing to do.
        """
        active = self.vectors.active_version()
        if active is None or active == self.embedding_version:
            return None
        described = self.vectors.describe(active) or {}
        new_dim = int(described.get("dim", self.text_dim))
        old = self.embedding_version
        pairs = paired_sample(self.vectors, old, active, self.text_dim, new_dim) if old else None
        self.learner, report = adopt_embedding_version(self.learner, new_dim, pairs=pairs)
        self._set_text_dim(new_dim)
        self.embedding_version = active
        log.warning("trainer moved from embedding version %s to %s: %s", old, active, report)
        return str(report)

    def text_lookup(self, item_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        if self.embedding_version is None:
            empty = np.zeros((len(item_ids), self.text_dim), np.float32)
            return empty, np.zeros(len(item_ids), bool)
        return self.vectors.get(self.embedding_version, item_ids, self.text_dim)

    def learn(self, batch: TrainerBatch) -> StepResult | None:
        """Apply the batch (blocking torch work: call it from an executor); its offsets
        count as done only once it is learned."""
        result = None
        if batch.examples:
            self.follow_embedding_version()
            tensors = self.encoder.examples_to_batch(batch.examples, self.text_lookup)
            result = self.learner.learn_many(tensors)
            self._remember(tensors, result.predictions["click"])
            for example in batch.examples:
                self.applied.add(stable_hash(example.impression.event_id, "example"))
            now = time.time()
            self.freshness.extend(now - t for t in batch.produced_at)
        for partition, offset in batch.last_offsets.items():
            self.offsets[partition] = max(offset, self.offsets.get(partition, -1))
        self.offset_gaps += batch.offset_gaps
        return result

    def _remember(self, batch: Batch, click: np.ndarray) -> None:
        self.window.append((batch, np.asarray(click, dtype=np.float64)))
        self.window_rows += len(batch)
        while self.window and self.window_rows - len(self.window[0][0]) >= self.window_size:
            self.window_rows -= len(self.window.popleft()[0])

    def same_window(
        self, window: Sequence[tuple[Batch, np.ndarray]] | None = None
    ) -> SameWindow | None:
        """Click AUC of this learner (prequential) and of the active version on the same
        recent examples (``window``: a copy taken with a checkpoint), or None when they
        cannot be compared (different text space)."""
        window = self.window if window is None else window
        active = self.registry.active()
        if (
            active is None
            or not window
            or active.embedding_version != (self.embedding_version or "")
        ):
            return None
        if self._active_cache is None or self._active_cache[0] != active.version:
            learner, _ = load_checkpoint(self.registry.open_artifact(active.version))
            self._active_cache = (active.version, learner)
        batch = Batch.concat([b for b, _ in window])
        if batch.click is None:
            return None
        labels = batch.click.numpy()
        mine = np.concatenate([p for _, p in window])
        theirs = self._active_cache[1].predict_many(batch)["click"]
        return (
            active.version,
            {"click.auc": roc_auc(labels, mine)},
            {"click.auc": roc_auc(labels, theirs)},
        )

    # -- durability -----------------------------------------------------------------------

    def checkpoint_due(self, every_examples: int, every_s: float) -> bool:
        fresh = self.learner.examples_seen - self.examples_at_checkpoint
        return fresh >= every_examples or (
            fresh > 0 and time.monotonic() - self.last_checkpoint_at >= every_s
        )

    def checkpoint(self) -> VersionInfo:
        """Write the checkpoint (model + offsets + applied ids), make it current unless
        fenced out (``FencedOut``), publish it, maybe promote it."""
        return self.write_checkpoint(self.begin_checkpoint())

    def begin_checkpoint(self) -> PendingCheckpoint:
        """Copy what a checkpoint holds, between two batches (fast: an in-memory copy);
        ``write_checkpoint`` can then run in another thread while learning goes on."""
        if self.epoch is None:
            raise FencedOut("the trainer writes checkpoints only after `resume` claimed it")
        self.last_checkpoint_at = time.monotonic()
        self.examples_at_checkpoint = self.learner.examples_seen
        return PendingCheckpoint(
            learner=copy.deepcopy(self.learner),
            offsets={f"{self.topic}:{p}": o for p, o in sorted(self.offsets.items())},
            applied=self.applied.to_tensor(),
            embedding_version=self.embedding_version or "",
            window=list(self.window),
        )

    def write_checkpoint(self, pending: PendingCheckpoint) -> VersionInfo:
        """Write ``pending`` to a file of its own, make it current (``FencedOut`` if
        another worker claimed the model since), publish it, maybe promote it. Safe to
        retry after a Redis failure."""
        if self.epoch is None:
            raise FencedOut("the trainer writes checkpoints only after `resume` claimed it")
        embedding_version = pending.embedding_version
        name = f"{pending.learner.examples_seen:012d}-{uuid.uuid4().hex[:8]}.pt"
        path = self.checkpoint_dir / name
        meta = save_checkpoint(
            pending.learner,
            path,
            offsets=pending.offsets,
            embedding_version=embedding_version,
            extra={"applied": pending.applied},
        )
        written_under = self.pointer.advance(self.epoch, str(path), pending.offsets)
        if written_under is None:
            path.unlink(missing_ok=True)
            raise FencedOut(f"owner epoch {self.epoch} of this trainer is no longer the newest")
        if written_under != self.epoch:  # Redis restarted empty: its registry went with it
            self.epoch, self.parent = written_under, None
            self.published.clear()
        previous, self.checkpoint_path = self.checkpoint_path, path
        if previous is not None:
            self._drop_checkpoints_before(previous)
        info = self.registry.publish(
            path,
            parent=self.parent,
            examples_seen=meta.examples_seen,
            offsets=meta.offsets,
            metrics=meta.metrics,
            embedding_version=embedding_version,
            config_fingerprint=meta.fingerprint,
        )
        if pending.window:
            self.published[info.version] = Reference.of(info.version, pending.window)
            while len(self.published) > _PUBLISHED_WINDOWS:
                self.published.popitem(last=False)
        if self.registry.maybe_promote(info, self.policy, self.same_window(pending.window)):
            self.parent = info.version
        self._follow_active()
        self.last_version = info
        return info

    def _follow_active(self) -> None:
        """Make the active version's window the reference, where this trainer still has
        it: after an automatic promotion, a manual promote or a rollback. A version whose
        window is gone (older, or another trainer's) leaves the reference as it was,
        and the status names the version the reference belongs to."""
        active = self.registry.active_version_name()
        if active is not None and active in self.published:
            self.reference = self.published[active]

    def _drop_checkpoints_before(self, previous: Path) -> None:
        """Keep the current and the previous checkpoint (a restart mid-switch may need
        it); files written later than ``previous`` may be a successor's, so they stay."""
        with contextlib.suppress(FileNotFoundError):
            cutoff = previous.stat().st_mtime
            for old in self.checkpoint_dir.glob("*.pt"):
                if old != previous and old.stat().st_mtime < cutoff:
                    old.unlink(missing_ok=True)

    def status(self) -> dict[str, Any]:
        """What `driftrec watch` shows: metrics, alarms, freshness, checkpoint."""
        fresh = np.array(self.freshness) if self.freshness else np.zeros(1)
        summary = {k: (None if v != v else round(v, 5)) for k, v in self.learner.summary().items()}
        return {
            # The learner's fingerprint: the one `driftrec eval` reports for these settings.
            "learner": self.learner.config.fingerprint(),
            "examples_seen": self.learner.examples_seen,
            "offsets": {str(p): o for p, o in sorted(self.offsets.items())},
            "metrics": summary,
            "alarms": [a.to_dict() for a in self.learner.alarms[-20:]],
            "freshness_p50_s": round(float(np.percentile(fresh, 50)), 4),
            "freshness_p95_s": round(float(np.percentile(fresh, 95)), 4),
            "checkpoint": self.last_version.version if self.last_version else None,
            "offset_gaps": self.offset_gaps,
            "embedding_version": self.embedding_version,
            "label_free": self.label_free(),
        }

    def label_free(self) -> dict[str, Any] | None:
        """Inputs and predicted click probabilities of the recent window against the
        window of the last promotion (None before the first promotion)."""
        reference, window = self.reference, list(self.window)
        if reference is None or not window:
            return None
        current = Reference.of(reference.version, window)
        drift = label_free_drift(
            reference.dense[:, _POPULATION],
            current.dense[:, _POPULATION],
            reference.click,
            current.click,
            [DENSE_FEATURES[j] for j in _POPULATION],
        )
        return {"reference_version": reference.version, **drift.model_dump()}


#: The dense columns label-free drift compares (not the clock's: see ``CLOCK_FEATURES``).
_POPULATION = [j for j, name in enumerate(DENSE_FEATURES) if name not in CLOCK_FEATURES]

#: Published versions whose windows a trainer keeps (about 250 kB each).
_PUBLISHED_WINDOWS = 16


@dataclass(frozen=True)
class Reference:
    """The dense inputs and prequential click predictions of a window of examples."""

    version: str
    dense: np.ndarray
    click: np.ndarray

    @classmethod
    def of(cls, version: str, window: Sequence[tuple[Batch, np.ndarray]]) -> Reference:
        return cls(
            version,
            np.concatenate([b.dense.numpy() for b, _ in window]),
            np.concatenate([p for _, p in window]),
        )
