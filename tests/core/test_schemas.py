"""The event schemas: what they accept, what they reject and why."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime

import pytest
from driftrec.core.errors import InvalidEvent
from driftrec.core.schemas import (
    MAX_MESSAGE_BYTES,
    Click,
    Conversion,
    DeadLetter,
    Dwell,
    Impression,
    Item,
    decode_event,
    decode_item,
    encode,
)
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

TS = datetime(2024, 5, 1, 12, tzinfo=UTC)


def raw(**fields: object) -> bytes:
    base: dict[str, object] = {
        "event_id": "e1",
        "user_id": "u1",
        "item_id": "i1",
        "ts": "2024-05-01T12:00:00Z",
    }
    base.update(fields)
    return json.dumps(base).encode()


@pytest.mark.parametrize(
    ("kind", "cls", "extra"),
    [
        ("impression", Impression, {"position": 3, "context": {"device": "ios", "hour": 9}}),
        ("click", Click, {}),
        ("conversion", Conversion, {}),
        ("dwell", Dwell, {"seconds": 42.5}),
    ],
)
def test_each_event_type_round_trips(kind: str, cls: type, extra: dict[str, object]) -> None:
    event = decode_event(raw(type=kind, **extra))
    assert isinstance(event, cls)
    assert event.ts == TS and event.ts.tzinfo is not None
    assert decode_event(encode(event)) == event


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (raw(type="click", event_id=""), "event_id"),
        (raw(type="click", user_id="   "), "user_id"),
        (raw(type="click", ts="2024-05-01T12:00:00"), "timezone"),
        (raw(type="dwell", seconds=-1), "seconds"),
        (
            b'{"type":"dwell","event_id":"e","user_id":"u","item_id":"i","ts":0,"seconds":NaN}',
            "seconds",
        ),
        (raw(type="dwell", seconds="1e999"), "seconds"),
        (raw(type="impression", position="top"), "position"),
        (raw(type="teleport"), "type"),
        (raw(type="click", extra_field=1), "extra_field"),
        (b"\x00\xffnot json", "JSON"),
        (b'{"type": "click", "event_id": "e"', "EOF"),
        (raw(type="click", item_id="x" * 200), "item_id"),
    ],
)
def test_invalid_events_are_rejected_with_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as error:
        decode_event(payload)
    assert reason.lower() in str(error.value).lower()


def test_oversized_payload_is_rejected_before_parsing() -> None:
    with pytest.raises(InvalidEvent, match="exceeds"):
        decode_event(b" " * (MAX_MESSAGE_BYTES + 1))


def test_events_are_immutable() -> None:
    click = Click(event_id="e", user_id="u", item_id="i", ts=TS)
    with pytest.raises(ValidationError):
        click.user_id = "other"  # type: ignore[misc]  # the point of the test


def test_item_text_is_bounded_and_title_required() -> None:
    ok = decode_item(
        json.dumps({"item_id": "i", "title": "A title", "ts": "2024-01-01T00:00:00+01:00"})
    )
    assert ok.text == "" and ok.ts.utcoffset() is not None
    with pytest.raises(InvalidEvent, match="title"):
        decode_item(json.dumps({"item_id": "i", "title": "", "ts": "2024-01-01T00:00:00Z"}))
    with pytest.raises(InvalidEvent, match="text"):
        decode_item(
            json.dumps(
                {"item_id": "i", "title": "t", "text": "x" * 9000, "ts": "2024-01-01T00:00:00Z"}
            )
        )


def test_dead_letter_carries_where_and_why() -> None:
    letter = DeadLetter(reason="bad", stage="replay", ts=TS, file="f.csv", line=3, payload="a,b")
    assert json.loads(encode(letter))["line"] == 3


@given(seconds=st.floats(min_value=0, max_value=7 * 24 * 3600, allow_nan=False))
def test_any_finite_dwell_in_range_is_accepted(seconds: float) -> None:
    event = Dwell(event_id="e", user_id="u", item_id="i", ts=TS, seconds=seconds)
    assert decode_event(encode(event)) == event


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_the_decoder(data: bytes) -> None:
    with contextlib.suppress(InvalidEvent):
        decode_event(data)


def test_item_round_trip() -> None:
    item = Item(
        item_id="n1", title="Rates rise", text="The central bank...", category="finance", ts=TS
    )
    assert decode_item(encode(item)) == item
