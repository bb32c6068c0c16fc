"""open_source: format guessing, dispatch, options, limit semantics, shared helpers."""

from __future__ import annotations

import io
import shutil
import sys
import types
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest
from driftrec.core.errors import ConfigError
from driftrec.core.schemas import Click, Item
from driftrec.producers.lines import csv_rows, reject
from driftrec.producers.mind import read_mind
from driftrec.producers.movielens import read_movielens
from driftrec.producers.records import Record, Rejected
from driftrec.producers.sources import FORMATS, guess_format, open_source
from driftrec.producers.tabular import read_tabular

FIXTURES = Path(__file__).parent.parent / "fixtures"
MIND = FIXTURES / "mind"
ML100K = FIXTURES / "movielens" / "ml-100k"
LATEST = FIXTURES / "movielens" / "ml-latest"
TABULAR = FIXTURES / "tabular"


def is_event(record: Record) -> bool:
    return not isinstance(record, Item | Rejected)


@pytest.mark.parametrize(
    ("path", "fmt"),
    [
        (MIND, "mind"),
        (MIND / "behaviors.tsv", "mind"),
        (ML100K, "movielens"),
        (ML100K / "u.data", "movielens"),
        (LATEST, "movielens"),
        (LATEST / "ratings.csv", "movielens"),
        (TABULAR / "events.csv", "csv"),
        (TABULAR / "events.jsonl", "jsonl"),
    ],
)
def test_guess_format(path: Path, fmt: str) -> None:
    assert guess_format(path) == fmt


def test_guess_format_refuses_what_it_cannot_tell(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"neither behaviors\.tsv"):
        guess_format(tmp_path)
    shutil.copy(LATEST / "ratings.csv", tmp_path / "ratings.csv")
    assert guess_format(tmp_path / "ratings.csv") == "csv"  # no movies.csv beside it
    (tmp_path / "log.txt").write_text("")
    with pytest.raises(
        ConfigError, match="pass fmt= one of mind, movielens, csv, jsonl, synthetic"
    ):
        guess_format(tmp_path / "log.txt")


def test_dispatch_gives_the_readers_records() -> None:
    assert list(open_source(MIND)) == list(read_mind(MIND))
    assert list(open_source(str(LATEST))) == list(read_movielens(LATEST))
    assert list(open_source(TABULAR / "events.jsonl")) == list(
        read_tabular(TABULAR / "events.jsonl", "jsonl")
    )
    assert list(open_source(TABULAR / "events.jsonl", "jsonl")) == list(
        open_source(TABULAR / "events.jsonl")
    )


def test_limit_counts_events_only() -> None:
    full = list(open_source(MIND))
    limited = list(open_source(MIND, limit=3))
    assert sum(map(is_event, limited)) == 3
    assert limited == full[: len(limited)]
    assert is_event(limited[-1])  # stops right after the last allowed event
    assert any(isinstance(r, Item) for r in limited) and any(
        isinstance(r, Rejected) for r in limited
    )
    assert list(open_source(MIND, limit=0)) == []
    assert list(open_source(MIND, limit=10_000)) == full


def test_bad_limit_format_or_path_raise_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="limit must be 0 or more"):
        open_source(MIND, limit=-1)
    with pytest.raises(ConfigError, match="unknown format 'parquet'"):
        open_source(MIND, "parquet")
    with pytest.raises(ConfigError, match="does not exist"):
        open_source(tmp_path / "missing")
    assert FORMATS == ("mind", "movielens", "csv", "jsonl", "synthetic")


def test_options_reach_the_readers() -> None:
    by_time = list(open_source(LATEST, options={"time_order": "true"}))
    assert by_time == list(read_movielens(LATEST, time_order=True))
    mapped = list(
        open_source(
            TABULAR / "events.csv",
            options={"user_id": "uid", "item_id": "item", "items": str(TABULAR / "items.csv")},
        )
    )
    assert mapped == list(
        read_tabular(
            TABULAR / "events.csv",
            "csv",
            {"user_id": "uid", "item_id": "item"},
            TABULAR / "items.csv",
        )
    )
    clicks = list(open_source(TABULAR / "clicks.csv", options={"event_type": "click"}))
    assert [type(r) for r in clicks] == [Click, Click]


def test_options_a_reader_does_not_take_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="format mind does not take option"):
        open_source(MIND, options={"sort": "true"})
    with pytest.raises(ConfigError, match="expected true or false"):
        open_source(LATEST, options={"time_order": "sometimes"})
    with pytest.raises(ConfigError, match=r"does not take option.*speed"):
        open_source(TABULAR / "events.csv", options={"speed": "2"})


def fake_synthetic(seen: dict[str, object]) -> types.ModuleType:
    module = types.ModuleType("driftrec.producers.synthetic")

    def synthetic_records(source: str | Path, options: Mapping[str, str]) -> Iterator[Record]:
        seen.update(source=source, options=dict(options))
        n = 0
        try:
            while True:  # an endless stream: only limit stops it
                n += 1
                ts = datetime.fromtimestamp(n, UTC)
                yield Click(event_id=f"s{n}", user_id="u", item_id="i", ts=ts)
        finally:
            seen["closed"] = True

    module.synthetic_records = synthetic_records  # type: ignore[attr-defined]
    return module


def test_synthetic_dispatch_is_limited_and_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}
    monkeypatch.setitem(sys.modules, "driftrec.producers.synthetic", fake_synthetic(seen))
    records = list(open_source("drift-demo", "synthetic", limit=5, options={"seed": "7"}))
    assert [r.event_id for r in records if isinstance(r, Click)] == ["s1", "s2", "s3", "s4", "s5"]
    # The world is sized to the limit, so its drifts fall inside the events read.
    assert seen == {
        "source": "drift-demo",
        "options": {"seed": "7", "n_events": "5"},
        "closed": True,
    }


def test_synthetic_without_its_module_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "driftrec.producers.synthetic", None)
    with pytest.raises(ConfigError, match="synthetic generator is not available"):
        open_source("demo", "synthetic")


def test_reject_cuts_raw_and_replaces_undecodable_bytes() -> None:
    row = reject(Path("log.csv"), 3, "bad", "a\udcff" + "x" * 900 + "\n")
    assert (row.source, row.line, row.reason) == ("log.csv", 3, "bad")
    assert row.raw.startswith("a\ufffdx") and len(row.raw) == 500


def test_csv_rows_recovers_after_a_bad_record() -> None:
    rows = list(csv_rows(io.StringIO('a,b\n"x"y,z\nc,"d\ne"\nf,g\n"open')))
    assert [(r.line, r.fields, r.error is not None) for r in rows] == [
        (1, ["a", "b"], False),
        (2, None, True),
        (3, ["c", "d\ne"], False),
        (5, ["f", "g"], False),
        (6, None, True),
    ]
    assert rows[2].raw == 'c,"d\ne"\n'
