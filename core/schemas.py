"""Every event and message that crosses a Kafka topic, as pydantic v2 models.

This is the only schema in driftrec: producers validate rows into these
classes, the faust codec calls ``model_validate_json`` on them, and nothing on
a topic is ever pickled.

>>> from datetime import datetime, timezone
>>> ts = datetime(2024, 1, 1, tzinfo=timezone.utc)
>>> click = Click(event_id="e1", user_id="u1", item_id="i1", ts=ts)
>>> decode_event(encode(click)) == click
True
>>> decode_event(b'{"type": "click", "event_id": "", "user_id": "u", "item_id": "i", "ts": 0}')
Traceback (most recent call last):
...
driftrec.core.errors.InvalidEvent: invalid event: click.event_id: String should have at least 1 character
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any, Literal, TypeAlias

from driftrec.core.errors import InvalidEvent
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)

__all__ = [
    "EVENT_TYPES",
    "MAX_MESSAGE_BYTES",
    "MAX_PACK_BYTES",
    "Click",
    "Conversion",
    "DeadLetter",
    "Dwell",
    "Event",
    "Example",
    "ExampleFeatures",
    "ExamplePack",
    "Impression",
    "Item",
    "Message",
    "as_payload",
    "decode_event",
    "decode_examples",
    "decode_item",
    "encode",
    "encode_pack",
    "explain",
]

#: Anything bigger is rejected before parsing: one event is a few hundred bytes.
MAX_MESSAGE_BYTES = 64 * 1024

Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
ContextValue: TypeAlias = (
    StrictBool | StrictInt | StrictFloat | Annotated[str, Field(max_length=256)]
)


class Message(BaseModel):
    """Base of every topic message: immutable, no unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class _UserItemEvent(Message):
    event_id: Id
    user_id: Id
    item_id: Id
    ts: AwareDatetime


class Impression(_UserItemEvent):
    """An item was shown to a user at ``position`` (0 = top)."""

    type: Literal["impression"] = "impression"
    position: Annotated[int, Field(ge=0, le=10_000)] = 0
    context: Annotated[
        dict[Annotated[str, Field(max_length=64)], ContextValue], Field(max_length=32)
    ] = Field(default_factory=dict)


class Click(_UserItemEvent):
    """The user clicked an item they were shown."""

    type: Literal["click"] = "click"


class Conversion(_UserItemEvent):
    """The user converted (bought, watched to the end, ...) after clicking."""

    type: Literal["conversion"] = "conversion"


class Dwell(_UserItemEvent):
    """Seconds the user spent on an item after clicking it."""

    type: Literal["dwell"] = "dwell"
    seconds: Annotated[float, Field(ge=0.0, le=7 * 24 * 3600.0, allow_inf_nan=False)]


Event = Annotated[Impression | Click | Conversion | Dwell, Field(discriminator="type")]
EVENT_TYPES: tuple[str, ...] = ("impression", "click", "conversion", "dwell")


class Item(Message):
    """One catalog entry; the items topic is compacted by ``item_id``."""

    type: Literal["item"] = "item"
    item_id: Id
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=512)]
    text: Annotated[str, Field(max_length=8192)] = ""
    category: Annotated[str, StringConstraints(strip_whitespace=True, max_length=128)] = ""
    ts: AwareDatetime


class DeadLetter(Message):
    """A record that could not be accepted, with where it came from and why."""

    type: Literal["deadletter"] = "deadletter"
    reason: Annotated[str, Field(max_length=2048)]
    stage: Annotated[str, Field(max_length=64)]
    ts: AwareDatetime
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    file: str | None = None
    line: int | None = None
    #: The offending payload, decoded leniently and cut to a readable length.
    payload: Annotated[str, Field(max_length=4096)] = ""


_EVENT_ADAPTER: TypeAdapter[Impression | Click | Conversion | Dwell] = TypeAdapter(Event)


def explain(error: ValidationError) -> str:
    """One line per problem, ``field: message``, for logs and dead letters."""
    parts = []
    for problem in error.errors(include_url=False):
        where = ".".join(str(p) for p in problem["loc"]) or "event"
        parts.append(f"{where}: {problem['msg']}")
    return "; ".join(parts)


def _check_size(data: bytes | str) -> None:
    if len(data) > MAX_MESSAGE_BYTES:
        raise InvalidEvent(
            f"message of {len(data)} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit"
        )


def decode_event(data: bytes | str) -> Impression | Click | Conversion | Dwell:
    """Parse one events-topic message; raise ``InvalidEvent`` with a readable reason."""
    _check_size(data)
    try:
        return _EVENT_ADAPTER.validate_json(data)
    except ValidationError as error:
        raise InvalidEvent(f"invalid event: {explain(error)}") from None


def decode_item(data: bytes | str) -> Item:
    """Parse one items-topic message; raise ``InvalidEvent`` with a readable reason."""
    _check_size(data)
    try:
        return Item.model_validate_json(data)
    except ValidationError as error:
        raise InvalidEvent(f"invalid item: {explain(error)}") from None


def encode(message: Message) -> bytes:
    """JSON bytes for a topic."""
    return message.model_dump_json().encode()


def as_payload(raw: Any, limit: int = 4096) -> str:
    """A printable excerpt of a rejected record for a dead letter."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes | bytearray) else str(raw)
    return text[:limit]


_Seconds = Annotated[float, Field(ge=0.0, le=7 * 24 * 3600.0, allow_inf_nan=False)]


class ExampleFeatures(Message):
    """Feature values of one (user, item) pair as of an impression, before it counted.

    Raw counts only; ``driftrec.features.state.dense_features`` turns them into model inputs,
    so training and serving derive the same numbers from the same snapshot.
    """

    user_impressions: Annotated[int, Field(ge=0)] = 0
    user_clicks: Annotated[int, Field(ge=0)] = 0
    item_impressions: Annotated[int, Field(ge=0)] = 0
    item_clicks: Annotated[int, Field(ge=0)] = 0
    #: Exponentially decayed counts (half-life ``FeatureConfig.ctr_half_life``).
    item_recent_impressions: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] = 0.0
    item_recent_clicks: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] = 0.0
    #: Catalog category of the item ("" while the catalog has not announced it).
    category: Annotated[str, Field(max_length=128)] = ""
    #: The user's most recently clicked item ids, oldest first.
    recent_clicks: Annotated[tuple[Id, ...], Field(max_length=1024)] = ()


class Example(Message):
    """A labelled impression on the examples topic, final once ``ready_ts`` has passed.

    ``closed_by`` is ``"window"`` when the attribution window ran out and
    ``"complete"`` when click, conversion and dwell had all arrived.
    """

    type: Literal["example"] = "example"
    impression: Impression
    features: ExampleFeatures
    clicked: bool
    converted: bool = False
    dwell_seconds: _Seconds | None = None
    ready_ts: AwareDatetime
    closed_by: Literal["window", "complete"] = "window"

    @model_validator(mode="after")
    def _outcomes_need_a_click(self) -> Example:
        if not self.clicked and (self.converted or self.dwell_seconds is not None):
            raise ValueError("conversion and dwell need a click (set clicked=True)")
        return self


class ExamplePack(Message):
    """Many examples in one message of the examples topic.

    The joiner sends one pack per batch instead of one message per example, because a
    stream's cost is per message; the trainer still dead-letters a bad example alone.
    """

    type: Literal["examples"] = "examples"
    version: Literal[1] = 1
    examples: list[Example]


#: Largest pack the joiner builds (bytes of example JSON), well under Kafka's 1 MB default.
MAX_PACK_BYTES = 512 * 1024
_EXAMPLES = TypeAdapter(Annotated[ExamplePack | Example, Field(discriminator="type")])


def encode_pack(encoded_examples: Sequence[bytes]) -> bytes:
    """An ``ExamplePack`` from examples already encoded with ``encode`` (no re-encoding).

    >>> from datetime import datetime, timezone
    >>> ts = datetime(2024, 1, 1, tzinfo=timezone.utc)
    >>> shown = Impression(event_id="i", user_id="u", item_id="x", ts=ts)
    >>> one = Example(impression=shown, features=ExampleFeatures(), clicked=False, ready_ts=ts)
    >>> examples, bad = decode_examples(encode_pack([encode(one), b'{"type": "example"}']))
    >>> examples == [one], [index for index, _, _ in bad]
    (True, [1])
    """
    return b'{"type":"examples","version":1,"examples":[' + b",".join(encoded_examples) + b"]}"


def decode_examples(raw: bytes) -> tuple[list[Example], list[tuple[int, str, str]]]:
    """The examples of one message (a pack or a single example), and (index, reason,
    excerpt) for each that is invalid: one bad example never costs its pack-mates."""
    try:
        decoded = _EXAMPLES.validate_json(raw)
    except ValidationError as error:
        try:
            data = json.loads(raw)
        except ValueError:
            return [], [(0, f"invalid example: {explain(error)}", as_payload(raw))]
        if not (isinstance(data, dict) and data.get("type") == "examples"):
            return [], [(0, f"invalid example: {explain(error)}", as_payload(raw))]
        return _decode_one_by_one(data.get("examples"))
    return (decoded.examples if isinstance(decoded, ExamplePack) else [decoded]), []


def _decode_one_by_one(items: Any) -> tuple[list[Example], list[tuple[int, str, str]]]:
    if not isinstance(items, list):
        return [], [(0, "invalid example pack: 'examples' is not a list", as_payload(str(items)))]
    good: list[Example] = []
    bad: list[tuple[int, str, str]] = []
    for index, item in enumerate(items):
        try:
            good.append(Example.model_validate(item))
        except ValidationError as error:
            bad.append(
                (
                    index,
                    f"invalid example {index} of its pack: {explain(error)}",
                    as_payload(json.dumps(item)),
                )
            )
    return good, bad
