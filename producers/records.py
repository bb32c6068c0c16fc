"""What a click-log reader yields: a validated event or item, or a rejected row.

Readers never raise on a bad row: they yield ``Rejected`` with the file, line and
reason so the replay can dead-letter it and carry on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from driftrec.core import Click, Conversion, Dwell, Impression, Item

__all__ = ["EventRecord", "Record", "Rejected"]


@dataclass(frozen=True, slots=True)
class Rejected:
    """A row that could not become an event or item."""

    source: str
    line: int
    reason: str
    raw: str = ""


EventRecord: TypeAlias = Impression | Click | Conversion | Dwell
Record: TypeAlias = Item | Impression | Click | Conversion | Dwell | Rejected
