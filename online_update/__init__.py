"""Turning a model into a learner that keeps up with a stream, and everything it needs.

The learner (``learner``, ``metrics``, ``drift``, ``checkpoint``), the trainer that feeds
it from the examples topic (``trainer``), the model registry (``registry``), the text
encoder and embedding worker (``text_encoder``, ``embedder``), and the offline
evaluation (``evaluation``). Submodules are imported where used: torch is heavy.
"""

from __future__ import annotations

__all__: list[str] = []
