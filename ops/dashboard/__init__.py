"""The live dashboard: a page of `driftrec serve` (``/dashboard``) drawing the history the
worker and the registry record in Redis, and the live status `driftrec watch` shows too.
"""

from __future__ import annotations

from driftrec.ops.dashboard.data import LiveStatus, read_history_view, read_live_status
from driftrec.ops.dashboard.routes import add_dashboard

__all__ = ["LiveStatus", "add_dashboard", "read_history_view", "read_live_status"]
