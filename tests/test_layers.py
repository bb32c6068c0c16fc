"""The layers of ../shared/ARCHITECTURE.md hold: public surfaces are pinned, cross-package
imports go through them, and the import-linter contracts fail on a violation."""

from __future__ import annotations

import ast
import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("core", "models", "features", "producers", "online_update", "stream", "ops")

#: What each package offers the others. A change here is a change of public API.
SURFACES: dict[str, set[str]] = {
    "driftrec.core": {
        "EVENT_TYPES", "MAX_MESSAGE_BYTES", "MAX_PACK_BYTES", "Click", "ConfigError",
        "Conversion", "DeadLetter", "DriftrecConfig", "DriftrecError", "Dwell", "Event",
        "Example", "ExampleFeatures", "ExamplePack", "Impression", "InfraError",
        "InvalidEvent", "InvalidRow", "Item", "Message", "as_payload", "dead_letter",
        "decode_event", "decode_examples", "decode_item", "encode", "encode_pack", "explain",
        "restore_epoch",
    },
}  # fmt: skip


def _public_packages() -> list[str]:
    names = ["driftrec.core", "driftrec.models", "driftrec.features", "driftrec.producers"]
    names += [
        f"driftrec.online_update.{p}"
        for p in ("learning", "registry", "embeddings", "evaluation", "training")
    ]
    return [*names, "driftrec.stream"]


@pytest.mark.parametrize("package", _public_packages())
def test_every_exported_name_resolves(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__all__, f"{package} exports nothing"
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing, f"{package}.__all__ names what it does not define: {missing}"
    if package in SURFACES:
        assert set(module.__all__) == SURFACES[package]


def _owner(module: str) -> str:
    """The public package a module belongs to (``driftrec.ops`` for everything in ops)."""
    for package in sorted(_public_packages(), key=len, reverse=True):
        if module == package or module.startswith(package + "."):
            return package
    return "driftrec.ops"


def test_cross_package_imports_go_through_public_names() -> None:
    offenders = []
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            me = ".".join(["driftrec", *(p for p in parts if p != "__init__")])
            for node in ast.walk(ast.parse(path.read_text())):
                if not (isinstance(node, ast.ImportFrom) and node.module):
                    continue
                target = node.module
                if not target.startswith("driftrec.") or _owner(target) == _owner(me):
                    continue
                # A package's public names, or a module named for tests and users (testing).
                if target != _owner(target) and not target.endswith(".testing"):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} from {target}")
    assert not offenders, "import these through the package's __init__:\n" + "\n".join(offenders)


@pytest.mark.slow
def test_a_layer_violation_breaks_the_contracts(tmp_path: Path) -> None:
    """Run import-linter over a copy of the packages, as they are and with one upward import."""
    lint = Path(sys.executable).parent / "lint-imports"
    if not lint.exists():
        pytest.skip("import-linter is not installed (make setup installs it)")
    package = tmp_path / "driftrec"  # a namespace, as installed; first on the path
    package.mkdir()
    for folder in FOLDERS:
        shutil.copytree(
            ROOT / folder, package / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}

    def lint_imports() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(lint), "pyproject.toml", "--no-cache"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    clean = lint_imports()
    assert clean.returncode == 0, clean.stdout + clean.stderr
    batch = package / "models" / "batch.py"
    batch.write_text(batch.read_text() + "\nimport driftrec.stream.app  # a deliberate violation\n")
    broken = lint_imports()
    assert broken.returncode != 0, broken.stdout
    assert "Each layer imports only the layers below it BROKEN" in broken.stdout
    assert "driftrec.models.batch -> driftrec.stream.app" in broken.stdout
