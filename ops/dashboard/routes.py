"""The dashboard's routes on the serving app: the page, its assets, and two JSON reads.

- ``GET /dashboard``: the page (ops/dashboard/static/index.html). It polls the two
  endpoints below every ``POLL_MS`` and draws with Chart.js and its annotation plugin,
  vendored under static/vendor with their licences (nothing is fetched at run time).
- ``GET /dashboard/api/history``: rows and markers after the client's cursor (one stream
  id per history stream), the reference window and its bands, the label-free drift;
  ``ref_start``/``ref_end`` (ms) pin the reference window instead of the promotion's.
- ``GET /dashboard/api/status``: the live status (ops.dashboard.data.LiveStatus).

Reads are plain ``def`` endpoints: FastAPI runs them on its threads, so Redis round
trips never block the event loop that serves ``/recommend``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import redis
from driftrec.online_update.registry import ModelRegistry
from driftrec.ops.dashboard.data import (
    Cursor,
    HistoryView,
    LiveStatus,
    read_history_view,
    read_live_status,
)
from driftrec.ops.settings import Settings
from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["POLL_MS", "STATIC", "add_dashboard"]

STATIC = Path(__file__).parent / "static"
#: How often the page asks for news: the charts are at most this far behind.
POLL_MS = 1000

_STREAM_ID = r"^(-|\d+-\d+)$"


def add_dashboard(
    app: FastAPI, settings: Settings, client: redis.Redis, registry: ModelRegistry
) -> None:
    """Add the dashboard's routes and assets to ``app``."""
    app.mount("/dashboard/static", StaticFiles(directory=STATIC), name="dashboard-static")

    @app.get("/dashboard", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/dashboard/api/history")
    def history(
        trainer: Annotated[str, Query(pattern=_STREAM_ID)] = "-",
        joiner: Annotated[str, Query(pattern=_STREAM_ID)] = "-",
        events: Annotated[str, Query(pattern=_STREAM_ID)] = "-",
        registry_events: Annotated[str, Query(alias="registry", pattern=_STREAM_ID)] = "-",
        ref_start: Annotated[int | None, Query(ge=0)] = None,
        ref_end: Annotated[int | None, Query(ge=0)] = None,
    ) -> HistoryView:
        if (ref_start is None) != (ref_end is None):
            raise HTTPException(422, "pin the reference window with both ref_start and ref_end")
        pinned = None
        if ref_start is not None and ref_end is not None:
            if ref_end <= ref_start:
                raise HTTPException(422, "ref_end must be after ref_start")
            pinned = (ref_start, ref_end)
        cursor = Cursor(trainer=trainer, joiner=joiner, events=events, registry=registry_events)
        return read_history_view(client, registry, settings, cursor, pinned)

    @app.get("/dashboard/api/status")
    def status() -> LiveStatus:
        return read_live_status(client, settings)
