"""The learner learns a user x item-text preference online, follows a drift of that
preference (a frozen copy does not), scores never-seen items from their text, and is fast."""

from __future__ import annotations

import copy
import time

import numpy as np
import pytest
import torch
from driftrec.models import ModelConfig
from driftrec.models.batch import Batch
from driftrec.models.synthetic import StreamSpec, SyntheticStream
from driftrec.online_update.evaluation import make_river_fm, river_features
from driftrec.online_update.learning.learner import LearnerConfig, OnlineLearner
from sklearn.metrics import roc_auc_score

SPEC = StreamSpec(text_dim=16, n_dense=3, n_users=100, n_items=400, seed=7)
CFG = LearnerConfig(
    model=ModelConfig(
        arch="mmoe",
        text_dim=16,
        n_dense=3,
        user_buckets=1024,
        item_buckets=1024,
        category_buckets=16,
        text_proj_dim=16,
        expert_sizes=(32,),
        tower_sizes=(16,),
        seed=1,
    ),
    lr_head=1e-2,
    lr_shared=1e-2,
    metric_window=2000,
)
BATCH, PHASE = 256, 50  # 12,800 examples per phase


@pytest.fixture(scope="module")
def trained() -> tuple[OnlineLearner, SyntheticStream]:
    stream = SyntheticStream(SPEC)
    learner = OnlineLearner(CFG)
    for _ in range(PHASE):
        learner.learn_many(stream.batch(BATCH))
    return learner, stream


def test_learns_the_preference_online(trained: tuple[OnlineLearner, SyntheticStream]) -> None:
    learner, _ = trained
    metrics = learner.summary()
    assert metrics["click.auc"] > 0.75, metrics
    assert metrics["conversion.auc"] > 0.7, metrics
    assert metrics["dwell.mae"] < 1.0, metrics


def test_follows_a_drift_that_a_frozen_copy_misses(
    trained: tuple[OnlineLearner, SyntheticStream],
) -> None:
    learner, stream = copy.deepcopy(trained)
    frozen = copy.deepcopy(learner)
    drift_at = learner.examples_seen
    stream.drift()
    labels, static = [], []
    for _ in range(PHASE):
        batch = stream.batch(BATCH)
        static.append(frozen.predict_many(batch)["click"])
        labels.append(batch.click.numpy())  # type: ignore[union-attr]
        learner.learn_many(batch)
    window = CFG.metric_window
    static_auc = roc_auc_score(np.concatenate(labels)[-window:], np.concatenate(static)[-window:])
    online_auc = learner.summary()["click.auc"]
    assert online_auc > 0.75 > 0.6 > static_auc, (online_auc, static_auc)
    click_alarms = [a.example_index for a in learner.alarms if a.task == "click"]
    assert any(drift_at <= i < drift_at + 3000 for i in click_alarms), learner.alarms
    assert not any(drift_at // 2 <= i < drift_at for i in click_alarms), learner.alarms


def test_never_seen_items_are_scored_from_their_text(
    trained: tuple[OnlineLearner, SyntheticStream],
) -> None:
    learner, stream = trained
    users = torch.arange(SPEC.n_users).repeat_interleave(2)
    liked = stream.liked[users]
    topic = torch.where(torch.arange(len(users)) % 2 == 0, liked, (liked + 2) % SPEC.n_topics)
    text_of = torch.stack(
        [stream.item_text[stream.item_topic == t].mean(0) for t in range(SPEC.n_topics)]
    )
    n = len(users)
    batch = Batch(
        user=stream.user_ids[users],
        item=torch.arange(n) + 10**12,  # ids no one has seen
        category=torch.full((n,), 999),  # nor their category
        text=text_of[topic],
        has_text=torch.ones(n),
        interest=stream.user_interest[users],
        dense=torch.zeros(n, SPEC.n_dense),
    )
    p = learner.predict_many(batch)["click"]
    assert p[0::2].mean() > 2 * p[1::2].mean()  # liked topic scored far higher
    assert roc_auc_score(np.arange(n) % 2 == 0, p) > 0.8


@pytest.mark.slow
def test_learn_many_throughput_mmoe_batch_512() -> None:
    """The default recipe (a step per 128 rows: 4 steps per batch of 512) on one torch
    thread, as the trainer, the eval and `driftrec bench train` run it, against river's
    FM learning the same rows in the same test: a ratio holds on a loaded machine where
    an absolute floor does not (issue 10's goal: >= 2x river FM)."""
    stream = SyntheticStream(StreamSpec(text_dim=384, n_dense=12, n_users=100_000, n_items=50_000))
    batches = [stream.batch(512) for _ in range(40)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        learner = OnlineLearner(LearnerConfig())
        for b in batches[:10]:
            learner.learn_many(b)
        start = time.perf_counter()
        for b in batches[10:]:
            learner.learn_many(b)
        rate = 30 * 512 / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    rows = river_features(batches[10].slice(0, 2048))
    labels = [y > 0.5 for y in batches[10].click.tolist()[:2048]]  # type: ignore[union-attr]
    fm = make_river_fm(12)
    start = time.perf_counter()
    for x, y in zip(rows, labels, strict=True):
        fm.learn_one(x, y)
    river_rate = len(rows) / (time.perf_counter() - start)
    print(
        f"learn_many MMoE batch 512: {rate:,.0f} examples/s (1 thread), "
        f"river FM {river_rate:,.0f}/s"
    )
    assert rate > 2 * river_rate
