"""Start `driftrec worker` as a child process with explicit settings (benchmarks, tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from driftrec.ops.settings import Settings

__all__ = ["WorkerProcess", "settings_env"]


def settings_env(settings: Settings, **overrides: Any) -> dict[str, str]:
    """This process's environment with every field of ``settings`` as DRIFTREC_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTREC_")}
    for name in Settings.model_fields:
        value = overrides.get(name, getattr(settings, name))
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"DRIFTREC_{name.upper()}"] = str(value)
    return env


class WorkerProcess:
    """One `driftrec worker` child with its output in ``log_path``."""

    def __init__(
        self, settings: Settings, log_path: Path, role: str = "all", **overrides: Any
    ) -> None:
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "driftrec.ops.cli",
                "worker",
                "--loglevel",
                "warn",
                "--role",
                role,
            ],
            env=settings_env(settings, **overrides),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        """kill -9: no chance to flush, snapshot or commit anything."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]
