"""The configuration every layer below ``ops/`` receives as an argument.

Only ``ops/`` reads the environment (``driftrec.ops.settings.Settings`` is this class
filled from ``DRIFTREC_*`` variables plus the settings of local infrastructure and
admin); everything else is handed a ``DriftrecConfig`` and never looks it up itself.

>>> config = DriftrecConfig(kafka_bootstrap="a:9092, b:9092")
>>> config.bootstrap_servers
['a:9092', 'b:9092']
>>> config.kafka_client_options()
{'security_protocol': 'PLAINTEXT'}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = ["DriftrecConfig"]


class DriftrecConfig(BaseModel):
    """Where Kafka and Redis are, what the topics are called, where state lives, and the
    cadences of the stream's agents."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kafka_bootstrap: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated host:port."
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0", description="Redis URL (registry, features, metrics)."
    )
    topic_events: str = Field(
        "driftrec.events", description="Impressions, clicks, conversions, dwell (keyed by user)."
    )
    topic_items: str = Field("driftrec.items", description="Item catalog, compacted by item_id.")
    topic_examples: str = Field("driftrec.examples", description="Labelled examples with features.")
    topic_metrics: str = Field(
        "driftrec.metrics", description="Per-task rolling metrics and drift alarms."
    )
    topic_deadletter: str = Field(
        "driftrec.deadletter", description="Rejected records with the reason."
    )
    partitions: int = Field(4, ge=1, le=1024, description="Partitions for topics driftrec creates.")
    replication_factor: int = Field(
        1, ge=1, description="Replication factor for topics driftrec creates."
    )
    data_dir: Path = Field(
        Path(".driftrec"), description="Local state: Kafka/Redis data, logs, checkpoints."
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol, passed to every client."
    )
    kafka_sasl_mechanism: str | None = Field(
        None, description="SASL mechanism (PLAIN, SCRAM-SHA-256, ...)."
    )
    kafka_sasl_username: str | None = Field(None, description="SASL username.")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password.")
    kafka_ssl_cafile: Path | None = Field(None, description="CA bundle for TLS to Kafka.")
    kafka_ssl_certfile: Path | None = Field(None, description="Client certificate for mutual TLS.")
    kafka_ssl_keyfile: Path | None = Field(None, description="Client key for mutual TLS.")
    app_id: str = Field("driftrec", description="faust app id (the consumer group of the workers).")
    redis_prefix: str = Field("driftrec:", description="Prefix of every Redis key driftrec writes.")
    click_window_s: float = Field(
        1800.0, gt=0, description="Attribution window for clicks, seconds of event time."
    )
    conversion_window_s: float = Field(
        7200.0, gt=0, description="Attribution window for conversions and dwell (>= click window)."
    )
    max_ahead_s: float = Field(
        730 * 86400.0,
        gt=0,
        description="An event further ahead of its partition's newest event time is dead-lettered.",
    )
    max_ahead_of_clock_s: float = Field(
        600.0,
        gt=0,
        description="An event further ahead of the joiner's wall clock is dead-lettered.",
    )
    feature_ttl_s: float = Field(
        30 * 86400.0,
        gt=0,
        description="The joiner forgets users and items with no event for this long (event "
        "time); their feature-store entries in Redis are deleted after the same time.",
    )
    idle_timeout_s: float = Field(
        30.0,
        gt=0,
        description="A partition idle this long moves its event time on with the wall clock.",
    )
    take_max: int = Field(2000, ge=1, description="Most events an agent takes per batch.")
    trainer_max_lag_s: float = Field(
        1.0,
        gt=0,
        description="Where one worker runs the joiner and the trainer, the joiner waits "
        "before a batch until the trainer has learned every example it sent longer ago "
        "than this, seconds (stream/pacing.py).",
    )
    take_within_s: float = Field(
        0.25, gt=0, description="Longest an agent waits to fill a batch, seconds."
    )
    snapshot_every_s: float = Field(
        2.0, gt=0, description="Joiner state snapshot (and offset commit) cadence, seconds."
    )
    checkpoint_every_examples: int = Field(
        20_000, ge=1, description="Trainer checkpoint cadence in examples (whichever comes first)."
    )
    checkpoint_every_s: float = Field(
        30.0, gt=0, description="Trainer checkpoint cadence in seconds."
    )
    registry_keep_candidates: int = Field(
        5,
        ge=1,
        description="Registry retention: the newest N versions are always kept (with the "
        "active one, the previous one, and those active within registry_keep_active_s).",
    )
    registry_keep_active_s: float = Field(
        3600.0,
        ge=0,
        description="Registry retention: keep every version that was active within this "
        "many seconds (rollback targets); older ones go with their artifact files.",
    )
    embedding_grace_s: float = Field(
        86400.0,
        ge=0,
        description="Embedding versions other than the active and previous one are deleted "
        "with their vectors this many seconds after they stopped being active.",
    )
    model_arch: Literal["mmoe", "ple", "shared-bottom"] = Field(
        "mmoe", description="Multi-task architecture."
    )
    # The learner's recipe: the live trainer and `driftrec eval` both build their
    # LearnerConfig from these (driftrec.online_update.learning.learner_config).
    learner_balancing: Literal["fixed", "uncertainty", "gradnorm"] = Field(
        "fixed", description="Task balancing: fixed weights, uncertainty weighting or GradNorm."
    )
    learner_gradnorm_alpha: float = Field(1.5, gt=0, description="GradNorm's alpha.")
    learner_lr_head: float = Field(
        1e-2, gt=0, description="Adam rate of towers, gates and task experts."
    )
    learner_lr_shared: float = Field(
        1e-2, gt=0, description="Adam rate of the text projection, bottom and shared experts."
    )
    learner_lr_embedding: float = Field(
        3e-2, gt=0, description="SparseAdam rate of the user/item/category embeddings."
    )
    learner_lr_balance: float = Field(1e-2, gt=0, description="Rate of the balancer's weights.")
    learner_lr_wide: float = Field(
        0.1, gt=0, description="Adagrad rate of the wide part (id biases, linear term)."
    )
    learner_micro_batch: int = Field(
        128, ge=1, description="Rows per gradient step; a larger batch takes more steps."
    )
    learner_shared_every: int = Field(
        1, ge=1, description="Shared layers and embeddings step every this many steps."
    )
    learner_wide: bool = Field(
        True, description="Wide part per task: id biases + linear term over dense inputs."
    )
    learner_text_score: bool = Field(
        True,
        description="Wide part: a per-task weight on the item text scored against the user's "
        "interest vector (standardised text . interest).",
    )
    learner_standardise: bool = Field(
        True, description="Standardise dense inputs with running statistics (in checkpoints)."
    )
    learner_norm_horizon: int = Field(
        100_000, ge=1, description="Rows the running dense statistics average over."
    )
    learner_seed: int = Field(0, ge=0, description="Seed of the model's initial weights.")
    text_model: str = Field(
        "minilm",
        description="Text encoder: minilm (packaged), hashing[:dim], or a local HF model directory.",
    )
    web_port: int = Field(6066, ge=0, description="faust worker web port (0 = disabled).")
    history_max_len: int = Field(
        30_000,
        ge=100,
        description="Each history stream (trainer samples, joiner samples, events) keeps "
        "about this many entries (a trainer sample a second: about 8 hours).",
    )
    history_retention_s: float = Field(
        86_400.0, gt=0, description="History entries older than this many seconds are dropped."
    )

    def kafka_client_options(self) -> dict[str, Any]:
        """Security options in the keyword form kafka-python and aiokafka both accept."""
        options: dict[str, Any] = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_sasl_mechanism:
            options["sasl_mechanism"] = self.kafka_sasl_mechanism
        if self.kafka_sasl_username:
            options["sasl_plain_username"] = self.kafka_sasl_username
        if self.kafka_sasl_password:
            options["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value()
        for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            value = getattr(self, f"kafka_{key}")
            if value:
                options[key] = str(value)
        return options

    @property
    def bootstrap_servers(self) -> list[str]:
        return [s.strip() for s in self.kafka_bootstrap.split(",") if s.strip()]
