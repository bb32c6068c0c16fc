"""MIND reader: mapping of behaviors/news rows, rejects, item order, determinism."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from driftrec.core.errors import ConfigError
from driftrec.core.schemas import Click, Conversion, Dwell, Impression, Item
from driftrec.producers.mind import parse_mind_time, read_mind
from driftrec.producers.records import Record, Rejected

MIND = Path(__file__).parent.parent / "fixtures" / "mind"
T1 = datetime(2019, 11, 11, 9, 5, 58, tzinfo=UTC)
T2 = datetime(2019, 11, 11, 13, 30, tzinfo=UTC)


def records(path: Path = MIND) -> list[Record]:
    return list(read_mind(path))


def events(recs: list[Record]) -> list[Impression | Click]:
    return [r for r in recs if isinstance(r, Impression | Click)]


def row(recs: list[Record], impression_id: str) -> list[Impression | Click]:
    return [e for e in events(recs) if e.event_id.startswith(f"mind:{impression_id}-")]


def test_first_row_becomes_impressions_and_a_click() -> None:
    evs = row(records(), "1")
    assert [(e.type, e.item_id, e.user_id, e.ts) for e in evs] == [
        ("impression", "N1", "U1", T1),
        ("click", "N1", "U1", T1 + timedelta(seconds=1)),
        ("impression", "N2", "U1", T1),
    ]
    first, _click, second = evs
    assert isinstance(first, Impression) and isinstance(second, Impression)
    assert (first.position, second.position) == (0, 1)
    assert first.context == {"impression_id": "1"}


def test_only_impressions_and_clicks_with_utc_times() -> None:
    evs = events(records())
    assert all(e.ts.tzinfo is not None and e.ts.utcoffset() == timedelta(0) for e in evs)
    assert not [r for r in records() if isinstance(r, Conversion | Dwell)]
    clicks = [e for e in evs if isinstance(e, Click)]
    impressions = {e.event_id: e for e in evs if isinstance(e, Impression)}
    assert len(clicks) == 3
    for click in clicks:
        shown = impressions[click.event_id.removesuffix(":c") + ":i"]
        assert (click.user_id, click.item_id) == (shown.user_id, shown.item_id)
        assert click.ts == shown.ts + timedelta(seconds=1)


def test_news_rows_become_items_with_abstract_as_text() -> None:
    items = {r.item_id: r for r in records() if isinstance(r, Item)}
    assert items["N1"].title == "Bears win in overtime"
    assert items["N1"].text == "A late field goal seals it."
    assert items["N1"].category == "sports"
    assert items["N2"].text == ""
    assert "N4" not in items  # in news.tsv but never shown: not yielded


def test_items_come_once_before_their_first_event_with_its_time() -> None:
    seen: dict[str, Item] = {}
    for record in records():
        if isinstance(record, Item):
            assert record.item_id not in seen
            seen[record.item_id] = record
        elif isinstance(record, Impression | Click):
            assert record.item_id in seen
    assert seen["N1"].ts == T1 and seen["N3"].ts == T2


def test_bad_news_rows_are_rejected_first_with_lines() -> None:
    recs = records()
    head = recs[:3]
    assert all(isinstance(r, Rejected) for r in head)
    assert [(r.source, r.line) for r in head if isinstance(r, Rejected)] == [
        (str(MIND / "news.tsv"), 5),
        (str(MIND / "news.tsv"), 6),
        (str(MIND / "news.tsv"), 7),
    ]
    reasons = [r.reason for r in head if isinstance(r, Rejected)]
    assert "expected 8 tab-separated columns" in reasons[0]
    assert "duplicate news id 'N1' (first on line 1)" in reasons[1]
    assert reasons[2].startswith("invalid news item: title:")


def test_bad_behavior_rows_are_rejected_with_line_and_reason() -> None:
    bad = {
        (r.line, r.reason)
        for r in records()
        if isinstance(r, Rejected) and r.source.endswith("behaviors.tsv")
    }
    lines = sorted(line for line, _ in bad)
    assert lines == [3, 4, 5, 6, 8, 9]
    reasons = dict(bad)
    assert "time 'yesterday'" in reasons[3]
    assert "'N1-2' is not NEWS_ID-0" in reasons[4]
    assert "expected 5 tab-separated columns" in reasons[5]
    assert reasons[6] == "unknown item 'N99' at position 1: not in news.tsv"
    assert reasons[8] == "no impressions in the impressions column"
    assert reasons[9].startswith("unknown item 'N6'")  # its news row was rejected


def test_unknown_item_rejects_only_its_token_and_keeps_positions() -> None:
    row6 = row(records(), "6")
    assert [(e.item_id, e.position) for e in row6 if isinstance(e, Impression)] == [
        ("N1", 0),
        ("N3", 2),
    ]
    rejected = [
        r for r in records() if isinstance(r, Rejected) and r.line == 6 and "N99" in r.reason
    ]
    assert rejected[0].raw == "6\tU4\t11/13/2019 10:00:00 AM\t\tN1-0 N99-1 N3-0"


def test_unlabelled_tokens_give_impressions_only() -> None:
    row7 = row(records(), "7")
    assert [(e.type, e.item_id) for e in row7] == [("impression", "N2"), ("impression", "N1")]


def test_ids_are_deterministic_and_unique() -> None:
    first, second = records(), records()
    assert first == second
    ids = [e.event_id for e in events(first)]
    assert len(ids) == len(set(ids))
    assert ids[0].startswith("mind:1-") and ids[0].endswith(":0:i")


def test_same_impression_id_in_another_split_gets_other_ids(tmp_path: Path) -> None:
    split = tmp_path / "dev"
    split.mkdir()
    shutil.copy(MIND / "news.tsv", split / "news.tsv")
    (split / "behaviors.tsv").write_text("1\tU9\t12/01/2019 9:00:00 AM\t\tN1-0\n")
    dev_ids = {e.event_id for e in events(records(split))}
    train_ids = {e.event_id for e in events(records())}
    assert dev_ids and not dev_ids & train_ids


def test_behaviors_path_reads_like_its_folder() -> None:
    assert records(MIND / "behaviors.tsv") == records(MIND)


def test_missing_files_raise_config_error_at_call(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"behaviors\.tsv"):
        read_mind(tmp_path)
    (tmp_path / "behaviors.tsv").write_text("")
    with pytest.raises(ConfigError, match=r"news\.tsv"):
        read_mind(tmp_path)


def test_undecodable_and_long_rows_are_rejected_not_raised(tmp_path: Path) -> None:
    shutil.copy(MIND / "news.tsv", tmp_path / "news.tsv")
    long_row = "x" * 2000
    (tmp_path / "behaviors.tsv").write_bytes(
        b"1\tU\xff1\t11/11/2019 9:05:58 AM\t\tN1-1\n" + long_row.encode() + b"\n"
    )
    rejected = [
        r
        for r in records(tmp_path)
        if isinstance(r, Rejected) and r.source.endswith("behaviors.tsv")
    ]
    assert (rejected[0].line, rejected[0].reason) == (1, "line is not valid UTF-8")
    assert "\ufffd" in rejected[0].raw
    assert rejected[1].line == 2 and len(rejected[1].raw) == 500


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("11/11/2019 9:05:58 AM", datetime(2019, 11, 11, 9, 5, 58, tzinfo=UTC)),
        ("11/11/2019 12:00:00 AM", datetime(2019, 11, 11, 0, 0, 0, tzinfo=UTC)),
        ("11/11/2019 12:59:59 PM", datetime(2019, 11, 11, 12, 59, 59, tzinfo=UTC)),
        ("1/2/2020 11:00:00 pm", datetime(2020, 1, 2, 23, 0, 0, tzinfo=UTC)),
        ("11/11/2019 13:00:00 PM", None),
        ("11/31/2019 9:00:00 AM", None),
        ("11/11/2019 9:05:58", None),
        ("", None),
    ],
)
def test_parse_mind_time(text: str, expected: datetime | None) -> None:
    assert parse_mind_time(text) == expected
