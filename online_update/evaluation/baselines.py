"""The systems ``driftrec eval`` runs side by side, behind one predict/learn interface.

Every system gets the same labelled ``Batch`` stream. The evaluator first calls
``predict_many`` on the batch with its labels removed (``strip_labels``), then
``learn_many`` on the labelled batch, so no system can see a label before it has
scored that row.

- ``OnlineSystem``: an ``OnlineLearner``, learning from every batch.
- ``StaticSystem``: the same learner, learning from the first ``train_examples``
  rows only, then frozen (it still predicts).
- ``PeriodicSystem``: the batch-retrain baseline. Every ``every`` examples it trains
  a fresh learner from scratch for ``epochs`` shuffled passes over the last
  ``window`` examples and predicts with that frozen model until the next retrain
  (with an untrained model before the first one).
- ``RiverClickSystem``: a river classifier (click task only), ``learn_one`` /
  ``predict_proba_one`` row by row on ``river_features`` (see there for what it gets).

>>> import torch
>>> from driftrec.models.synthetic import StreamSpec, SyntheticStream
>>> batch = SyntheticStream(StreamSpec(text_dim=4, n_dense=2)).batch(3)
>>> strip_labels(batch).has_labels, len(river_features(batch)[0])
(False, 7)
"""

from __future__ import annotations

import dataclasses
from collections import deque
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from driftrec.core import ConfigError
from driftrec.models import Batch
from driftrec.online_update.learning import LearnerConfig, OnlineLearner
from river import compose, facto, linear_model, optim, preprocessing

__all__ = [
    "EvalSystem",
    "OnlineSystem",
    "PeriodicSystem",
    "RiverClickSystem",
    "StaticSystem",
    "make_river_fm",
    "make_river_lr",
    "river_features",
    "strip_labels",
]


@runtime_checkable
class EvalSystem(Protocol):
    """What the evaluator drives: ``tasks`` names the predictions ``predict_many`` returns."""

    name: str
    tasks: tuple[str, ...]

    def predict_many(self, batch: Batch) -> dict[str, np.ndarray]: ...

    def learn_many(self, batch: Batch) -> None: ...


def strip_labels(batch: Batch) -> Batch:
    """The same rows without click, conversion and dwell (what ``predict_many`` gets)."""
    return dataclasses.replace(batch, click=None, conversion=None, dwell=None)


class OnlineSystem:
    """The driftrec learner: predict, then learn from every batch."""

    def __init__(self, name: str, learner: OnlineLearner) -> None:
        self.name = name
        self.learner = learner
        self.tasks = learner.config.model.task_names

    def predict_many(self, batch: Batch) -> dict[str, np.ndarray]:
        return self.learner.predict_many(batch)

    def learn_many(self, batch: Batch) -> None:
        self.learner.learn_many(batch)


class StaticSystem(OnlineSystem):
    """Learns from the first ``train_examples`` rows it is given, then never again."""

    def __init__(self, name: str, learner: OnlineLearner, train_examples: int) -> None:
        super().__init__(name, learner)
        if train_examples < 0:
            raise ConfigError(f"train_examples must be >= 0, got {train_examples}")
        self.train_examples = train_examples

    @property
    def frozen(self) -> bool:
        return self.learner.examples_seen >= self.train_examples

    def learn_many(self, batch: Batch) -> None:
        room = self.train_examples - self.learner.examples_seen
        if room > 0:
            self.learner.learn_many(batch if room >= len(batch) else batch.slice(0, room))


class PeriodicSystem:
    """Retrain from scratch every ``every`` examples on the last ``window`` (see module doc)."""

    def __init__(
        self,
        name: str,
        config: LearnerConfig,
        *,
        every: int,
        window: int,
        epochs: int,
        batch_size: int = 512,
        seed: int = 0,
    ) -> None:
        if min(every, window, epochs, batch_size) < 1:
            raise ConfigError("PeriodicSystem every, window, epochs and batch_size must be >= 1")
        self.name = name
        self.config = config
        self.tasks = config.model.task_names
        self.every, self.window, self.epochs, self.batch_size = every, window, epochs, batch_size
        self.seed = seed
        self.learner = OnlineLearner(config)  # untrained until the first retrain
        self.seen = 0
        #: Example counts at which a retrain happened (multiples of ``every``).
        self.retrained_at: list[int] = []
        self._recent: deque[Batch] = deque()
        self._recent_rows = 0

    def predict_many(self, batch: Batch) -> dict[str, np.ndarray]:
        return self.learner.predict_many(batch)

    def learn_many(self, batch: Batch) -> None:
        # Row by row in effect: a retrain falls exactly on every multiple of ``every``.
        start = 0
        while start < len(batch):
            due = self.every - self.seen % self.every
            stop = min(len(batch), start + due)
            self._remember(batch.slice(start, stop))
            self.seen += stop - start
            start = stop
            if self.seen % self.every == 0:
                self._retrain()

    def _remember(self, part: Batch) -> None:
        self._recent.append(part)
        self._recent_rows += len(part)
        while self._recent_rows - len(self._recent[0]) >= self.window:
            self._recent_rows -= len(self._recent.popleft())

    def _retrain(self) -> None:
        data = Batch.concat(list(self._recent))
        data = data.slice(max(0, len(data) - self.window), len(data))
        learner = OnlineLearner(self.config)
        rng = np.random.default_rng([self.seed, len(self.retrained_at)])
        for _ in range(self.epochs):
            order = torch.from_numpy(rng.permutation(len(data)))
            for lo in range(0, len(data), self.batch_size):
                learner.learn_many(_take(data, order[lo : lo + self.batch_size]))
        self.learner = learner
        self.retrained_at.append(self.seen)


def _take(batch: Batch, rows: torch.Tensor) -> Batch:
    def pick(value: torch.Tensor | None) -> torch.Tensor | None:
        return None if value is None else value[rows]

    return Batch(
        user=batch.user[rows],
        item=batch.item[rows],
        category=batch.category[rows],
        text=batch.text[rows],
        has_text=batch.has_text[rows],
        interest=batch.interest[rows],
        dense=batch.dense[rows],
        click=pick(batch.click),
        conversion=pick(batch.conversion),
        dwell=pick(batch.dwell),
    )


def river_features(batch: Batch) -> list[dict[str, float]]:
    """Per row: one-hot ``user=<h>``, ``item=<h>``, ``category=<h>`` (the hashed ids), the
    dense features ``dense<j>``, ``has_text`` and ``text_cos``, the cosine between the
    item text vector and the user interest vector (0 when either is missing).

    River gets this compact text summary instead of the raw text dimensions: with all
    384 MiniLM dimensions ``FMClassifier`` manages about 12 examples/s.
    """
    text = batch.text.double().numpy()
    interest = batch.interest.double().numpy()
    norms = np.linalg.norm(text, axis=1) * np.linalg.norm(interest, axis=1)
    dots = np.einsum("ij,ij->i", text, interest)
    cos = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
    dense = batch.dense.double().numpy()
    rows = []
    for user, item, cat, values, has, c in zip(
        batch.user.tolist(),
        batch.item.tolist(),
        batch.category.tolist(),
        dense.tolist(),
        batch.has_text.tolist(),
        cos.tolist(),
        strict=True,
    ):
        row = {f"user={user}": 1.0, f"item={item}": 1.0, f"category={cat}": 1.0}
        row.update({f"dense{j}": v for j, v in enumerate(values)})
        row["has_text"] = has
        row["text_cos"] = c
        rows.append(row)
    return rows


def _numeric_names(n_dense: int) -> tuple[str, ...]:
    return (*(f"dense{j}" for j in range(n_dense)), "has_text", "text_cos")


def _scaled(model: Any, n_dense: int) -> Any:
    # Standardise only the numeric features; one-hot ids pass through untouched (a
    # StandardScaler would map a key that is always 1.0 to 0). Not compose.Select: it
    # iterates a set, so feature order (and FM's latent initialisation) would follow
    # PYTHONHASHSEED and runs would differ in the fourth decimal.
    numeric = _numeric_names(n_dense)

    def pick(x: dict[str, float]) -> dict[str, float]:
        return {name: x[name] for name in numeric}

    union = compose.TransformerUnion(
        compose.FuncTransformer(pick) | preprocessing.StandardScaler(),
        compose.Discard(*numeric),
    )
    return union | model


# Learning rates: the best of 0.02 .. 0.0005 on the default synthetic log (60,000 events);
# river's default 0.01 scores a click AUC 0.02 (LR) to 0.07 (FM) lower there.
def make_river_lr(n_dense: int, lr: float = 0.001) -> Any:
    """Standardised numeric features -> ``LogisticRegression`` (plain SGD)."""
    return _scaled(linear_model.LogisticRegression(optimizer=optim.SGD(lr)), n_dense)


def make_river_fm(
    n_dense: int, seed: int = 0, n_factors: int = 10, lr: float = 0.001, init_std: float = 0.01
) -> Any:
    """Standardised numeric features -> ``FMClassifier`` (pairwise latent interactions),
    latent factors started small (std ``init_std``) so early noise stays small."""
    fm = facto.FMClassifier(
        n_factors=n_factors,
        weight_optimizer=optim.SGD(lr),
        latent_optimizer=optim.SGD(lr),
        latent_initializer=optim.initializers.Normal(mu=0.0, sigma=init_std, seed=seed),
        seed=seed,
    )
    return _scaled(fm, n_dense)


class RiverClickSystem:
    """A river binary classifier on ``river_features``; predicts the click task only."""

    tasks: tuple[str, ...] = ("click",)

    def __init__(self, name: str, model: Any) -> None:
        self.name = name
        self.model = model

    def predict_many(self, batch: Batch) -> dict[str, np.ndarray]:
        rows = river_features(batch)
        p = [self.model.predict_proba_one(x).get(True, 0.0) for x in rows]
        return {"click": np.asarray(p, dtype=np.float64)}

    def learn_many(self, batch: Batch) -> None:
        if batch.click is None:
            raise ConfigError("learn_many needs a labelled batch (Batch.click)")
        for x, y in zip(river_features(batch), batch.click.tolist(), strict=True):
            self.model.learn_one(x, y > 0.5)
