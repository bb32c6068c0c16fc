"""Click logs in, validated events out: readers, the synthetic generator, replay into Kafka.

Knows nothing of models or faust. The schemas of the events it emits are in
``driftrec.core``.
"""

from __future__ import annotations

from driftrec.producers.kafka_io import ensure_topics, make_producer
from driftrec.producers.prefetch import prefetched
from driftrec.producers.records import Record, Rejected
from driftrec.producers.replay import replay, replay_encoded
from driftrec.producers.sources import open_source, synthetic_options
from driftrec.producers.synthetic import SyntheticConfig, SyntheticLog, load_config

__all__ = [
    "Record",
    "Rejected",
    "SyntheticConfig",
    "SyntheticLog",
    "ensure_topics",
    "load_config",
    "make_producer",
    "open_source",
    "prefetched",
    "replay",
    "replay_encoded",
    "synthetic_options",
]
