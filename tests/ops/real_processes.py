"""Helpers for tests that drive real processes: a free port to give one, and waiting on
a condition with a deadline."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    what: str,
    check: Callable[[], Any],
    timeout_s: float,
    seen: Callable[[], str],
    *,
    every_s: float = 0.5,
) -> Any:
    """Poll ``check`` until it returns something truthy; fail with what was seen."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(every_s)
    pytest.fail(f"{what} did not happen within {timeout_s:.0f} s; seen:\n{seen()}")
