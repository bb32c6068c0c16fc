"""Read a generic CSV or JSONL event log, one event (or item) per row.

Each row's type comes from its ``type`` column (impression, click, conversion, dwell,
item; case-insensitive) or from ``event_type=`` for a file of one kind. ``mapping`` maps a
schema field to the column that holds it (``{"user_id": "uid"}``); a field whose mapped
column a row lacks, or that is not mapped, is read from the column of its own name;
other columns are ignored. In CSV, an empty cell counts as absent
and ``context`` is a JSON object in a cell; the first row is the header.

- ``ts``: ISO-8601 with an offset (``2024-01-01T00:00:00Z``, ``...+02:00``) or an epoch
  number: seconds below 1e10, milliseconds from 1e10 on (1e10 s is the year 2286, 1e10
  ms is April 1970, so both readings cover real logs). Everything becomes UTC. A naive
  ISO time is rejected: it is ambiguous, and guessing UTC silently shifts logs written in
  local time.
- ``event_id``: when absent, ``<file name>:<line>:<hash of the row>``. The same file gives
  the same ids on every replay; the row hash keeps two files that share a name apart.
- ids may be JSON integers (converted to strings); other wrong types are rejected.

Items: rows of type item are yielded where they stand. With ``items_path`` (a catalog
file, CSV or JSONL by its suffix, same mapping, ``type`` optional, ``ts`` optional) the
catalog is loaded into memory and each catalog item is yielded just before the first event
that references it (its ``ts`` defaults to that event's time); catalog items never
referenced are not yielded, and an event whose item is neither in the catalog nor in an
earlier item row is rejected. Without a catalog file item references cannot be checked,
so they are not. A catalog listing an item twice keeps the last row (like the compacted
items topic).

Never raises on a row: bad JSON, a CSV record with the wrong number of cells (such as a
truncated last line), a bad type, a naive time or a schema error yields ``Rejected``.

>>> parse_ts("2024-01-01T02:00:00+02:00").isoformat()
'2024-01-01T00:00:00+00:00'
>>> parse_ts(1704067200000) == parse_ts("1704067200")
True
>>> parse_ts("2024-01-01T00:00:00")
"ts '2024-01-01T00:00:00' has no UTC offset: add 'Z' or '+00:00' (naive times are ambiguous)"
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from driftrec.core import Click, ConfigError, Conversion, Dwell, Impression, Item, explain
from driftrec.producers.lines import csv_rows, digest, is_undecodable, open_text, reject
from driftrec.producers.records import EventRecord, Record
from pydantic import ValidationError

__all__ = ["MAPPABLE_FIELDS", "ROW_TYPES", "parse_ts", "read_tabular"]

ROW_TYPES: tuple[str, ...] = ("impression", "click", "conversion", "dwell", "item")
MAPPABLE_FIELDS: tuple[str, ...] = (
    "event_id", "type", "user_id", "item_id", "ts", "position", "context", "seconds",
    "title", "text", "category",
)  # fmt: skip
_MODELS: dict[str, type[Impression] | type[Click] | type[Conversion] | type[Dwell] | type[Item]] = {
    "impression": Impression,
    "click": Click,
    "conversion": Conversion,
    "dwell": Dwell,
    "item": Item,
}
_EVENT = ("event_id", "user_id", "item_id", "ts")
_FIELDS: dict[str, tuple[str, ...]] = {
    "impression": (*_EVENT, "position", "context"),
    "click": _EVENT,
    "conversion": _EVENT,
    "dwell": (*_EVENT, "seconds"),
    "item": ("item_id", "title", "text", "category", "ts"),
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "impression": ("user_id", "item_id", "ts"),
    "click": ("user_id", "item_id", "ts"),
    "conversion": ("user_id", "item_id", "ts"),
    "dwell": ("user_id", "item_id", "ts", "seconds"),
    "item": ("item_id", "title", "ts"),
}
_IDS = ("event_id", "user_id", "item_id")
_NUMBER = re.compile(r"[+-]?\d+(\.\d*)?")
_MILLIS_FROM = 1e10
_NAME_LIMIT = 80  # of the file name inside a default event id (ids are at most 128 chars)

_Row = dict[str, Any]


def read_tabular(
    path: str | Path,
    fmt: str,
    mapping: Mapping[str, str] | None = None,
    items_path: Path | None = None,
    *,
    event_type: str | None = None,
) -> Iterator[Record]:
    """Records of a CSV or JSONL log, streamed row by row (see the module docstring).

    Raises ``ConfigError`` at once for a bad format, mapping, event type or missing file.
    """
    path = Path(path)
    if fmt not in ("csv", "jsonl"):
        raise ConfigError(f"read_tabular reads csv or jsonl, not {fmt!r}")
    columns = {field: field for field in MAPPABLE_FIELDS}
    for field, column in (mapping or {}).items():
        if field not in MAPPABLE_FIELDS:
            raise ConfigError(
                f"cannot map {field!r}: mappable fields are {', '.join(MAPPABLE_FIELDS)}"
            )
        if not column:
            raise ConfigError(f"the column for {field!r} is empty")
        columns[field] = column
    if event_type is not None and event_type not in ROW_TYPES:
        raise ConfigError(f"event_type {event_type!r} is not one of {', '.join(ROW_TYPES)}")
    for needed in (path, items_path):
        if needed is not None and (not needed.exists() or needed.is_dir()):
            raise ConfigError(f"{needed} is not a file")
    return _read(path, fmt, columns, event_type, items_path)


def parse_ts(value: object) -> datetime | str:
    """A UTC datetime from ISO-8601-with-offset or epoch s/ms, or the reason it is not one."""
    if isinstance(value, str) and not _NUMBER.fullmatch(value.strip()):
        text = value.strip()
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return f"ts {text!r} is neither ISO-8601 nor epoch seconds/milliseconds"
        if parsed.utcoffset() is None:
            return f"ts {text!r} has no UTC offset: add 'Z' or '+00:00' (naive times are ambiguous)"
        return parsed.astimezone(UTC)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return f"ts must be an ISO-8601 string or epoch number, got {type(value).__name__}"
    number = float(value)
    if not math.isfinite(number):
        return f"ts {value!r} is not a finite number"
    seconds = number / 1000 if abs(number) >= _MILLIS_FROM else number
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return f"ts {value!r} is out of range"


def _read(
    path: Path, fmt: str, columns: dict[str, str], event_type: str | None, items_path: Path | None
) -> Iterator[Record]:
    catalog: dict[str, tuple[Item, bool]] | None = None
    if items_path is not None:
        catalog = {}
        yield from _load_catalog(items_path, _fmt_of(items_path, fmt), columns, catalog)
    yielded: set[str] = set()
    name = path.name if len(path.name) <= _NAME_LIMIT else f"{path.name[:60]}~{digest(path.name)}"
    for line, row, raw, error in _rows(path, fmt):
        if row is None:
            yield reject(path, line, error or "unreadable row", raw)
            continue
        result = _convert(row, columns, event_type, f"{name}:{line}:{digest(raw.rstrip())}")
        if isinstance(result, str):
            yield reject(path, line, result, raw)
        elif isinstance(result, Item):
            yielded.add(result.item_id)
            yield result
        elif catalog is None or result.item_id in yielded:
            yield result
        elif result.item_id in catalog:
            item, has_ts = catalog[result.item_id]
            yielded.add(item.item_id)
            yield item if has_ts else item.model_copy(update={"ts": result.ts})
            yield result
        else:
            yield reject(
                path,
                line,
                f"unknown item {result.item_id!r}: not in {items_path} nor an earlier item row",
                raw,
            )


def _load_catalog(
    path: Path, fmt: str, columns: dict[str, str], catalog: dict[str, tuple[Item, bool]]
) -> Iterator[Record]:
    for line, row, raw, error in _rows(path, fmt):
        if row is None:
            yield reject(path, line, error or "unreadable row", raw)
            continue
        kind = _cell(row, columns, "type")
        if kind is not None and str(kind).strip().lower() != "item":
            yield reject(path, line, f"a catalog row must be an item, not {kind!r}", raw)
            continue
        has_ts = _cell(row, columns, "ts") is not None
        # Epoch 0 stands in for a missing ts until the item's first reference replaces it.
        result = _convert(row if has_ts else {**row, columns["ts"]: 0}, columns, "item", "")
        if isinstance(result, str):
            yield reject(path, line, result, raw)
        elif isinstance(result, Item):
            catalog[result.item_id] = (result, has_ts)


def _fmt_of(path: Path, default: str) -> str:
    suffix = path.suffix.lower()
    return "csv" if suffix == ".csv" else "jsonl" if suffix in (".jsonl", ".ndjson") else default


def _rows(path: Path, fmt: str) -> Iterator[tuple[int, _Row | None, str, str | None]]:
    """(line, row or None, raw text, reason when None), blank lines skipped."""
    with open_text(path) as handle:
        if fmt == "jsonl":
            for line, text in enumerate(handle, 1):
                if text.strip():
                    yield line, *_json_row(text.rstrip("\r\n"))
            return
        header: list[str] | None = None
        for row in csv_rows(handle):
            raw = row.raw.rstrip("\r\n")
            if row.fields is None:
                yield row.line, None, raw, row.error
            elif not row.fields:
                continue
            elif is_undecodable(raw):
                yield row.line, None, raw, "line is not valid UTF-8"
            elif header is None:
                header = [name.strip() for name in row.fields]
            elif len(row.fields) != len(header):
                reason = f"expected {len(header)} cells like the header, got {len(row.fields)}"
                yield row.line, None, raw, reason
            else:
                yield row.line, dict(zip(header, row.fields, strict=True)), raw, None


def _json_row(text: str) -> tuple[_Row | None, str, str | None]:
    if is_undecodable(text):
        return None, text, "line is not valid UTF-8"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        return None, text, f"bad JSON: {error.msg} at column {error.colno}"
    except RecursionError:
        return None, text, "bad JSON: nested too deeply"
    if not isinstance(value, dict):
        return None, text, f"a JSONL row must be a JSON object, got {type(value).__name__}"
    if "\\ud" in text.lower():  # an escaped lone surrogate would break encoding downstream
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return None, text, "a string holds an unpaired \\u surrogate escape"
    return value, text, None


def _cell(row: _Row, columns: dict[str, str], field: str) -> Any:
    """The field's value, from its mapped column or else its own name; None when absent.

    The fallback lets one mapping serve an event file (``item``) and a catalog that
    names the column ``item_id``.
    """
    for column in (columns[field], field):
        value = row.get(column)
        if value is not None and value != "":
            return value
    return None


def _where(columns: dict[str, str], field: str) -> str:
    mapped = columns[field]
    return (
        f"{field} (column {mapped!r})"
        if mapped == field
        else f"{field} (column {mapped!r} or {field!r})"
    )


def _convert(
    row: _Row, columns: dict[str, str], fixed_type: str | None, default_id: str
) -> Item | EventRecord | str:
    """The row as an item or event, or the reason it cannot be one."""
    kind_value = fixed_type or _cell(row, columns, "type")
    if kind_value is None:
        return f"missing type (column {columns['type']!r}); pass event_type= for a file of one kind"
    kind = str(kind_value).strip().lower()
    if kind not in _MODELS:
        return f"unknown type {kind_value!r}: expected one of {', '.join(ROW_TYPES)}"
    data = {field: _cell(row, columns, field) for field in _FIELDS[kind]}
    missing = [_where(columns, f) for f in _REQUIRED[kind] if data[f] is None]
    if missing:
        return f"{kind} row is missing {', '.join(missing)}"
    ts = parse_ts(data["ts"])
    if isinstance(ts, str):
        return ts
    data["ts"] = ts
    for field in _IDS:
        if isinstance(data.get(field), int) and not isinstance(data[field], bool):
            data[field] = str(data[field])
    if kind != "item" and data["event_id"] is None:
        data["event_id"] = default_id
    if isinstance(data.get("context"), str):
        try:
            data["context"] = json.loads(data["context"])
        except json.JSONDecodeError:
            return f"context {data['context']!r} is not a JSON object"
    try:
        return _MODELS[kind].model_validate({k: v for k, v in data.items() if v is not None})
    except ValidationError as error:
        return f"invalid {kind}: {explain(error)}"
