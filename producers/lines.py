"""Line-reading helpers the click-log readers share: text that survives bad bytes, CSV
records with their line numbers, short rejects, stable ids.

>>> reject("log.csv", 3, "bad ts", "u1,i1,yesterday\\n")
Rejected(source='log.csv', line=3, reason='bad ts', raw='u1,i1,yesterday')
>>> digest("u1", "i1") == digest("u1", "i1") != digest("u1", "i2")
True
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, NamedTuple

from driftrec.producers.records import Rejected

__all__ = ["RAW_LIMIT", "CsvRow", "csv_rows", "digest", "is_undecodable", "open_text", "reject"]

#: A rejected row keeps this many characters of its raw text.
RAW_LIMIT = 500
#: Dead letters cap their reason at 2048 characters; stay well inside it.
_REASON_LIMIT = 1000
# Undecodable bytes survive reading as lone surrogates (errors="surrogateescape").
_SURROGATE = re.compile("[\ud800-\udfff]")


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
