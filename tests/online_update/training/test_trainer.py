"""The trainer's exactly-once effect: offsets, re-emitted examples, checkpoints, encoder switches."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import redis
from driftrec.core.schemas import Example, ExampleFeatures, Impression, encode, encode_pack
from driftrec.models.config import ModelConfig
from driftrec.online_update.embeddings.vector_store import RedisVectorStore
from driftrec.online_update.learning.learner import LearnerConfig
from driftrec.online_update.registry.versions import ModelRegistry
from driftrec.online_update.training.pointer import CheckpointPointer
from driftrec.online_update.training.trainer import FencedOut, Trainer
from driftrec.ops.settings import Settings

pytestmark = pytest.mark.integration

T0 = datetime(2024, 1, 1, tzinfo=UTC)
TOPIC = "ex"


def example(n: int, clicked: bool) -> bytes:
    impression = Impression(
        event_id=f"imp{n}", user_id=f"u{n % 7}", item_id=f"i{n % 11}", ts=T0 + timedelta(seconds=n)
    )
    return encode(
        Example(
            impression=impression,
            # Its user's n // 7 earlier impressions: counters grow along the log, as they do.
            features=ExampleFeatures(category="c", user_impressions=n // 7),
            clicked=clicked,
            dwell_seconds=30.0 if clicked else None,
            ready_ts=impression.ts + timedelta(minutes=30),
        )
    )


def messages(
    start: int, stop: int, first_offset: int = 0
) -> list[tuple[int, int, bytes | None, float]]:
    return [
        (0, first_offset + i, example(n, n % 3 == 0), 0.0) for i, n in enumerate(range(start, stop))
    ]


@pytest.fixture
def make_trainer(live_settings: Settings, redis_prefix: str, tmp_path: Path):  # type: ignore[no-untyped-def]  # fixture factory
    client = redis.Redis.from_url(live_settings.redis_url)

    def build(text_dim: int = 8, lr_wide: float = 0.1) -> Trainer:
        trainer = Trainer(
            learner_config=LearnerConfig(
                model=ModelConfig(text_dim=text_dim, user_buckets=64, item_buckets=64),
                lr_wide=lr_wide,
            ),
            registry=ModelRegistry(
                client, tmp_path / "registry", prefix=f"{redis_prefix}registry:"
            ),
            vectors=RedisVectorStore(client, prefix=f"{redis_prefix}emb:"),
            checkpoint_dir=tmp_path / "trainer",
            pointer=CheckpointPointer(client, f"{redis_prefix}trainer:"),
            topic=TOPIC,
        )
        trainer.resume()  # claims the model, as the agent does on assignment
        return trainer

    return build


def test_applies_each_example_once_across_a_restart(make_trainer) -> None:  # type: ignore[no-untyped-def]
    trainer = make_trainer()
    trainer.learn(trainer.prepare(messages(0, 100)))
    info = trainer.checkpoint()
    assert info.examples_seen == 100 and info.offsets == {f"{TOPIC}:0": 99}
    trainer.learn(trainer.prepare(messages(100, 150, first_offset=100)))  # lost in the crash

    restarted = make_trainer()
    assert restarted.learner.examples_seen == 100
    # Kafka redelivers from the committed offset (here 50): the first 50 are below the checkpoint.
    redelivered = restarted.prepare(messages(50, 150, first_offset=50))
    assert redelivered.skipped_offsets == 50 and len(redelivered.examples) == 50
    restarted.learn(redelivered)
    # A restarted joiner re-emits examples at new offsets: same impression ids, dropped.
    again = restarted.prepare(messages(120, 160, first_offset=150))
    assert again.skipped_duplicates == 30 and len(again.examples) == 10
    restarted.learn(again)
    assert restarted.learner.examples_seen == 160
    assert restarted.status()["learner"] == restarted.learner.config.fingerprint()


def test_an_offset_jump_is_counted_and_logged(make_trainer, caplog) -> None:  # type: ignore[no-untyped-def]
    trainer = make_trainer()
    trainer.learn(trainer.prepare(messages(0, 10)))
    assert trainer.status()["offset_gaps"] == 0
    with caplog.at_level(logging.WARNING, logger="driftrec.online_update.training.trainer"):
        trainer.learn(trainer.prepare(messages(10, 12, first_offset=14)))  # 10-13 never came
    assert trainer.status()["offset_gaps"] == 1 and trainer.offsets == {0: 15}
    assert "offset jumped from 9 to 14; 4 messages skipped" in caplog.text


def test_a_resumed_checkpoint_keeps_its_learner_and_says_when_settings_differ(  # type: ignore[no-untyped-def]
    make_trainer, caplog
) -> None:
    trainer = make_trainer()
    trainer.learn(trainer.prepare(messages(0, 50)))
    trainer.checkpoint()
    with caplog.at_level(logging.WARNING, logger="driftrec.online_update.training.trainer"):
        same = make_trainer()
        assert not caplog.records
        other = make_trainer(lr_wide=0.05)  # the settings changed since the checkpoint
    assert other.learner.config == same.learner.config  # its state fits only its own config
    assert other.learner.config.fingerprint() in caplog.text
    assert other.learner_config.fingerprint() in caplog.text


def test_bad_example_is_dead_lettered_not_learned(make_trainer) -> None:  # type: ignore[no-untyped-def]
    trainer = make_trainer()
    batch = trainer.prepare([(0, 0, b'{"type": "example"', 0.0), *messages(0, 3, first_offset=1)])
    assert len(batch.examples) == 3
    letter = batch.dead_letters[0]
    assert (letter.topic, letter.partition, letter.offset, letter.stage) == (TOPIC, 0, 0, "trainer")


def test_moves_to_a_new_embedding_version_between_batches(make_trainer) -> None:  # type: ignore[no-untyped-def]
    trainer = make_trainer(text_dim=8)
    store = trainer.vectors
    store.declare("enc-a", encoder="a", dim=8)
    store.put("enc-a", [f"i{n}" for n in range(11)], np.eye(11, 8, dtype=np.float32))
    store.set_active("enc-a")
    trainer.learn(trainer.prepare(messages(0, 50)))
    assert trainer.embedding_version == "enc-a" and trainer.text_dim == 8

    store.declare("enc-b", encoder="b", dim=4)
    store.put("enc-b", [f"i{n}" for n in range(11)], np.ones((11, 4), dtype=np.float32) / 2)
    store.set_active("enc-b")
    trainer.learn(trainer.prepare(messages(50, 100, first_offset=50)))
    assert trainer.embedding_version == "enc-b" and trainer.text_dim == 4
    assert trainer.learner.config.model.text_dim == 4
    assert trainer.checkpoint().embedding_version == "enc-b"


def flipped_example(n: int, flip: bool) -> bytes:
    item = n % 10
    clicked = (item % 2 == 0) != flip  # the concept: which half of the items gets clicks
    impression = Impression(
        event_id=f"f{n}", user_id=f"u{n % 7}", item_id=f"i{item}", ts=T0 + timedelta(seconds=n)
    )
    return encode(
        Example(
            impression=impression,
            # Its user's n // 7 earlier impressions: counters grow along the log, as they do.
            features=ExampleFeatures(category="c", user_impressions=n // 7),
            clicked=clicked,
            ready_ts=impression.ts + timedelta(minutes=30),
        )
    )


def test_after_a_drift_the_new_version_is_judged_on_the_same_recent_examples(make_trainer) -> None:  # type: ignore[no-untyped-def]
    trainer = make_trainer()
    offset = 0
    for start in range(0, 3000, 250):
        batch = [(0, offset + i, flipped_example(start + i, flip=False), 0.0) for i in range(250)]
        trainer.learn(trainer.prepare(batch))
        offset += 250
    before = trainer.checkpoint()
    assert trainer.registry.active_version_name() == before.version
    # Interests flip: the active version is now wrong on every recent example.
    for start in range(3000, 11000, 250):
        batch = [(0, offset + i, flipped_example(start + i, flip=True), 0.0) for i in range(250)]
        trainer.learn(trainer.prepare(batch))
        offset += 250
    window = trainer.same_window()
    assert window is not None and window[0] == before.version
    candidate_auc, active_auc = window[1]["click.auc"], window[2]["click.auc"]
    assert candidate_auc is not None and active_auc is not None and candidate_auc > active_auc + 0.1
    after = trainer.checkpoint()
    assert trainer.registry.active_version_name() == after.version


def test_offsets_move_only_once_the_batch_is_learned(make_trainer, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    trainer = make_trainer()
    trainer.learn(trainer.prepare(messages(0, 50)))
    batch = trainer.prepare(messages(50, 100, first_offset=50))

    def fail(*args: object) -> None:
        raise ConnectionError("redis went away mid-batch")

    with monkeypatch.context() as patch:
        patch.setattr(trainer.learner, "learn_many", fail)
        with pytest.raises(ConnectionError):
            trainer.learn(batch)
    assert trainer.offsets == {0: 49} and trainer.learner.examples_seen == 50
    retried = trainer.prepare(messages(50, 100, first_offset=50))  # Kafka redelivers them
    assert len(retried.examples) == 50 and retried.skipped_offsets == 0
    trainer.learn(retried)
    assert trainer.offsets == {0: 99} and trainer.learner.examples_seen == 100


def test_a_trainer_that_lost_the_model_cannot_overwrite_its_successor(make_trainer) -> None:  # type: ignore[no-untyped-def]
    old = make_trainer()
    old.learn(old.prepare(messages(0, 40)))
    old.checkpoint()
    new = make_trainer()  # another worker was assigned the examples partition
    assert new.learner.examples_seen == 40
    new.learn(new.prepare(messages(40, 60, first_offset=40)))
    successor = new.checkpoint()
    old.learn(old.prepare(messages(40, 80, first_offset=40)))
    with pytest.raises(FencedOut):
        old.checkpoint()
    assert make_trainer().learner.examples_seen == successor.examples_seen == 60


def test_a_trainer_whose_epoch_redis_lost_checkpoints_under_a_new_one_that_fences_the_old(  # type: ignore[no-untyped-def]
    make_trainer, redis_client: redis.Redis, redis_prefix: str
) -> None:
    zombie = make_trainer()  # an earlier owner that does not know it lost the model
    trainer = make_trainer()
    trainer.learn(trainer.prepare(messages(0, 40)))
    trainer.checkpoint()
    redis_client.delete(*redis_client.scan_iter(f"{redis_prefix}*"))  # Redis restarted empty
    trainer.learn(trainer.prepare(messages(40, 70, first_offset=40)))
    claimed = trainer.epoch
    trainer.checkpoint()  # its model is the only copy left: written, under a new epoch
    assert trainer.epoch is not None and claimed is not None and trainer.epoch > claimed
    zombie.learn(zombie.prepare(messages(0, 10)))
    with pytest.raises(FencedOut):
        zombie.checkpoint()
    trainer.learn(trainer.prepare(messages(70, 80, first_offset=70)))
    trainer.checkpoint()  # and it writes on under it
    resumed = make_trainer()
    assert resumed.learner.examples_seen == 80 and resumed.offsets == {0: 79}


def test_a_pack_is_learned_whole_but_a_bad_example_in_it_is_dead_lettered_alone(
    make_trainer,
) -> None:  # type: ignore[no-untyped-def]
    trainer = make_trainer()
    good = [example(n, n % 2 == 0) for n in range(3)]
    bad = b'{"type": "example", "clicked": "maybe"}'
    batch = trainer.prepare(
        [(0, 7, encode_pack([good[0], bad, good[1]]), 0.0), (0, 8, good[2], 0.0)]
    )
    assert [e.impression.event_id for e in batch.examples] == ["imp0", "imp1", "imp2"]
    (letter,) = batch.dead_letters
    assert (letter.offset, letter.stage) == (
        7,
        "trainer",
    ) and "example 1 of its pack" in letter.reason
    trainer.learn(batch)
    assert trainer.offsets == {0: 8} and trainer.learner.examples_seen == 3


def test_label_free_drift_compares_with_the_window_of_the_last_promotion(make_trainer) -> None:  # type: ignore[no-untyped-def]
    from driftrec.features import CLOCK_FEATURES, DENSE_FEATURES

    trainer = make_trainer()
    trainer.learn(trainer.prepare(messages(0, 200)))
    assert trainer.status()["label_free"] is None  # nothing promoted yet: no reference
    info = trainer.checkpoint()  # the first version is promoted: its window is the reference
    same = trainer.status()["label_free"]
    assert same["reference_version"] == info.version
    # The time of day differs between any two windows shorter than a day: left out.
    assert set(same["psi"]) == set(DENSE_FEATURES) - CLOCK_FEATURES
    assert same["reference_rows"] == 200
    assert max(same["psi"].values()) == 0.0 and same["top_movers"] == []  # same rows
    # Later examples are of other users and items, at other positions in the log's order.
    trainer.learn(trainer.prepare(messages(5000, 5600, first_offset=200)))
    moved = trainer.status()["label_free"]
    assert moved["reference_version"] == info.version and moved["current_rows"] == 800
    assert max(moved["psi"].values()) > 0.0
    assert sum(moved["click_current"]) == pytest.approx(1.0)


def test_the_reference_window_follows_a_manual_promote_and_a_rollback(  # type: ignore[no-untyped-def]
    make_trainer, monkeypatch: pytest.MonkeyPatch
) -> None:
    trainer = make_trainer()
    registry = trainer.registry
    # The operator decides in this test: the trainer never promotes by itself.
    monkeypatch.setattr(registry, "maybe_promote", lambda *args, **kwargs: False)

    def checkpoint_after(first: int) -> str:
        trainer.learn(trainer.prepare(messages(first, first + 100, first_offset=first)))
        return str(trainer.checkpoint().version)

    def reference() -> str | None:
        label_free = trainer.status()["label_free"]
        return None if label_free is None else str(label_free["reference_version"])

    v1 = checkpoint_after(0)
    assert reference() is None  # nothing active yet
    registry.promote(v1, reason="operator")
    v2 = checkpoint_after(100)
    assert reference() == v1  # the active version's window, not the newest one's
    registry.promote(v2, reason="operator")
    checkpoint_after(200)
    assert reference() == v2
    registry.rollback(reason="operator")
    checkpoint_after(300)
    assert registry.active_version_name() == v1 and reference() == v1
