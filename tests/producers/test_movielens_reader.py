"""MovieLens reader: ml-100k and ml-latest layouts, label mapping, rejects, time order."""

from __future__ import annotations

import shutil
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from driftrec.core.errors import ConfigError
from driftrec.core.schemas import Click, Conversion, Dwell, Impression, Item
from driftrec.producers.movielens import dwell_seconds, read_movielens
from driftrec.producers.records import Record, Rejected

FIXTURES = Path(__file__).parent.parent / "fixtures" / "movielens"
ML100K = FIXTURES / "ml-100k"
LATEST = FIXTURES / "ml-latest"
REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "movielens-latest-small"
EventType = Impression | Click | Conversion | Dwell


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def events(recs: list[Record]) -> list[EventType]:
    return [r for r in recs if isinstance(r, EventType)]


def rejected(recs: list[Record], name: str) -> dict[int, Rejected]:
    return {r.line: r for r in recs if isinstance(r, Rejected) and r.source.endswith(name)}


def test_ratings_map_to_impression_click_conversion_dwell() -> None:
    evs = events(list(read_movielens(ML100K)))
    five_star = [e for e in evs if e.user_id == "22"]
    t = 878887116
    assert [(e.type, e.event_id, e.ts) for e in five_star] == [
        ("impression", f"ml:22:1:{t}:i", at(t)),
        ("click", f"ml:22:1:{t}:c", at(t + 1)),
        ("conversion", f"ml:22:1:{t}:v", at(t + 2)),
        ("dwell", f"ml:22:1:{t}:d", at(t + 3)),
    ]
    assert isinstance(five_star[-1], Dwell) and five_star[-1].seconds == 240.0
    four_star = [e.type for e in evs if e.user_id == "186"]
    assert four_star == ["impression", "click", "dwell"]
    for low in ("196", "244", "253"):  # 3, 2 and 1 stars
        assert [e.type for e in evs if e.user_id == low] == ["impression"]
    impression = evs[0]
    assert isinstance(impression, Impression)
    assert impression.position == 0 and impression.context == {}


def test_dwell_doubles_per_half_star() -> None:
    assert [dwell_seconds(r) for r in (4.0, 4.5, 5.0)] == [60.0, 120.0, 240.0]


def test_ml100k_items_use_genre_flags_and_latin1() -> None:
    items = {r.item_id: r for r in read_movielens(ML100K) if isinstance(r, Item)}
    assert items["1"].category == "Animation"
    assert items["1"].text == "Toy Story (1995). Genres: Animation, Children's, Comedy."
    assert items["3"].title == "Café au lait (1994)"
    assert items["5"].category == ""  # only the "unknown" genre
    assert items["2"].ts == at(891717742)  # time of its first rating


def test_ml100k_rejects_carry_file_line_and_reason() -> None:
    recs = list(read_movielens(ML100K))
    assert set(rejected(recs, "u.item")) == {4}
    bad = rejected(recs, "u.data")
    assert sorted(bad) == [5, 6, 7]
    assert bad[5].reason == "rating 'five' is not a number"
    assert bad[6].reason == "unknown item '474': not in u.item"
    assert bad[6].raw == "298\t474\t4\t884182806"
    assert "expected 4 fields" in bad[7].reason


def test_ml100k_without_u_genre_uses_the_standard_list(tmp_path: Path) -> None:
    for name in ("u.data", "u.item"):
        shutil.copy(ML100K / name, tmp_path / name)

    def comparable(folder: Path) -> list[object]:
        return [
            (r.line, r.reason) if isinstance(r, Rejected) else r for r in read_movielens(folder)
        ]

    assert comparable(tmp_path) == comparable(ML100K)


def test_ml_latest_parses_quoted_titles_and_missing_genres() -> None:
    items = {r.item_id: r for r in read_movielens(LATEST) if isinstance(r, Item)}
    assert items["2"].title == "American President, The (1995)"
    assert items["2"].category == "Comedy"
    assert items["6"].title == 'Multi "quoted" title (2001)'
    assert items["4"].category == "" and items["4"].text == items["4"].title
    assert items["1"].text.endswith("Genres: Adventure, Animation, Children, Comedy, Fantasy.")


def test_ml_latest_rejects_bad_rows_including_a_truncated_last_line() -> None:
    recs = list(read_movielens(LATEST))
    movies = rejected(recs, "movies.csv")
    assert sorted(movies) == [4, 6, 7]
    assert movies[4].reason.startswith("bad CSV")
    assert "duplicate movie id '1'" in movies[7].reason
    ratings = rejected(recs, "ratings.csv")
    assert sorted(ratings) == [6, 7, 8, 10, 11]
    assert ratings[6].reason.startswith("unknown item '999'")
    assert ratings[8].reason == "rating 6.0 is outside 0.5..5"
    assert "timestamp ''" in ratings[10].reason
    assert ratings[11].raw == "3,1,4"
    assert Counter(e.type for e in events(recs)) == {
        "impression": 5,
        "click": 3,
        "dwell": 3,
        "conversion": 2,
    }


def test_items_come_once_before_their_first_rating() -> None:
    for folder in (ML100K, LATEST):
        seen: set[str] = set()
        for record in read_movielens(folder):
            if isinstance(record, Item):
                assert record.item_id not in seen
                seen.add(record.item_id)
            elif isinstance(record, EventType):
                assert record.item_id in seen


def test_file_order_is_kept_by_default() -> None:
    impressions = [e for e in events(list(read_movielens(LATEST))) if isinstance(e, Impression)]
    assert [(e.user_id, e.item_id) for e in impressions] == [
        ("1", "1"),
        ("1", "2"),
        ("1", "4"),
        ("2", "1"),
        ("3", "6"),
    ]


def test_time_order_sorts_events_and_keeps_the_same_events() -> None:
    by_file = list(read_movielens(LATEST))
    by_time = list(read_movielens(LATEST, time_order=True))
    evs = events(by_time)
    assert [e.ts for e in evs] == sorted(e.ts for e in evs)
    assert evs[0].item_id == "6"  # the earliest rating, last in the file
    assert sorted(map(repr, events(by_file))) == sorted(map(repr, evs))
    first_event = next(i for i, r in enumerate(by_time) if isinstance(r, EventType))
    assert all(not isinstance(r, Rejected) for r in by_time[first_event:])
    assert len([r for r in by_time if isinstance(r, Rejected)]) == 8


def test_time_order_interleaves_clicks_with_close_ratings(tmp_path: Path) -> None:
    shutil.copy(LATEST / "movies.csv", tmp_path / "movies.csv")
    (tmp_path / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,1,5.0,100\n2,2,3.0,101\n"
    )
    evs = events(list(read_movielens(tmp_path, time_order=True)))
    assert [(e.type, e.user_id) for e in evs] == [
        ("impression", "1"),
        ("click", "1"),
        ("impression", "2"),  # at 101 s, tied with the click: the click goes first
        ("conversion", "1"),
        ("dwell", "1"),
    ]


def test_replaying_gives_identical_ids() -> None:
    assert list(read_movielens(LATEST)) == list(read_movielens(LATEST))
    ids = [e.event_id for e in events(list(read_movielens(LATEST)))]
    assert len(ids) == len(set(ids))


def test_layout_errors_raise_config_error_at_call(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a MovieLens folder"):
        read_movielens(tmp_path)
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n")
    with pytest.raises(ConfigError, match=r"movies\.csv"):
        read_movielens(tmp_path)
    (tmp_path / "movies.csv").write_text("id,name\n")
    with pytest.raises(ConfigError, match="header"):
        read_movielens(tmp_path / "ratings.csv")


def test_reading_is_lazy() -> None:
    reader = read_movielens(LATEST)
    first = [next(reader) for _ in range(5)]
    assert isinstance(first[-1], Impression)
    reader.close()  # type: ignore[attr-defined]  # a generator; closing releases the file


@pytest.mark.skipif(not REAL.is_dir(), reason="ml-latest-small is not in ../shared/data")
def test_real_ml_latest_small_parses_without_rejects() -> None:
    counts = Counter(type(r).__name__ for r in read_movielens(REAL))
    assert counts["Rejected"] == 0
    assert counts["Impression"] == 100_836
    assert counts["Click"] == counts["Dwell"] > counts["Conversion"] > 0
    assert 9_000 < counts["Item"] <= 9_742


def test_a_missing_path_is_not_read_as_its_parent() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        read_movielens(ML100K / "no-such-file")
