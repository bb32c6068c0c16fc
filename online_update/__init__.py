"""Turning a model into a learner that keeps up with a stream, one subpackage a subsystem.

``learning`` (the learner, metrics, drift detectors, checkpoints), ``registry`` (model
versions in Redis, promotion), ``embeddings`` (text encoders, item vectors, the embedding
worker), ``training`` (the transport-free trainer the stream's agent drives) and
``evaluation`` (offline prequential comparison with baselines). The first three stand
alone; training and evaluation build on them. None imports the faust runtime.
"""

from __future__ import annotations

__all__: list[str] = []
