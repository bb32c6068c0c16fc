"""The foundation every other layer stands on: errors, schemas, dead letters, configuration.

It imports nothing else of driftrec. ``schemas`` is the one schema of every message that
crosses a topic; ``errors`` the one error hierarchy; ``DriftrecConfig`` what lower layers
receive instead of reading the environment.
"""

from __future__ import annotations

from driftrec.core.config import DriftrecConfig
from driftrec.core.deadletters import dead_letter
from driftrec.core.epochs import restore_epoch
from driftrec.core.errors import ConfigError, DriftrecError, InfraError, InvalidEvent, InvalidRow
from driftrec.core.schemas import (
    EVENT_TYPES,
    MAX_MESSAGE_BYTES,
    MAX_PACK_BYTES,
    Click,
    Conversion,
    DeadLetter,
    Dwell,
    Event,
    Example,
    ExampleFeatures,
    ExamplePack,
    Impression,
    Item,
    Message,
    as_payload,
    decode_event,
    decode_examples,
    decode_item,
    encode,
    encode_pack,
    explain,
)

__all__ = [
    "EVENT_TYPES",
    "MAX_MESSAGE_BYTES",
    "MAX_PACK_BYTES",
    "Click",
    "ConfigError",
    "Conversion",
    "DeadLetter",
    "DriftrecConfig",
    "DriftrecError",
    "Dwell",
    "Event",
    "Example",
    "ExampleFeatures",
    "ExamplePack",
    "Impression",
    "InfraError",
    "InvalidEvent",
    "InvalidRow",
    "Item",
    "Message",
    "as_payload",
    "dead_letter",
    "decode_event",
    "decode_examples",
    "decode_item",
    "encode",
    "encode_pack",
    "explain",
    "restore_epoch",
]
