"""Open any click log as one stream of records: the reader for its format, options, a limit.

``open_source`` picks the reader for a format (guessed from the path when not given),
checks the path and options up front so a mistake fails before anything is sent, and
stops after ``limit`` events. Items and rejected rows never count towards ``limit``.

>>> from pathlib import Path
>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> _ = (folder / "log.jsonl").write_text(
...     '{"type": "click", "user_id": "u1", "item_id": "i1", "ts": 1700000000}\\n'
...     '{"type": "click", "user_id": "u1", "item_id": "i2", "ts": "2023-11-14T22:13:21Z"}\\n'
... )
>>> guess_format(folder / "log.jsonl")
'jsonl'
>>> [r.item_id for r in open_source(folder / "log.jsonl", limit=1)]
['i1']
>>> _ = (folder / "log.parquet").write_bytes(b"PAR1")
>>> open_source(folder / "log.parquet")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
driftrec.core.errors.ConfigError: cannot tell the format of ...log.parquet: pass fmt= one of mind, movielens, csv, jsonl, synthetic
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from pathlib import Path

from driftrec.core import ConfigError, Item
from driftrec.producers.records import Record, Rejected

__all__ = [
    "FORMATS",
    "guess_format",
    "open_source",
    "synthetic_options",
]

FORMATS: tuple[str, ...] = ("mind", "movielens", "csv", "jsonl", "synthetic")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def guess_format(path: Path) -> str:
    """The reader for ``path``: a MIND or MovieLens folder, or a .csv / .jsonl file."""
    if path.is_dir():
        if (path / "behaviors.tsv").exists():
            return "mind"
        if (path / "u.data").exists() or (path / "ratings.csv").exists():
            return "movielens"
        raise ConfigError(
            f"{path} is a folder but holds neither behaviors.tsv (MIND) nor u.data / "
            "ratings.csv (MovieLens): point at one of those folders or at a .csv / .jsonl file"
        )
    if path.name == "behaviors.tsv":
        return "mind"
    if path.name == "u.data" or (
        path.name == "ratings.csv" and (path.parent / "movies.csv").exists()
    ):
        return "movielens"
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    raise ConfigError(f"cannot tell the format of {path}: pass fmt= one of {', '.join(FORMATS)}")


def synthetic_options(options: Mapping[str, str] | None, limit: int | None) -> dict[str, str]:
    """Options for a synthetic log of ``limit`` events: unless ``n_events`` is given, the
    world itself is sized to the limit, so its drifts and new items fall inside the
    events replayed or evaluated instead of being cut off before the first drift.

    >>> synthetic_options({}, 60000)
    {'n_events': '60000'}
    >>> synthetic_options({"n_events": "9"}, 5)
    {'n_events': '9'}
    """
    opts = dict(options or {})
    if limit is not None and "n_events" not in opts:
        opts["n_events"] = str(limit)
    return opts


def open_source(
    source: str | Path,
    fmt: str | None = None,
    *,
    limit: int | None = None,
    options: Mapping[str, str] | None = None,
) -> Iterator[Record]:
    """Records of ``source`` in log order, at most ``limit`` events (items, rejects free).
    A synthetic log is generated with ``limit`` events (see ``synthetic_options``).

    ``options`` are reader settings as strings (what a CLI ``--option k=v`` gives):
    movielens takes ``time_order``; csv/jsonl take ``items`` (catalog path),
    ``event_type`` (one type for every row) and column names keyed by schema field
    (``user_id=uid``); synthetic gets them all. Raises ``ConfigError`` at once for an
    unknown format, a missing path or an option the reader does not take.
    """
    if limit is not None and limit < 0:
        raise ConfigError(f"limit must be 0 or more events, got {limit}")
    if fmt is not None and fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    opts = dict(options or {})
    if fmt == "synthetic":
        records = _synthetic(source, synthetic_options(opts, limit))
    else:
        path = Path(source)
        if not path.exists():
            raise ConfigError(
                f"{path} does not exist: pass a MIND or MovieLens folder, a .csv or .jsonl "
                "file, or fmt='synthetic'"
            )
        records = _open_path(path, fmt or guess_format(path), opts)
    return records if limit is None else _limited(records, limit)


def _open_path(path: Path, fmt: str, options: dict[str, str]) -> Iterator[Record]:
    if fmt == "mind":
        from driftrec.producers.mind import read_mind

        _no_other_options(fmt, options, ("time_order",))
        return read_mind(path, time_order=_flag(options.get("time_order", "false")))
    if fmt == "movielens":
        from driftrec.producers.movielens import read_movielens

        _no_other_options(fmt, options, ("time_order",))
        return read_movielens(path, time_order=_flag(options.get("time_order", "false")))
    from driftrec.producers.tabular import MAPPABLE_FIELDS, read_tabular

    items = options.pop("items", None)
    event_type = options.pop("event_type", None)
    _no_other_options(fmt, options, MAPPABLE_FIELDS)
    return read_tabular(
        path,
        fmt,
        options or None,
        Path(items) if items else None,
        event_type=event_type,
    )


def _synthetic(source: str | Path, options: dict[str, str]) -> Iterator[Record]:
    try:
        module = importlib.import_module("driftrec.producers.synthetic")
    except ImportError as error:
        raise ConfigError(f"the synthetic generator is not available: {error}") from None
    records: Iterator[Record] = module.synthetic_records(source, options)
    return records


def _no_other_options(fmt: str, options: Mapping[str, str], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        takes = ", ".join(allowed) if allowed else "no options"
        raise ConfigError(
            f"format {fmt} does not take option(s) {', '.join(unknown)}; it takes {takes}"
        )


def _flag(value: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"expected true or false, got {value!r}")


def _limited(records: Iterator[Record], limit: int) -> Iterator[Record]:
    events = 0
    try:
        if limit == 0:
            return
        for record in records:
            yield record
            if not isinstance(record, Item | Rejected):
                events += 1
                if events >= limit:
                    return
    finally:
        close = getattr(records, "close", None)
        if close is not None:  # release the reader's open file now, not at garbage collection
            close()
