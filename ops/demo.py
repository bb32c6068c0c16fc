"""`driftrec demo`: the whole system on one machine, fed the drifting synthetic log.

Starts (unless already running) a worker, the embedding worker and the serving API
as background processes with pid files under ``<data_dir>/demo``, then replays the
default drifting log at a watchable speed. `driftrec demo --stop` stops them.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

from driftrec.ops.infra.process import ManagedProcess
from driftrec.ops.settings import Settings
from driftrec.ops.worker_process import settings_env

__all__ = ["DEMO_PROCESSES", "demo_processes", "start_demo", "stop_demo"]

#: name -> driftrec arguments of each background process.
DEMO_PROCESSES: dict[str, list[str]] = {
    "worker": ["worker", "--loglevel", "warn"],
    "embedder": ["embed", "--threads", "1"],
    "serve": ["serve", "--host", "127.0.0.1", "--port", "8000"],
}


def demo_processes(settings: Settings) -> dict[str, ManagedProcess]:
    root = settings.data_dir.resolve()
    return {
        name: ManagedProcess(
            name=name,
            pid_file=root / "demo" / f"{name}.pid",
            log_file=root / "logs" / f"{name}.log",
            signature=f"driftrec.ops.cli {args[0]}",
        )
        for name, args in DEMO_PROCESSES.items()
    }


def _admin_token(settings: Settings) -> str:
    """The configured admin token, or one generated once for the demo and kept on disk."""
    if settings.admin_token is not None:
        return settings.admin_token.get_secret_value()
    path = settings.data_dir.resolve() / "demo" / "admin-token"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def start_demo(settings: Settings) -> list[str]:
    """Start the background processes that are not running; one line of news each."""
    from driftrec.producers import ensure_topics

    ensure_topics(settings)
    token = _admin_token(settings)
    news = []
    for name, process in demo_processes(settings).items():
        if process.alive():
            news.append(f"{name}: already running (pid {process.pid()})")
            continue
        env = settings_env(settings, admin_token=token)
        pid = process.start(
            [sys.executable, "-m", "driftrec.ops.cli", *DEMO_PROCESSES[name]], env=env
        )
        news.append(f"{name}: started (pid {pid}, log {process.log_file})")
    return news


def stop_demo(settings: Settings) -> list[str]:
    return [
        f"{name}: {'stopped' if process.stop() else 'was not running'}"
        for name, process in demo_processes(settings).items()
    ]


def token_path(settings: Settings) -> Path:
    return settings.data_dir.resolve() / "demo" / "admin-token"
