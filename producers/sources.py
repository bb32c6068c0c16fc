"""Open any click log as one stream of records, and the line-reading helpers readers share.

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
producers.errors.ConfigError: cannot tell the format of ...log.parquet: pass fmt= one of mind, movielens, csv, jsonl, synthetic
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, NamedTuple

from producers.errors import ConfigError
from producers.records import Record, Rejected
from producers.schemas import Item

__all__ = [
    "FORMATS",
    "RAW_LIMIT",
    "CsvRow",
    "csv_rows",
    "digest",
    "guess_format",
    "is_undecodable",
    "open_source",
    "open_text",
    "reject",
    "synthetic_options",
]

FORMATS: tuple[str, ...] = ("mind", "movielens", "csv", "jsonl", "synthetic")
#: A rejected row keeps this many characters of its raw text.
RAW_LIMIT = 500
#: Dead letters cap their reason at 2048 characters; stay well inside it.
_REASON_LIMIT = 1000
# Undecodable bytes survive reading as lone surrogates (errors="surrogateescape").
_SURROGATE = re.compile("[\ud800-\udfff]")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def open_text(path: Path) -> IO[str]:
    """Open a UTF-8 log for streaming; bad bytes become detectable, not exceptions.

    ``newline=""`` keeps quoted newlines intact for the csv module; a BOM is dropped.
    """
    return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")


def is_undecodable(text: str) -> bool:
    """True when ``text`` came from bytes that are not valid UTF-8 (see ``open_text``)."""
    return _SURROGATE.search(text) is not None


def reject(source: Path | str, line: int, reason: str, raw: str = "") -> Rejected:
    """A ``Rejected`` whose text is printable and short enough for a dead letter."""
    text = _SURROGATE.sub("\ufffd", raw.rstrip("\r\n")[:RAW_LIMIT])
    return Rejected(str(source), line, _SURROGATE.sub("\ufffd", reason[:_REASON_LIMIT]), text)


def digest(*parts: str) -> str:
    """A short stable hash of ``parts`` (12 hex digits) for deterministic event ids."""
    data = "\x1f".join(parts).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=6).hexdigest()


class CsvRow(NamedTuple):
    """One CSV record: its first line, its fields (None when unparsable), raw text, error."""

    line: int
    fields: list[str] | None
    raw: str
    error: str | None


def csv_rows(handle: IO[str]) -> Iterator[CsvRow]:
    """Stream CSV records with their 1-based first line and raw text; never raises.

    A quoted field may span lines; a malformed record (``"ab"c``, an unclosed quote at
    the end of the file) comes back with ``error`` set and reading goes on.
    """
    buffer: list[str] = []

    def physical_lines() -> Iterator[str]:
        for text in handle:
            buffer.append(text)
            yield text

    reader = csv.reader(physical_lines(), strict=True)
    line = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield CsvRow(line, None, "".join(buffer), f"bad CSV: {error}")
            if not buffer:  # the reader made no progress; stop rather than spin
                return
        else:
            yield CsvRow(line, fields, "".join(buffer), None)
        buffer.clear()
        line = reader.line_num + 1


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
    # Imported here: the readers import this module's helpers.
    if fmt == "mind":
        from producers.mind import read_mind

        _no_other_options(fmt, options, ())
        return read_mind(path)
    if fmt == "movielens":
        from producers.movielens import read_movielens

        _no_other_options(fmt, options, ("time_order",))
        return read_movielens(path, time_order=_flag(options.get("time_order", "false")))
    from producers.tabular import MAPPABLE_FIELDS, read_tabular

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
        module = importlib.import_module("producers.synthetic")
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
