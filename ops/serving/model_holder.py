"""The model a server scores with, swapped for the registry's active version in the background.

``ModelHolder.current`` is one reference to an immutable ``LoadedModel``. A request reads
it once and uses that object to the end, so the version a response names is the one
that scored it. A single loader thread replaces the reference; a request never waits for
a load and never sees a half-loaded model (assigning a reference is atomic in CPython).

When does it swap, precisely:

- The holder serves the registry's active pointer (``ModelRegistry.active_version_name``).
  It re-reads the pointer when a change is announced on the registry's pub/sub channel
  (``ActiveSubscription``) and every ``poll_s`` seconds regardless, because pub/sub is
  at-most-once. The message only wakes it; what it loads is what the pointer says then,
  so a late or duplicated announcement cannot move it anywhere.
- A version is loaded fully (artifact sha256 checked by ``open_artifact``, checkpoint read
  with ``weights_only``, one warm-up prediction) and swapped in only if the pointer still
  names it when the load completes; otherwise it is dropped and the new pointer is loaded.
- Hence the served version number goes down exactly when the pointer went down: a
  rollback, or an operator's explicit promote of an older version. After the pointer
  moved, every response names the old version until the new one is in, then the new one.
- A version that fails to load (corrupt artifact, wrong config) is logged, counted and
  retried after ``retry_s``; the server keeps serving what it has.

Text vectors: a model reads the embedding version it was trained with
(``VersionInfo.embedding_version``), or, when that is empty, the vector store's active
version, re-checked on every poll so a refresh reaches it without a model swap.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import redis
import torch
from driftrec.core import DriftrecError, ExampleFeatures, Impression
from driftrec.features import FeatureConfig, FeatureEncoder
from driftrec.online_update.embeddings import RedisVectorStore
from driftrec.online_update.learning import OnlineLearner, load_for_prediction
from driftrec.online_update.registry import ActiveSubscription, ModelRegistry, VersionInfo

__all__ = ["LoadedModel", "ModelHolder"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """A version ready to score: never mutated after the swap."""

    version: str
    info: VersionInfo
    learner: OnlineLearner
    encoder: FeatureEncoder
    #: The vector store version its text lookups read (None: no vectors anywhere yet).
    embedding_version: str | None

    @property
    def number(self) -> int:
        return int(self.version.lstrip("v"))


class ModelHolder:
    """Loads the registry's active version and swaps it in (see the module docstring)."""

    def __init__(
        self,
        registry: ModelRegistry,
        vectors: RedisVectorStore,
        *,
        feature_config: FeatureConfig | None = None,
        poll_s: float = 1.0,
        retry_s: float = 30.0,
        listen: bool = True,
        on_swap: Callable[[LoadedModel, LoadedModel | None], None] | None = None,
        on_failure: Callable[[str, str], None] | None = None,
    ) -> None:
        self.registry = registry
        self.vectors = vectors
        self.feature_config = feature_config or FeatureConfig()
        self.poll_s = poll_s
        self.retry_s = retry_s
        self.listen = listen
        self.on_swap = on_swap
        self.on_failure = on_failure
        self.swaps = 0
        self.active: str | None = None  # the pointer as last read
        self._registry_error: str | None = None
        self._load_error: str | None = None
        self._current: LoadedModel | None = None
        self._failed: dict[str, float] = {}  # version -> when it may be retried
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def current(self) -> LoadedModel | None:
        """The model to score with now; read it once per request."""
        return self._current

    # ---- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Load the active version now (nothing is being served yet), then follow it."""
        self._safe_sync()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="driftrec-model-holder", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        subscription: ActiveSubscription | None = None
        while not self._stop.is_set():
            if self.listen and subscription is None:
                try:
                    subscription = self.registry.subscribe()
                except (DriftrecError, redis.RedisError) as error:
                    _log.warning("no registry pub/sub (%s); polling every %ss", error, self.poll_s)
            self._safe_sync()
            if subscription is None:
                self._stop.wait(self.poll_s)
                continue
            try:
                self._wait_for_change(subscription)
            except (redis.RedisError, OSError, ValueError) as error:
                _log.warning("registry pub/sub dropped (%s); resubscribing", error)
                subscription.close()
                subscription = None
                self._stop.wait(self.poll_s)
        if subscription is not None:
            subscription.close()

    def _wait_for_change(self, subscription: ActiveSubscription) -> None:
        """Up to ``poll_s``; returns early on an announcement or ``stop()``."""
        deadline = time.monotonic() + self.poll_s
        while not self._stop.is_set() and (remaining := deadline - time.monotonic()) > 0:
            if subscription.poll(min(remaining, 0.1)) is not None:
                return

    def _safe_sync(self) -> None:
        try:
            self.sync()
        except redis.RedisError as error:  # keep serving what we have; Redis may come back
            self._registry_error = f"registry unreachable: {error}"
            _log.warning("model holder: %s", self._registry_error)
        except Exception:  # the follower thread must outlive any one bad step
            self._registry_error = "unexpected error while following the registry (see log)"
            _log.exception("model holder: %s", self._registry_error)

    @property
    def last_error(self) -> str | None:
        """Why the server is not serving the active version (None when it is)."""
        return self._registry_error or self._load_error

    # ---- one step -------------------------------------------------------------------

    def sync(self) -> bool:
        """Read the pointer once and, if it moved, load and swap; True when swapped."""
        target = self.registry.active_version_name()
        self.active, self._registry_error = target, None
        current = self._current
        if target is None or (current is not None and current.version == target):
            self._load_error = None  # e.g. rolled back from a version that failed to load
            self._refresh_embedding(current)
            return False
        if time.monotonic() < self._failed.get(target, 0.0):
            return False
        try:
            loaded = self.load(target)
        except (DriftrecError, RuntimeError, OSError) as error:
            self._failed[target] = time.monotonic() + self.retry_s
            self._load_error = f"cannot load {target}: {error}"
            _log.error("model holder: %s (still serving %s)", self._load_error, _name(current))
            if self.on_failure is not None:
                self.on_failure(target, str(error))
            return False
        # Swap only if it is still the active version: a rollback during the load wins.
        if self.registry.active_version_name() != target:
            return False
        self._current = loaded
        self.swaps += 1
        self._load_error = None
        self._failed.pop(target, None)
        _log.info("model holder: now serving %s (was %s)", target, _name(current))
        if self.on_swap is not None:
            self.on_swap(loaded, current)
        return True

    def load(self, version: str) -> LoadedModel:
        """Verify, read and warm up ``version``; touches nothing that requests read."""
        path = self.registry.open_artifact(version)
        info = self.registry.get(version)
        learner, _ = load_for_prediction(path)
        encoder = FeatureEncoder(learner.config.model.text_dim, self.feature_config)
        model = LoadedModel(
            version=info.version,
            info=info,
            learner=learner,
            encoder=encoder,
            embedding_version=info.embedding_version or self.vectors.active_version(),
        )
        _warm_up(model)
        return model

    def _refresh_embedding(self, current: LoadedModel | None) -> None:
        if current is None or current.info.embedding_version:
            return
        active = self.vectors.active_version()
        if active != current.embedding_version and self._current is current:
            self._current = dataclasses.replace(current, embedding_version=active)


def _name(model: LoadedModel | None) -> str:
    return "nothing" if model is None else model.version


def _warm_up(model: LoadedModel) -> None:
    """One prediction, so the first request after the swap pays no first-call costs."""
    dim = model.encoder.text_dim
    impression = Impression(event_id="warm-up", user_id="u", item_id="i", ts=datetime.now(UTC))

    def no_text(ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        n = len(ids)
        return np.zeros((n, dim), np.float32), np.zeros(n, bool)

    batch = model.encoder.to_batch([impression], [ExampleFeatures()], no_text)
    with torch.inference_mode():
        model.learner.predict_many(batch)
