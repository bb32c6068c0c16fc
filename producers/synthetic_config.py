"""Configuration of the synthetic click-log generator, and loading it from a file or options.

``SyntheticConfig`` fixes a synthetic world completely: the same config always gives the
same log. ``load_config`` overlays a JSON file of overrides and string options (as the
replay command passes them) on ``DEFAULT_CONFIG``.

>>> load_config("default", {"n_events": "1000"}).n_events
1000
>>> load_config("default", {"n_events": "many"})
Traceback (most recent call last):
...
driftrec.core.errors.ConfigError: synthetic config: n_events: Input should be a valid integer, \
unable to parse string as an integer
>>> load_config("", {"sed": "1"})
Traceback (most recent call last):
...
driftrec.core.errors.ConfigError: unknown synthetic config field(s) ['sed']; known fields: seed, ...
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from driftrec.core import ConfigError, explain
from driftrec.producers.synthetic_vocab import TOPICS
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = ["DEFAULT_CONFIG", "DriftSpec", "SyntheticConfig", "load_config"]

_DEFAULT_SOURCES = frozenset({"", "default", "synthetic"})


class DriftSpec(BaseModel):
    """One interest drift: where it starts, how fast, and how many users it moves."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["abrupt", "gradual"]
    at: float = Field(gt=0.0, lt=1.0, description="Start, as a share of n_events.")
    span: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="Gradual only: length, as a share of n_events."
    )
    user_share: float = Field(
        default=1.0, gt=0.0, le=1.0, description="Share of users whose interests drift."
    )

    @model_validator(mode="after")
    def _span_matches_kind(self) -> DriftSpec:
        if self.kind == "gradual" and self.span <= 0.0:
            raise ValueError("a gradual drift needs span > 0 (share of n_events it lasts)")
        if self.kind == "abrupt" and self.span != 0.0:
            raise ValueError("an abrupt drift has no span: set span to 0 or kind to 'gradual'")
        if self.at + self.span > 1.0:
            raise ValueError("drift ends after the log: make at + span <= 1")
        return self


class SyntheticConfig(BaseModel):
    """Everything that defines a synthetic world; the same config gives the same log."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = Field(default=7, ge=0, description="Seed of every random draw (numpy).")
    n_events: int = Field(
        default=200_000, ge=1, le=100_000_000, description="Exact number of events (not items)."
    )
    n_users: int = Field(default=300, ge=1, description="Number of users.")
    n_topics: int = Field(default=10, ge=2, le=len(TOPICS), description="Topics in use.")
    n_initial_items: int = Field(default=300, ge=1, description="Catalog size at the start.")
    new_items_every: int = Field(
        default=1_000, ge=0, description="Events between new-item batches (0: no new items)."
    )
    new_items_batch: int = Field(default=10, ge=0, description="Items per new batch.")
    fresh_share: float = Field(
        default=0.2, ge=0.0, le=1.0, description="Share of slate slots given to the newest batch."
    )
    slate_min: int = Field(default=3, ge=1, le=100, description="Fewest impressions a session.")
    slate_max: int = Field(default=10, ge=1, le=100, description="Most impressions a session.")
    session_gap_s: float = Field(
        default=20.0, gt=0.0, description="Mean seconds between session starts (all users)."
    )
    interest_concentration: float = Field(
        default=2.0, ge=0.5, le=1_000.0, description="Dirichlet total; lower = pickier users."
    )
    category_noise: float = Field(
        default=0.1, ge=0.0, le=1.0, description="Share of items labelled with a wrong topic."
    )
    ctr_intercept: float = Field(default=-2.2, description="Click logit at zero affinity.")
    affinity_weight: float = Field(default=5.0, description="Click logit per unit of affinity.")
    quality_sd: float = Field(default=0.6, ge=0.0, description="Std-dev of item quality logits.")
    position_decay: float = Field(
        default=0.7, ge=0.0, description="Examination probability is (1 + position) ** -decay."
    )
    cvr_intercept: float = Field(default=-2.0, description="Conversion logit after a click.")
    dwell_median_s: float = Field(default=30.0, gt=0.0, description="Median dwell, no affinity.")
    drifts: tuple[DriftSpec, ...] = Field(
        default=(
            DriftSpec(kind="abrupt", at=0.4, user_share=1.0),
            DriftSpec(kind="gradual", at=0.7, span=0.15, user_share=0.6),
        ),
        description="Interest drifts in order; they must not overlap.",
    )
    start: AwareDatetime = Field(
        default=datetime(2024, 1, 1, tzinfo=UTC), description="Time of the first record."
    )

    @model_validator(mode="after")
    def _consistent(self) -> SyntheticConfig:
        if self.slate_min > self.slate_max:
            raise ValueError("slate_min must be <= slate_max")
        if self.n_initial_items < self.slate_max:
            raise ValueError("n_initial_items must be >= slate_max so slates hold distinct items")
        for before, after in zip(self.drifts, self.drifts[1:], strict=False):
            if after.at < before.at + before.span:
                raise ValueError("drifts must be sorted by 'at' and must not overlap")
        return self


DEFAULT_CONFIG = SyntheticConfig()


def _read_overrides(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read synthetic config {path}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"synthetic config {path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"synthetic config {path} must hold a JSON object of field overrides")
    return data


def load_config(
    source: str | Path = "default", options: Mapping[str, str] | None = None
) -> SyntheticConfig:
    """DEFAULT_CONFIG, overridden by a JSON file (unless ``source`` is "default") and options.

    Option values are strings parsed to the field's type; ``drifts`` takes a JSON list.
    """
    overrides: dict[str, Any] = {}
    where = ""
    if str(source).strip().lower() not in _DEFAULT_SOURCES:
        overrides.update(_read_overrides(Path(source)))
        where = f" {source}"
    for key, raw in (options or {}).items():
        if key == "drifts":
            try:
                overrides[key] = json.loads(raw)
            except json.JSONDecodeError as error:
                raise ConfigError(f"option drifts must be a JSON list of drifts: {error}") from None
        else:
            overrides[key] = raw
    unknown = sorted(set(overrides) - set(SyntheticConfig.model_fields))
    if unknown:
        known = ", ".join(SyntheticConfig.model_fields)
        raise ConfigError(f"unknown synthetic config field(s) {unknown}; known fields: {known}")
    if not overrides:
        return DEFAULT_CONFIG
    try:
        return SyntheticConfig.model_validate({**DEFAULT_CONFIG.model_dump(), **overrides})
    except ValidationError as error:
        raise ConfigError(f"synthetic config{where}: {explain(error)}") from None
