"""The stream's faust app built from the environment, for ``faust -A driftrec.ops.faust_app worker``.

``driftrec worker`` builds the same app from its flags; this module exists for people who
prefer faust's own command line. The app is built on first use only, so importing this
module (doctest collection, ``faust --help``) starts nothing.
"""

from __future__ import annotations

from typing import Any

from driftrec.ops.settings import get_settings
from driftrec.stream import create_app

__all__: list[str] = []  # and ``app``, built lazily by __getattr__


def __getattr__(name: str) -> Any:
    if name == "app":
        globals()["app"] = built = create_app(get_settings())
        return built
    raise AttributeError(name)
