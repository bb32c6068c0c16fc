"""What people touch: the `driftrec` CLI, the serving API, watch, demo, benchmarks, and the
local Kafka and Redis. ``driftrec.ops.settings`` is the one settings class; it imports nothing of
driftrec, so every package may read it.
"""

from __future__ import annotations

__all__: list[str] = []
