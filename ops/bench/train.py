"""`driftrec bench train`: learner throughput against river's FMClassifier, in one run.

Realistic batches: the default synthetic log goes through the stream's joiner and
feature code (``driftrec.online_update.evaluation.eval_stream.replay_log``) with the configured text
encoder, into labelled batches of 512 examples. ``OnlineLearner.learn_many`` (the learner
the settings give the trainer, ``learner_config(settings, text_dim)``: by default MMoE with
a wide part, standardised dense inputs and a step per 128 examples) gets ``warmup``
batches untimed, then the timed ones;
river's ``FMClassifier`` (as ``driftrec eval`` configures it, on the features of
``driftrec.online_update.evaluation.baselines.river_features``) then ``learn_one`` s the first timed
examples, at most ``river_examples`` of them: at a few thousand examples/s more
would only lengthen the run, not change the rate. Both rates are wall-clock
examples/s of learning alone (feature building excluded) with one torch thread.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from driftrec.ops.settings import Settings

__all__ = ["bench_train"]

BATCH = 512


def bench_train(
    args: argparse.Namespace,
    settings: Settings,
    *,
    warmup: int = 10,
    timed: int = 40,
    river_examples: int = 8_192,
) -> dict[str, Any]:
    """Measure and return the figures (see the module docstring)."""
    import torch
    from driftrec.core import ConfigError
    from driftrec.features import DENSE_FEATURES
    from driftrec.models import Batch
    from driftrec.online_update.embeddings import CachedEncoder, load_text_encoder
    from driftrec.online_update.evaluation import (
        ItemTexts,
        ToLearn,
        make_river_fm,
        replay_log,
        river_features,
    )
    from driftrec.online_update.learning import OnlineLearner, learner_config
    from driftrec.producers import open_source

    torch.set_num_threads(1)  # see ops.eval_cmd: faster on two contended cores
    encoder = CachedEncoder(
        load_text_encoder(settings.text_model), settings.data_dir / "text-cache", flush_every=512
    )
    batches: list[Batch] = []
    with encoder:
        records = open_source("default", "synthetic", limit=int(args.events))
        for chunk in replay_log(records, ItemTexts(encoder), batch_size=BATCH):
            if isinstance(chunk, ToLearn) and len(chunk.batch) == BATCH:
                batches.append(chunk.batch)
                if len(batches) == warmup + timed:
                    break
    if len(batches) < 2:
        raise ConfigError(f"--events {args.events} gives fewer than 2 batches of {BATCH}: raise it")
    if len(batches) < warmup + timed:  # a short log: keep most batches for timing
        warmup = len(batches) // 4
    config = learner_config(settings, encoder.dim)
    learner = OnlineLearner(config)
    for batch in batches[:warmup]:
        learner.learn_many(batch)
    measured = Batch.concat(batches[warmup:])
    started = time.perf_counter()
    for batch in batches[warmup:]:
        learner.learn_many(batch)
    rate = len(measured) / (time.perf_counter() - started)

    river_part = measured.slice(0, min(river_examples, len(measured)))
    rows = river_features(river_part)
    labels = [y > 0.5 for y in river_part.click.tolist()]  # type: ignore[union-attr]  # labelled
    fm = make_river_fm(len(DENSE_FEATURES))
    started = time.perf_counter()
    for x, y in zip(rows, labels, strict=True):
        fm.learn_one(x, y)
    river_rate = len(rows) / (time.perf_counter() - started)
    return {
        "arch": config.model.arch,
        "learner": config.fingerprint(),
        "batch_size": BATCH,
        "micro_batch": config.micro_batch,
        "steps_per_batch": -(-BATCH // config.micro_batch),
        "text_dim": encoder.dim,
        "threads": torch.get_num_threads(),
        "examples": len(measured),
        "examples_per_s": round(rate, 1),
        "river_fm_examples": len(rows),
        "river_fm_examples_per_s": round(river_rate, 1),
        "ratio": round(rate / river_rate, 2),
    }
