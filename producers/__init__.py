"""Click logs in, validated events out: schemas, readers, the synthetic generator, replay.

Knows nothing of models or faust. ``producers.schemas`` is the one schema of every
message on a topic; ``producers.errors`` the one error hierarchy. Submodules are
imported where used (``producers.sources.open_source``, ``producers.replay.replay``),
so importing the package stays cheap for the CLI.
"""

from __future__ import annotations

__all__: list[str] = []
