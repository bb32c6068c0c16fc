"""The serving API: model holder with background hot swap, scoring, HTTP app, metrics.

``run_server(settings, host, port)`` is what ``driftrec serve`` calls.
"""

from __future__ import annotations

from driftrec.ops.serving.app import Services, build_services, create_app, run_server
from driftrec.ops.serving.model_holder import LoadedModel, ModelHolder

__all__ = ["LoadedModel", "ModelHolder", "Services", "build_services", "create_app", "run_server"]
