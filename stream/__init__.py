"""The faust side: the app and its agents, and the pure joiner and feature code they call.

``stream.joiner`` and ``stream.features`` / ``stream.vectorise`` import no faust, so the
evaluator and the serving API reuse them; ``stream.app`` builds the faust app
(``faust -A stream.app worker``).
"""

from __future__ import annotations

__all__: list[str] = []
