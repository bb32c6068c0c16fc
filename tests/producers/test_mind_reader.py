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
    assert len(clicks) == 5  # N99 and N6 have no news row: their clicks count all the same
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
            assert record.item_id in seen or record.item_id in {"N99", "N6"}  # no news row
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
    assert lines == [3, 4, 5, 8]
    reasons = dict(bad)
    assert "time 'yesterday'" in reasons[3]
    assert "'N1-2' is not NEWS_ID-0" in reasons[4]
    assert "expected 5 tab-separated columns" in reasons[5]
    assert reasons[8] == "no impressions in the impressions column"


def test_an_item_without_a_news_row_still_counts_with_no_item_record() -> None:
    recs = records()
    row6 = row(recs, "6")
    assert [(e.type, e.item_id) for e in row6] == [
        ("impression", "N1"),
        ("impression", "N99"),
        ("click", "N99"),
        ("impression", "N3"),
    ]
    assert [e.position for e in row6 if isinstance(e, Impression)] == [0, 1, 2]
    items = {r.item_id for r in recs if isinstance(r, Item)}
    assert "N99" not in items and "N6" not in items  # N6's news row itself was rejected
    assert [e.type for e in row(recs, "9")] == ["impression", "click", "impression", "click"]


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


def _shuffled_mind(folder: Path) -> Path:
    """A MIND folder in the real format whose behaviors are out of time order, with two
    rows in one second and a click due after a later-starting row."""
    folder.mkdir()
    shutil.copy(MIND / "news.tsv", folder / "news.tsv")
    rows = [
        "10\tU1\t11/12/2019 10:00:05 AM\t\tN2-0",
        "11\tU2\t11/12/2019 10:00:00 AM\t\tN1-1 N3-0",
        "12\tU3\tyesterday\t\tN1-0",
        "13\tU3\t11/11/2019 8:00:00 AM\t\tN3-1",
        "14\tU4\t11/12/2019 10:00:01 AM\t\tN77-0",
        "15\tU5\t11/12/2019 10:00:00 AM\t\tN2-1",
    ]
    (folder / "behaviors.tsv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.mark.parametrize("chunk_rows", [1, 2, 100])
def test_time_order_sorts_rows_in_bounded_runs_and_time_never_goes_back(
    tmp_path: Path, chunk_rows: int
) -> None:
    folder = _shuffled_mind(tmp_path / "mind")
    ordered = list(read_mind(folder, time_order=True, chunk_rows=chunk_rows))
    rejected = [r for r in ordered if isinstance(r, Rejected)]
    bad_rows = [r.line for r in rejected if r.source.endswith("behaviors.tsv")]
    assert bad_rows == [3]
    first_event = next(i for i, r in enumerate(ordered) if isinstance(r, Impression | Click))
    assert all(not isinstance(r, Rejected) for r in ordered[first_event:])  # rejects first
    evs = events(ordered)
    assert [e.ts for e in evs] == sorted(e.ts for e in evs)
    shown = [e.event_id.split("-")[0] for e in evs if isinstance(e, Impression)]
    assert shown == ["mind:13", "mind:11", "mind:11", "mind:15", "mind:14", "mind:10"]
    # the same events as in file order, and every item still announced before its use
    assert sorted(e.event_id for e in evs) == sorted(e.event_id for e in events(records(folder)))
    announced: set[str] = set()
    for r in ordered:
        if isinstance(r, Item):
            announced.add(r.item_id)
        elif isinstance(r, Impression | Click):
            assert r.item_id in announced or r.item_id == "N77"


def test_time_order_is_an_option_of_the_mind_format(tmp_path: Path) -> None:
    from driftrec.producers.sources import open_source

    folder = _shuffled_mind(tmp_path / "mind")
    evs = events(list(open_source(folder, "mind", options={"time_order": "true"})))
    assert [e.ts for e in evs] == sorted(e.ts for e in evs)
    with pytest.raises(ConfigError, match="chunk_rows"):
        read_mind(folder, time_order=True, chunk_rows=0)


def test_the_replay_counts_items_shown_without_a_news_row() -> None:
    from driftrec.producers.replay import ReplaySummary, encode_records

    kinds = [(kind, key) for kind, key, _, _ in encode_records(records())]
    assert [key for kind, key in kinds if kind == "uncatalogued"] == [b"N99", b"N6"]
    first_n99 = kinds.index(("uncatalogued", b"N99"))
    assert kinds[first_n99 + 1][0] == "impression"  # counted before its first event
    lines = ReplaySummary(uncatalogued=2).lines()
    assert "2 items shown without a catalog row" in "\n".join(lines)
