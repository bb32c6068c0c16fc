"""Read a MIND news click log (behaviors.tsv + news.tsv) as driftrec records.

Mapping, one behaviors.tsv row (an impression log) at a time:

- every token of the impressions column becomes an ``Impression`` at ``position`` = its
  index in the list, with ``context={"impression_id": ...}``;
- a token labelled ``-1`` also becomes a ``Click`` one second after the impression.
  MIND records no click times, so ``ts + 1 s`` only keeps the click after its impression;
- unlabelled tokens (the MIND test split has no ``-0``/``-1``) give the impression alone;
- no conversions and no dwell: MIND has neither;
- the history column is ignored: it lists clicks from before the log window without
  times or impressions, so replaying it would invent both. The stream builds each user's
  interest from the clicks it sees.

Items come from news.tsv, loaded into memory (the catalog is small): title, ``text`` =
abstract, ``category`` = category. The subcategory is dropped: its values are codes such
as ``football_nfl`` that add little to a sentence embedding, and the category is already
the sparse-id feature. An item is yielded once, just before the first event that shows
it, with ``ts`` = that event's time; news never shown is not yielded. Bad news.tsv rows
are yielded as ``Rejected`` before any event, and events for them become "unknown item".

A malformed row (columns, time, label) is rejected whole. A token whose news id has no
news.tsv row (real MIND subsets lack some) still counts: its impression and click are
yielded with no ``Item`` before them, so the stream scores the item from its id alone
(no text, no category) and the replay summary counts it as an item without a catalog
row. Times
("11/11/2019 9:05:58 AM") are read as UTC. Event ids are ``mind:<impression id>-<hash of
impression id, user, time>:<position>:<i|c>``, so replaying a file gives the same ids and
train/dev splits (which reuse impression ids) do not collide.

Order: behaviors.tsv is not sorted by time. By default rows stream in file order, in
constant memory. ``time_order=True`` yields them by time (ties in file order): rows are
sorted in runs of ``chunk_rows`` spilled to temporary files and merged, so memory stays
bounded by one run however large the file; malformed rows are then rejected before any
event, and each click (1 s after its impression) waits until every row that starts
before it has been yielded, so event time never goes back.

>>> parse_mind_time("11/11/2019 9:05:58 PM").isoformat()
'2019-11-11T21:05:58+00:00'
>>> parse_mind_time("11/11/2019 12:00:00 AM").hour
0
>>> parse_mind_time("2019-11-11") is None
True
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

from driftrec.core import Click, ConfigError, Impression, Item, explain
from driftrec.producers.lines import digest, is_undecodable, open_text, reject
from driftrec.producers.records import Record, Rejected
from pydantic import ValidationError

__all__ = ["BEHAVIORS_FILE", "NEWS_FILE", "parse_mind_time", "read_mind"]

BEHAVIORS_FILE = "behaviors.tsv"
NEWS_FILE = "news.tsv"
_NEWS_COLUMNS = 8
_BEHAVIOR_COLUMNS = 5
_TEXT_LIMIT = 8192  # Item.text's maximum; a longer abstract is cut, not rejected
_CLICK_DELAY = timedelta(seconds=1)
# Placeholder until the item's first impression gives it a time.
_UNSEEN = datetime(1970, 1, 1, tzinfo=UTC)

_Token = tuple[str, int | None]


def read_mind(
    path: str | Path, *, time_order: bool = False, chunk_rows: int = 100_000
) -> Iterator[Record]:
    """Records of a MIND folder (or its behaviors.tsv), in file order or (``time_order``)
    in time order, sorting runs of ``chunk_rows`` rows at a time.

    Raises ``ConfigError`` at once when behaviors.tsv or news.tsv is missing.
    """
    if chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be >= 1, got {chunk_rows}")
    path = Path(path)
    behaviors = path / BEHAVIORS_FILE if path.is_dir() else path
    news = behaviors.parent / NEWS_FILE
    if not behaviors.exists():
        raise ConfigError(
            f"{behaviors} not found: pass a MIND folder holding {BEHAVIORS_FILE} and "
            f"{NEWS_FILE} (such as MINDsmall_train/) or the path of its {BEHAVIORS_FILE}"
        )
    if not news.exists():
        raise ConfigError(
            f"{news} not found: MIND items are read from {NEWS_FILE} beside {behaviors.name}"
        )
    return _read(behaviors, news, time_order, chunk_rows)


def parse_mind_time(text: str) -> datetime | None:
    """``M/D/YYYY h:mm:ss AM|PM`` as UTC, or None; locale-independent, unlike strptime."""
    try:
        date_part, time_part, meridiem = text.split()
        month, day, year = (int(p) for p in date_part.split("/"))
        hour, minute, second = (int(p) for p in time_part.split(":"))
        meridiem = meridiem.upper()
        if meridiem not in ("AM", "PM") or not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if meridiem == "PM" else 0)
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        return None


def _read(behaviors: Path, news: Path, time_order: bool, chunk_rows: int) -> Iterator[Record]:
    catalog: dict[str, Item] = {}
    yield from _load_news(news, catalog)
    shown: set[str] = set()
    if not time_order:
        with open_text(behaviors) as lines:
            for line_no, line in enumerate(lines, 1):
                text = line.rstrip("\r\n")
                if text.strip():
                    yield from _behavior(behaviors, line_no, text, catalog, shown)
        return
    due: list[tuple[datetime, int, Click]] = []  # clicks waiting for their time
    order = itertools.count()
    for row in _rows_by_time(behaviors, chunk_rows):
        if isinstance(row, Rejected):
            yield row
            continue
        seconds, line_no, text = row
        now = datetime.fromtimestamp(seconds, UTC)
        while due and due[0][0] <= now:
            yield heapq.heappop(due)[2]
        for record in _behavior(behaviors, line_no, text, catalog, shown):
            if isinstance(record, Click):
                heapq.heappush(due, (record.ts, next(order), record))
            else:
                yield record
    while due:
        yield heapq.heappop(due)[2]


_Row = tuple[int, int, str]  # (epoch seconds, line number, text)


def _rows_by_time(path: Path, chunk_rows: int) -> Iterator[_Row | Rejected]:
    """Valid rows sorted by (time, line) with runs of ``chunk_rows`` spilled to temporary
    files and merged; malformed rows (rejected) come first, as they are met."""
    run: list[_Row] = []
    with contextlib.ExitStack() as spills:
        files: list[IO[str]] = []
        with open_text(path) as lines:
            for line_no, line in enumerate(lines, 1):
                text = line.rstrip("\r\n")
                if not text.strip():
                    continue
                parsed = _parse_behavior(text)
                if isinstance(parsed, str):
                    yield reject(path, line_no, parsed, text)
                    continue
                run.append((int(parsed[3].timestamp()), line_no, text))
                if len(run) >= chunk_rows:
                    files.append(_spill(spills, run))
                    run = []
        run.sort()
        yield from heapq.merge(*(_unspill(f) for f in files), run)


def _spill(stack: contextlib.ExitStack, run: list[_Row]) -> IO[str]:
    spill = stack.enter_context(tempfile.TemporaryFile("w+", encoding="utf-8", newline="\n"))  # noqa: SIM115  # the caller's ExitStack closes it
    for seconds, line_no, text in sorted(run):
        spill.write(f"{seconds}\t{line_no}\t{text}\n")
    spill.seek(0)
    return spill


def _unspill(spill: IO[str]) -> Iterator[_Row]:
    for line in spill:
        seconds, line_no, text = line.rstrip("\n").split("\t", 2)
        yield int(seconds), int(line_no), text


def _load_news(path: Path, catalog: dict[str, Item]) -> Iterator[Record]:
    first_seen: dict[str, int] = {}
    with open_text(path) as lines:
        for line_no, line in enumerate(lines, 1):
            text = line.rstrip("\r\n")
            if not text.strip():
                continue
            if is_undecodable(text):
                yield reject(path, line_no, "line is not valid UTF-8", text)
                continue
            cols = text.split("\t")
            if len(cols) != _NEWS_COLUMNS:
                yield reject(
                    path,
                    line_no,
                    f"expected {_NEWS_COLUMNS} tab-separated columns (news_id, category, "
                    f"subcategory, title, abstract, url, title_entities, abstract_entities), "
                    f"got {len(cols)}",
                    text,
                )
                continue
            news_id, category, _subcategory, title, abstract = cols[:5]
            if news_id in first_seen:
                yield reject(
                    path,
                    line_no,
                    f"duplicate news id {news_id!r} (first on line {first_seen[news_id]})",
                    text,
                )
                continue
            try:
                item = Item(
                    item_id=news_id,
                    title=title,
                    text=abstract[:_TEXT_LIMIT],
                    category=category,
                    ts=_UNSEEN,
                )
            except ValidationError as error:
                yield reject(path, line_no, f"invalid news item: {explain(error)}", text)
                continue
            first_seen[news_id] = line_no
            catalog[item.item_id] = item


def _parse_behavior(text: str) -> tuple[str, str, str, datetime, list[_Token]] | str:
    """(impression id, user, time text, time, tokens), or the reason the row is bad."""
    if is_undecodable(text):
        return "line is not valid UTF-8"
    cols = text.split("\t")
    if len(cols) != _BEHAVIOR_COLUMNS:
        return (
            f"expected {_BEHAVIOR_COLUMNS} tab-separated columns (impression_id, user_id, "
            f"time, history, impressions), got {len(cols)}"
        )
    impression_id, user_id, time_text, _history, impressions = (c.strip() for c in cols)
    ts = parse_mind_time(time_text)
    if ts is None:
        return f"time {time_text!r} is not like '11/11/2019 9:05:58 AM'"
    tokens: list[_Token] = []
    for token in impressions.split():
        news_id, dash, label = token.rpartition("-")
        if not dash:
            tokens.append((token, None))
        elif news_id and label in ("0", "1"):
            tokens.append((news_id, int(label)))
        else:
            return f"impression {token!r} is not NEWS_ID-0, NEWS_ID-1 or a bare NEWS_ID"
    if not tokens:
        return "no impressions in the impressions column"
    return impression_id, user_id, time_text, ts, tokens


def _behavior(
    source: Path, line_no: int, text: str, catalog: dict[str, Item], shown: set[str]
) -> Iterator[Record]:
    parsed = _parse_behavior(text)
    if isinstance(parsed, str):
        yield reject(source, line_no, parsed, text)
        return
    impression_id, user_id, time_text, ts, tokens = parsed
    key = f"mind:{impression_id}-{digest(impression_id, user_id, time_text)}"
    context: dict[str, bool | int | float | str] = {"impression_id": impression_id}
    # Build every event before yielding any, so an invalid row is rejected whole.
    planned: list[tuple[str, list[Impression | Click]]] = []
    try:
        for position, (news_id, label) in enumerate(tokens):
            events: list[Impression | Click] = [
                Impression(
                    event_id=f"{key}:{position}:i",
                    user_id=user_id,
                    item_id=news_id,
                    ts=ts,
                    position=position,
                    context=context,
                )
            ]
            if label == 1:
                clicked = ts + _CLICK_DELAY
                events.append(
                    Click(
                        event_id=f"{key}:{position}:c", user_id=user_id, item_id=news_id, ts=clicked
                    )
                )
            planned.append((news_id, events))
    except ValidationError as error:
        yield reject(source, line_no, f"invalid impression row: {explain(error)}", text)
        return
    for news_id, events in planned:
        if news_id not in shown and news_id in catalog:
            shown.add(news_id)
            yield catalog[news_id].model_copy(update={"ts": ts})
        yield from events
