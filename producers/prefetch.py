"""Read and encode a click log in a child process while the parent sends to Kafka.

kafka-python's ``send`` is pure Python and takes most of a replay's time, so on a
multi-core machine the reading, validation and JSON encoding of the log run in a
second process and arrive in chunks through a bounded queue (back pressure: the
reader is never more than a few chunks ahead).
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from driftrec.core import DriftrecError
from driftrec.producers.replay import Encoded, encode_records
from driftrec.producers.sources import open_source

__all__ = ["prefetched"]

_CHUNK = 2000
_AHEAD = 8  # chunks the reader may run ahead of the sender


def _read(
    source: str | Path, fmt: str | None, limit: int | None, options: dict[str, str], queue: Any
) -> None:
    try:
        chunk: list[Encoded] = []
        for message in encode_records(open_source(source, fmt, limit=limit, options=options)):
            chunk.append(message)
            if len(chunk) >= _CHUNK:
                queue.put(chunk)
                chunk = []
        queue.put(chunk)
        queue.put(None)
    except DriftrecError as error:
        queue.put(error)
    except Exception as error:  # reported to the parent, which raises it
        queue.put(DriftrecError(f"reading {source} failed: {type(error).__name__}: {error}"))


def prefetched(
    source: str | Path,
    fmt: str | None = None,
    *,
    limit: int | None = None,
    options: Mapping[str, str] | None = None,
) -> Iterator[Encoded]:
    """The encoded records of ``open_source(source, fmt, ...)``, read in a child process.

    Errors of the source (an unknown format, a missing file) are raised here, in the
    parent, as the ``DriftrecError`` the child met.
    """
    context = mp.get_context("spawn")  # never fork a process that may hold client threads
    queue = context.Queue(maxsize=_AHEAD)
    reader = context.Process(
        target=_read, args=(source, fmt, limit, dict(options or {}), queue), daemon=True
    )
    reader.start()
    try:
        while True:
            item = queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield from item
    finally:
        if reader.is_alive():
            reader.terminate()
        reader.join(5)
