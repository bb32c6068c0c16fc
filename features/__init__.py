"""Feature and joiner logic: pure code shared by the stream, the evaluator and serving.

``joiner`` turns events into labelled examples in event time (attribution windows,
watermarks, dedupe); ``state`` keeps per-user and per-item features as of each
impression; ``vectorise`` turns examples into the model's ``Batch``. No faust, no Kafka
client, no Redis: the stream runtime and the serving API call these functions.
"""

from __future__ import annotations

from driftrec.features.joiner import (
    JoinerConfig,
    JoinerCounters,
    JoinerState,
    Rejection,
    advance,
    flush,
    handle,
    joiner_config,
)
from driftrec.features.state import (
    CLOCK_FEATURES,
    DENSE_FEATURES,
    CandidateFeatures,
    FeatureConfig,
    FeatureState,
    to_micros,
)
from driftrec.features.vectorise import FeatureEncoder, TextLookup, stable_hash

__all__ = [
    "CLOCK_FEATURES",
    "DENSE_FEATURES",
    "CandidateFeatures",
    "FeatureConfig",
    "FeatureEncoder",
    "FeatureState",
    "JoinerConfig",
    "JoinerCounters",
    "JoinerState",
    "Rejection",
    "TextLookup",
    "advance",
    "flush",
    "handle",
    "joiner_config",
    "stable_hash",
    "to_micros",
]
