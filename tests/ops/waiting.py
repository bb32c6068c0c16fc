"""Waiting on a condition with a deadline, for tests that drive real processes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest


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
