"""Generic CSV/JSONL reader: mapping, timestamps, catalog, rejects, streaming."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from driftrec.core.errors import ConfigError
from driftrec.core.schemas import Click, Conversion, Dwell, Impression, Item
from driftrec.producers.records import Record, Rejected
from driftrec.producers.tabular import parse_ts, read_tabular
from hypothesis import given
from hypothesis import strategies as st

TABULAR = Path(__file__).parent.parent / "fixtures" / "tabular"
MAPPING = {"user_id": "uid", "item_id": "item"}
EventType = Impression | Click | Conversion | Dwell


def csv_records(items: bool = True) -> list[Record]:
    catalog = TABULAR / "items.csv" if items else None
    return list(read_tabular(TABULAR / "events.csv", "csv", MAPPING, catalog))


def rejects(recs: list[Record]) -> dict[tuple[str, int], str]:
    return {(Path(r.source).name, r.line): r.reason for r in recs if isinstance(r, Rejected)}


def test_csv_rows_become_typed_events_in_utc() -> None:
    evs = [r for r in csv_records() if isinstance(r, EventType)]
    assert [(e.type, e.event_id, e.user_id, e.item_id) for e in evs[:4]] == [
        ("impression", "e1", "u1", "i1"),
        ("click", "e2", "u1", "i1"),
        ("dwell", "e3", "u1", "i1"),
        ("conversion", "e4", "u1", "i1"),
    ]
    base = datetime(2024, 1, 2, 10, 0, tzinfo=UTC)
    assert [e.ts for e in evs[:4]] == [base + timedelta(seconds=s) for s in (0, 1, 30, 40)]
    assert all(e.ts.utcoffset() == timedelta(0) for e in evs)
    impression, _, dwell = evs[:3]
    assert isinstance(impression, Impression) and isinstance(dwell, Dwell)
    assert impression.position == 3 and impression.context == {"page": "home"}
    assert dwell.seconds == 42.5


def test_missing_event_id_is_file_line_and_row_hash() -> None:
    first = [r for r in csv_records() if isinstance(r, Impression) and r.user_id == "u2"]
    assert first[0].event_id.startswith("events.csv:6:")
    again = [r for r in csv_records() if isinstance(r, Impression) and r.user_id == "u2"]
    assert first == again


def test_csv_bad_rows_are_rejected_with_line_and_reason() -> None:
    bad = rejects(csv_records())
    assert bad[("items.csv", 5)] == "item row is missing item_id (column 'item' or 'item_id')"
    assert "has no UTC offset" in bad[("events.csv", 7)]
    assert bad[("events.csv", 8)].startswith("unknown type 'view'")
    assert bad[("events.csv", 9)].startswith("unknown item 'i404'")
    assert bad[("events.csv", 10)].startswith("invalid impression: position:")
    assert bad[("events.csv", 11)] == "context 'not json' is not a JSON object"
    assert bad[("events.csv", 12)] == "expected 8 cells like the header, got 5"  # truncated
    assert len(bad) == 7


def test_catalog_items_come_before_first_reference_and_unused_ones_never() -> None:
    recs = csv_records()
    items = [r for r in recs if isinstance(r, Item)]
    assert [i.item_id for i in items] == ["i1", "i2"]  # i3 is never referenced
    assert items[0].ts == datetime(2024, 1, 1, tzinfo=UTC)  # from the catalog
    assert items[1].ts == datetime(2024, 1, 2, 11, 0, tzinfo=UTC)  # first reference's time
    assert items[1].text == "" and items[0].category == "kitchen"
    for name in ("i1", "i2"):
        first_event = next(
            i for i, r in enumerate(recs) if isinstance(r, EventType) and r.item_id == name
        )
        assert (
            next(i for i, r in enumerate(recs) if isinstance(r, Item) and r.item_id == name)
            < first_event
        )


def test_without_a_catalog_item_references_are_not_checked() -> None:
    recs = csv_records(items=False)
    assert any(isinstance(r, Click) and r.item_id == "i404" for r in recs)
    assert not any(isinstance(r, Item) for r in recs)


def test_jsonl_inline_items_int_ids_and_epoch_millis() -> None:
    recs = list(read_tabular(TABULAR / "events.jsonl", "jsonl"))
    item, impression, click = recs[:3]
    assert isinstance(item, Item) and item.item_id == "i1" and item.title == "Blue kettle"
    assert isinstance(impression, Impression)
    assert (impression.event_id, impression.user_id, impression.position) == ("j1", "42", 2)
    assert impression.ts == datetime(2024, 1, 1, tzinfo=UTC)
    assert isinstance(click, Click)  # "Click" in the file: type is case-insensitive
    assert click.ts == datetime(2024, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert click.event_id.startswith("events.jsonl:3:")


def test_jsonl_bad_rows_are_rejected_not_raised() -> None:
    bad = rejects(list(read_tabular(TABULAR / "events.jsonl", "jsonl")))
    assert bad[("events.jsonl", 4)].startswith("bad JSON:")
    assert bad[("events.jsonl", 5)] == "a JSONL row must be a JSON object, got list"
    assert bad[("events.jsonl", 7)].startswith("invalid dwell: seconds:")
    assert "has no UTC offset" in bad[("events.jsonl", 8)]
    assert "got bool" in bad[("events.jsonl", 9)]
    assert bad[("events.jsonl", 10)].startswith("bad JSON:")  # truncated last line
    assert len(bad) == 6  # the blank line 6 is skipped, not rejected


def test_fixed_event_type_for_a_file_of_one_kind() -> None:
    recs = list(read_tabular(TABULAR / "clicks.csv", "csv", event_type="click"))
    assert [(type(r), r.item_id) for r in recs if isinstance(r, Click)] == [
        (Click, "i1"),
        (Click, "i2"),
    ]
    missing = list(read_tabular(TABULAR / "clicks.csv", "csv"))
    assert all(isinstance(r, Rejected) and "missing type" in r.reason for r in missing)


def test_multiline_csv_field_keeps_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text('type,item_id,title,text,ts\nitem,a,A,"two\nlines",0\nitem,b,,x,0\n')
    recs = list(read_tabular(path, "csv"))
    assert isinstance(recs[0], Item) and recs[0].text == "two\nlines"
    assert isinstance(recs[1], Rejected) and recs[1].line == 4
    assert recs[1].reason == "item row is missing title (column 'title')"


def test_undecodable_long_and_unclosed_rows(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    long_title = "t" * 900
    path.write_bytes(
        b"type,item_id,title,ts\n"
        b"item,\xff,bad bytes,0\n" + f"item,x,{long_title},0\n".encode() + b'item,y,"unclosed,0\n'
    )
    bad = [r for r in read_tabular(path, "csv") if isinstance(r, Rejected)]
    assert (bad[0].line, bad[0].reason) == (2, "line is not valid UTF-8")
    assert bad[1].line == 3 and "title" in bad[1].reason and len(bad[1].raw) == 500
    assert bad[2].line == 4 and bad[2].reason.startswith("bad CSV")


def test_long_file_names_still_give_valid_ids(tmp_path: Path) -> None:
    path = tmp_path / ("x" * 200 + ".jsonl")
    path.write_text('{"type": "click", "user_id": "u", "item_id": "i", "ts": 0}\n')
    (click,) = read_tabular(path, "jsonl")
    assert isinstance(click, Click) and len(click.event_id) <= 128


def test_config_errors_at_call(tmp_path: Path) -> None:
    log = TABULAR / "events.jsonl"
    with pytest.raises(ConfigError, match="csv or jsonl"):
        read_tabular(log, "parquet")
    with pytest.raises(ConfigError, match="cannot map 'user'"):
        read_tabular(log, "jsonl", {"user": "uid"})
    with pytest.raises(ConfigError, match="event_type 'view'"):
        read_tabular(log, "jsonl", event_type="view")
    with pytest.raises(ConfigError, match="is not a file"):
        read_tabular(tmp_path / "nope.jsonl", "jsonl")
    with pytest.raises(ConfigError, match="is not a file"):
        read_tabular(log, "jsonl", items_path=tmp_path / "nope.csv")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a named pipe")
def test_rows_are_yielded_before_the_file_ends(tmp_path: Path) -> None:
    pipe = tmp_path / "live.jsonl"
    os.mkfifo(pipe)
    release, closed = threading.Event(), threading.Event()

    def writer() -> None:
        with open(pipe, "w") as handle:
            handle.write('{"type": "click", "user_id": "u", "item_id": "i", "ts": 0}\n')
            handle.flush()
            release.wait(5)  # keep the pipe open: the file has no end yet
        closed.set()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        first = next(iter(read_tabular(pipe, "jsonl")))
        assert isinstance(first, Click)
        assert not closed.is_set()  # got the row while the writer still held the pipe
    finally:
        release.set()
        thread.join(10)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-01-01T00:00:00Z", datetime(2024, 1, 1, tzinfo=UTC)),
        ("2024-01-01 05:30:00+05:30", datetime(2024, 1, 1, tzinfo=UTC)),
        (1704067200, datetime(2024, 1, 1, tzinfo=UTC)),
        (1704067200.5, datetime(2024, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)),
        ("1704067200000", datetime(2024, 1, 1, tzinfo=UTC)),
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
    ],
)
def test_parse_ts_accepts_offsets_and_epochs(value: object, expected: datetime) -> None:
    parsed = parse_ts(value)
    assert parsed == expected and isinstance(parsed, datetime) and parsed.tzinfo == UTC


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("2024-01-01T00:00:00", "no UTC offset"),
        ("2024-01-01", "no UTC offset"),
        ("yesterday", "neither ISO-8601 nor epoch"),
        (True, "got bool"),
        (None, "got NoneType"),
        (float("nan"), "not a finite number"),
        (1e300, "out of range"),
    ],
)
def test_parse_ts_rejects_with_a_reason(value: object, reason: str) -> None:
    result = parse_ts(value)
    assert isinstance(result, str) and reason in result


@given(
    st.datetimes(
        min_value=datetime(1970, 5, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    )
)
def test_parse_ts_forms_agree(moment: datetime) -> None:
    moment = moment.replace(microsecond=0)
    seconds = int(moment.timestamp())
    offset = moment.astimezone(timezone(timedelta(hours=-7)))
    forms = [seconds, str(seconds), seconds * 1000, moment.isoformat(), offset.isoformat()]
    assert {parse_ts(form) for form in forms} == {moment}


def test_escaped_lone_surrogate_is_rejected_but_pairs_pass(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text(
        '{"type": "item", "item_id": "a", "title": "bad \\udcff", "ts": 0}\n'
        '{"type": "item", "item_id": "b", "title": "emoji \\ud83d\\ude00", "ts": 0}\n'
    )
    bad, good = read_tabular(path, "jsonl")
    assert isinstance(bad, Rejected) and "surrogate" in bad.reason
    assert isinstance(good, Item) and good.title == "emoji \U0001f600"
