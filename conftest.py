"""Doctests of the packages run against the installed ``driftrec`` namespace.

The folders (``models/``, ``stream/``, ...) are installed as ``driftrec.models``,
``driftrec.stream``, ...; pytest's own ``--doctest-modules`` would import
``models/config.py`` as a second, top-level ``models.config``. This collects each
module's doctests under the name it is installed as, so a doctest exercises exactly
the objects the rest of driftrec uses.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest
from _pytest.doctest import DoctestModule

PACKAGE_DIRS = ("core", "models", "features", "producers", "online_update", "stream", "ops")
ROOT = Path(__file__).parent


def installed_name(path: Path) -> str | None:
    """``driftrec.<dotted path>`` for a module file in one of the package folders."""
    try:
        parts = list(path.resolve().relative_to(ROOT).with_suffix("").parts)
    except ValueError:
        return None
    if not parts or parts[0] not in PACKAGE_DIRS:
        return None
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["driftrec", *parts])


class InstalledDoctestModule(DoctestModule):
    def _getobj(self) -> ModuleType:
        name = installed_name(self.path)
        assert name is not None  # only collected for package files
        return importlib.import_module(name)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix == ".py" and installed_name(file_path) is not None:
        return InstalledDoctestModule.from_parent(parent, path=file_path)
    return None
