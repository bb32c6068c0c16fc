"""Read a MovieLens ratings log (ml-100k or ml-latest layout) as driftrec records.

Two layouts, told apart by the files in the folder:

- ml-100k: ``u.data`` (tab-separated ``user item rating unix_ts``, no header) and
  ``u.item`` (pipe-separated, latin-1: ``id|title|release|video|url|`` + one 0/1 flag
  per genre; genre names from ``u.genre`` when present, else the standard 19);
- ml-latest (also ml-latest-small, ml-25m, ml-32m): ``ratings.csv``
  (``userId,movieId,rating,timestamp`` with a header) and ``movies.csv``
  (``movieId,title,genres``; titles with commas are quoted, genres ``|``-separated).

Mapping of one rating of ``r`` stars at unix time ``t`` (ids ``ml:<user>:<movie>:<t>:<kind>``):

- always an ``Impression`` at ``position`` 0 and time ``t``, empty context (a rating is
  the only sign the movie was shown; the rating itself must not leak into the context);
- ``r >= 4.0``: a ``Click`` at ``t + 1 s``;
- ``r >= 4.5``: a ``Conversion`` at ``t + 2 s`` (so a conversion always follows a click);
- every click also gets a ``Dwell`` at ``t + 3 s`` of ``60 * 2 ** (2 * (r - 4))`` seconds:
  60 s at 4.0, 120 s at 4.5, 240 s at 5.0. Doubling per half star makes
  ``log1p(seconds)``, the model's dwell target, step evenly with satisfaction, so the
  dwell task ranks clicked movies instead of repeating the click label.

Timestamps increase in that order, which is also the order they are yielded in.

Items: ``category`` = first genre ("" when none is listed); ``text`` = the title and the
genres ("Toy Story (1995). Genres: Adventure, Animation."). The catalog is loaded into
memory; an item is yielded once, just before its first rating, with that rating's time;
movies nobody rated are not yielded. Bad catalog rows are yielded as ``Rejected`` first,
and ratings of them become "unknown item".

Order: ratings stream in file order, in constant memory. ml-latest files are sorted by
user then movie, NOT by time, so a replay in file order visits users one by one and
event time jumps back and forth. ``time_order=True`` sorts ratings by timestamp (ties in
file order) first, which holds every valid rating in memory (O(ratings)), and yields
events in non-decreasing time (a click waits for ratings that start before it); bad rows
are then yielded before all events.

>>> dwell_seconds(4.0), dwell_seconds(4.5), dwell_seconds(5.0)
(60.0, 120.0, 240.0)
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

from driftrec.core import Click, ConfigError, Conversion, Dwell, Impression, Item, explain
from driftrec.producers.lines import csv_rows, is_undecodable, open_text, reject
from driftrec.producers.records import EventRecord, Record
from pydantic import ValidationError

__all__ = [
    "CLICK_RATING",
    "CONVERSION_RATING",
    "STANDARD_GENRES",
    "dwell_seconds",
    "read_movielens",
]

CLICK_RATING = 4.0
CONVERSION_RATING = 4.5
#: ml-100k's u.genre, in flag order.
STANDARD_GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
_NO_GENRE = {"unknown", "(no genres listed)"}
_RATINGS_HEADER = ["userId", "movieId", "rating", "timestamp"]
_MOVIES_HEADER = ["movieId", "title", "genres"]
# Placeholder until the item's first rating gives it a time.
_UNSEEN = datetime(1970, 1, 1, tzinfo=UTC)


def dwell_seconds(rating: float) -> float:
    """Seconds of dwell a click with this rating gets (see the module docstring)."""
    return 60.0 * math.pow(2.0, 2.0 * (rating - CLICK_RATING))


class _Layout(NamedTuple):
    ratings: Path
    movies: Path
    separator: str  # of the ratings file
    genres: tuple[str, ...] | None  # ml-100k flag names; None for ml-latest


class _Rating(NamedTuple):
    line: int
    user: str
    movie: str
    stars: float
    seconds: int


def read_movielens(path: str | Path, *, time_order: bool = False) -> Iterator[Record]:
    """Records of a MovieLens folder (or its u.data / ratings.csv).

    Raises ``ConfigError`` at once when the folder is not a MovieLens layout.
    """
    layout = _layout(Path(path))
    return _read(layout, time_order)


def _layout(path: Path) -> _Layout:
    if not path.exists():
        raise ConfigError(f"{path} does not exist: pass a MovieLens folder")
    folder = path if path.is_dir() else path.parent
    if (folder / "u.data").exists():
        movies = folder / "u.item"
        _require(movies, "ml-100k keeps its movies in u.item beside u.data")
        genre_file = folder / "u.genre"
        genres = _read_genres(genre_file) if genre_file.exists() else STANDARD_GENRES
        return _Layout(folder / "u.data", movies, "\t", genres)
    ratings = folder / "ratings.csv"
    if ratings.exists():
        movies = folder / "movies.csv"
        _require(movies, "ml-latest keeps its movies in movies.csv beside ratings.csv")
        _check_header(ratings, _RATINGS_HEADER)
        _check_header(movies, _MOVIES_HEADER)
        return _Layout(ratings, movies, ",", None)
    raise ConfigError(
        f"{path} is not a MovieLens folder: expected u.data + u.item (ml-100k) or "
        "ratings.csv + movies.csv (ml-latest)"
    )


def _require(path: Path, why: str) -> None:
    if not path.exists():
        raise ConfigError(f"{path} not found: {why}")


def _check_header(path: Path, expected: list[str]) -> None:
    with open_text(path) as handle:
        header = handle.readline().strip().split(",")
    if header != expected:
        raise ConfigError(f"{path}: header is {header}, expected {','.join(expected)}")


def _read_genres(path: Path) -> tuple[str, ...]:
    names: dict[int, str] = {}
    with open(path, encoding="latin-1") as handle:
        for line in handle:
            if not line.strip():
                continue
            name, _, index = line.strip().rpartition("|")
            if not name or not index.isdigit():
                raise ConfigError(f"{path}: line {line.strip()!r} is not NAME|INDEX")
            names[int(index)] = name
    if sorted(names) != list(range(len(names))):
        raise ConfigError(f"{path}: genre indexes {sorted(names)} are not 0..{len(names) - 1}")
    return tuple(names[i] for i in range(len(names)))


def _read(layout: _Layout, time_order: bool) -> Iterator[Record]:
    catalog: dict[str, Item] = {}
    if layout.genres is None:
        yield from _load_movies_csv(layout.movies, catalog)
    else:
        yield from _load_u_item(layout.movies, layout.genres, catalog)
    rated: set[str] = set()
    ratings: Iterator[_Rating | Record] = _ratings(layout, catalog)
    if time_order:
        valid: list[_Rating] = []
        for parsed in ratings:
            if isinstance(parsed, _Rating):
                valid.append(parsed)
            else:
                yield parsed
        valid.sort(key=lambda r: (r.seconds, r.line))
        ratings = iter(valid)
    # In time order, a click/conversion/dwell (1-3 s after its rating) waits here until
    # every later-starting rating before it has been yielded, so event times never go back.
    due: list[tuple[datetime, int, EventRecord]] = []
    order = itertools.count()
    for entry in ratings:
        if not isinstance(entry, _Rating):
            yield entry
            continue
        try:
            impression, *after = _events(entry)
        except ValidationError as error:
            reason = f"invalid rating: {explain(error)}"
            yield reject(layout.ratings, entry.line, reason, _raw(entry))
            continue
        while due and due[0][0] <= impression.ts:
            yield heapq.heappop(due)[2]
        if entry.movie not in rated:
            rated.add(entry.movie)
            yield catalog[entry.movie].model_copy(update={"ts": impression.ts})
        yield impression
        if time_order:
            for event in after:
                heapq.heappush(due, (event.ts, next(order), event))
        else:
            yield from after
    while due:
        yield heapq.heappop(due)[2]


def _ratings(layout: _Layout, catalog: dict[str, Item]) -> Iterator[_Rating | Record]:
    with open_text(layout.ratings) as lines:
        for line_no, line in enumerate(lines, 1):
            text = line.rstrip("\r\n")
            if not text.strip() or (line_no == 1 and layout.separator == ","):
                continue  # blank, or the ratings.csv header (checked up front)
            parsed = _parse_rating(line_no, text, layout.separator)
            if isinstance(parsed, str):
                yield reject(layout.ratings, line_no, parsed, text)
            elif parsed.movie not in catalog:
                yield reject(
                    layout.ratings,
                    line_no,
                    f"unknown item {parsed.movie!r}: not in {layout.movies.name}",
                    text,
                )
            else:
                yield parsed


def _parse_rating(line_no: int, text: str, separator: str) -> _Rating | str:
    if is_undecodable(text):
        return "line is not valid UTF-8"
    cols = [c.strip() for c in text.split(separator)]
    if len(cols) != 4:
        return f"expected 4 fields (user, movie, rating, timestamp) separated by {separator!r}, got {len(cols)}"
    user, movie, stars_text, seconds_text = cols
    if not user or not movie:
        return "empty user or movie id"
    try:
        stars = float(stars_text)
    except ValueError:
        return f"rating {stars_text!r} is not a number"
    if not 0.5 <= stars <= 5.0:  # also catches nan
        return f"rating {stars_text} is outside 0.5..5"
    try:
        seconds = int(seconds_text)
        datetime.fromtimestamp(seconds, UTC)
    except (ValueError, OverflowError, OSError):
        return f"timestamp {seconds_text!r} is not unix seconds in range"
    return _Rating(line_no, user, movie, stars, seconds)


def _events(rating: _Rating) -> list[EventRecord]:
    ts = datetime.fromtimestamp(rating.seconds, UTC)
    key = f"ml:{rating.user}:{rating.movie}:{rating.seconds}"
    user, movie = rating.user, rating.movie
    events: list[EventRecord] = [
        Impression(event_id=f"{key}:i", user_id=user, item_id=movie, ts=ts, position=0)
    ]
    if rating.stars >= CLICK_RATING:
        clicked = ts + timedelta(seconds=1)
        events.append(Click(event_id=f"{key}:c", user_id=user, item_id=movie, ts=clicked))
    if rating.stars >= CONVERSION_RATING:
        converted = ts + timedelta(seconds=2)
        events.append(Conversion(event_id=f"{key}:v", user_id=user, item_id=movie, ts=converted))
    if rating.stars >= CLICK_RATING:
        dwelled, seconds = ts + timedelta(seconds=3), dwell_seconds(rating.stars)
        events.append(
            Dwell(event_id=f"{key}:d", user_id=user, item_id=movie, ts=dwelled, seconds=seconds)
        )
    return events


def _raw(rating: _Rating) -> str:
    return f"{rating.user} {rating.movie} {rating.stars} {rating.seconds}"


def _item(movie: str, title: str, genres: Iterable[str]) -> Item:
    named = [g for g in genres if g and g not in _NO_GENRE]
    text = f"{title}. Genres: {', '.join(named)}." if named else title
    return Item(
        item_id=movie, title=title, text=text, category=named[0] if named else "", ts=_UNSEEN
    )


def _add(
    catalog: dict[str, Item],
    first: dict[str, int],
    source: Path,
    line: int,
    raw: str,
    fields: list[str],
    genres: list[str],
) -> Record | None:
    movie, title = fields[0].strip(), fields[1]
    if movie in first:
        return reject(
            source, line, f"duplicate movie id {movie!r} (first on line {first[movie]})", raw
        )
    try:
        catalog[movie] = _item(movie, title, genres)
    except ValidationError as error:
        return reject(source, line, f"invalid movie: {explain(error)}", raw)
    first[movie] = line
    return None


def _load_movies_csv(path: Path, catalog: dict[str, Item]) -> Iterator[Record]:
    first: dict[str, int] = {}
    with open_text(path) as handle:
        for row in csv_rows(handle):
            if row.line == 1 and row.error is None:
                continue  # the header, checked up front
            if row.error is not None or row.fields is None:
                yield reject(path, row.line, row.error or "unreadable", row.raw)
            elif not row.fields:
                continue
            elif is_undecodable(row.raw):
                yield reject(path, row.line, "line is not valid UTF-8", row.raw)
            elif len(row.fields) != 3:
                yield reject(
                    path,
                    row.line,
                    f"expected 3 fields (movieId, title, genres), got {len(row.fields)}",
                    row.raw,
                )
            else:
                fields = row.fields
                bad = _add(catalog, first, path, row.line, row.raw, fields, fields[2].split("|"))
                if bad is not None:
                    yield bad


def _load_u_item(
    path: Path, genre_names: tuple[str, ...], catalog: dict[str, Item]
) -> Iterator[Record]:
    first: dict[str, int] = {}
    width = 5 + len(genre_names)
    with open(path, encoding="latin-1", newline="") as lines:  # ml-100k is latin-1
        for line_no, line in enumerate(lines, 1):
            text = line.rstrip("\r\n")
            if not text.strip():
                continue
            fields = text.split("|")
            flags = fields[5:]
            if len(fields) != width or any(f not in ("0", "1") for f in flags):
                yield reject(
                    path,
                    line_no,
                    f"expected id|title|release|video|url and {len(genre_names)} 0/1 genre flags",
                    text,
                )
                continue
            genres = [name for name, flag in zip(genre_names, flags, strict=True) if flag == "1"]
            bad = _add(catalog, first, path, line_no, text, fields, genres)
            if bad is not None:
                yield bad
