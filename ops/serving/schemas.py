"""Request and response bodies of the serving API (pydantic, like every other schema).

Requests forbid unknown fields, so a typo (``itemids``) is a 422 that names the field
instead of a silent default. Ids follow the event schema's rules (1..128 characters).

The blended score that ``/recommend`` ranks by (``BlendWeights``):

    score = click * pCTR + conversion * pCTCVR + dwell * s / (s + dwell_scale_s)

where ``s`` is the predicted dwell in seconds (the model predicts log1p seconds). The
dwell term saturates in [0, 1) so that all three terms live on comparable scales and a
long predicted dwell cannot swamp the click and conversion terms. The defaults weigh a
conversion (which needs a click) twice a click; send ``weights`` to change them.

>>> BlendWeights().model_dump()
{'click': 1.0, 'conversion': 2.0, 'dwell': 0.5, 'dwell_scale_s': 30.0}
"""

from __future__ import annotations

from typing import Annotated, Literal

from driftrec.online_update.registry import VersionInfo
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

__all__ = [
    "MAX_CANDIDATES",
    "BlendWeights",
    "Health",
    "ItemScore",
    "ModelsResponse",
    "RecommendRequest",
    "RecommendResponse",
    "ScoreRequest",
    "ScoreResponse",
    "SwitchResponse",
]

#: Most candidates one request may send (or ask for from the recent items).
MAX_CANDIDATES = 1000

Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
Weight = Annotated[float, Field(ge=0.0, le=1e6, allow_inf_nan=False)]


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BlendWeights(_Body):
    """Weights of the blended score (see the module docstring)."""

    click: Weight = 1.0
    conversion: Weight = 2.0
    dwell: Weight = 0.5
    dwell_scale_s: Annotated[float, Field(gt=0.0, le=1e6, allow_inf_nan=False)] = 30.0


class ScoreRequest(_Body):
    """Score these candidates for this user, in the order given."""

    user_id: Id
    item_ids: Annotated[list[Id], Field(max_length=MAX_CANDIDATES)]
    #: Event time to compute features at; default: the feature store's watermark.
    ts: AwareDatetime | None = None
    weights: BlendWeights | None = None


class RecommendRequest(_Body):
    """Rank candidates (or, when ``item_ids`` is null, the ``recent`` newest items).

    An empty ``item_ids`` is a 422: an empty ranking would look like an answer.
    """

    user_id: Id
    item_ids: Annotated[list[Id], Field(min_length=1, max_length=MAX_CANDIDATES)] | None = None
    k: Annotated[int, Field(ge=1, le=MAX_CANDIDATES)] = 10
    recent: Annotated[int, Field(ge=1, le=MAX_CANDIDATES)] = 100
    ts: AwareDatetime | None = None
    weights: BlendWeights | None = None


class ItemScore(_Body):
    """One item's per-task predictions and its blended score."""

    item_id: str
    #: pCTR.
    click: float
    #: pCTCVR = pCTR * pCVR (ESMM), the probability of click and conversion.
    conversion: float
    #: Predicted dwell in seconds (given a click).
    dwell_s: float
    score: float


class ScoreResponse(_Body):
    model_version: str
    user_id: str
    as_of: AwareDatetime
    items: list[ItemScore]


class RecommendResponse(ScoreResponse):
    #: How many distinct candidates were ranked.
    candidates: int
    #: Where they came from: the request's ``item_ids``, or (when it sent none) the
    #: ``recent`` newest catalog items, a fallback named here so it is never mistaken
    #: for a personalised candidate set.
    candidate_source: Literal["request", "recent items"]


class ModelsResponse(_Body):
    active: str | None
    serving: str | None
    swaps: int
    versions: list[VersionInfo]


class SwitchResponse(_Body):
    active: str
    previous: str | None


class Health(_Body):
    """``GET /healthz``: 200 when ``status`` is ok or degraded, 503 when unready."""

    status: Literal["ok", "degraded", "unready"]
    #: Why the server cannot score with the active model (empty when it can).
    reasons: list[str]
    serving: str | None
    active: str | None
    embedding_version: str | None
    #: Item vectors stored for ``embedding_version`` (None when unknown).
    item_vectors: int | None
    swaps: int
    last_error: str | None = None
