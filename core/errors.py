"""The one error hierarchy of driftrec.

Every message says what went wrong and what to do next; callers catch
``DriftrecError`` (or a subclass) and never parse message text.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DriftrecError",
    "InfraError",
    "InvalidEvent",
    "InvalidRow",
]


class DriftrecError(Exception):
    """Root of every error driftrec raises on purpose."""


class ConfigError(DriftrecError):
    """A setting, flag or file that driftrec cannot work with."""


class InfraError(DriftrecError):
    """Kafka, Redis or a tool they need is missing, unreachable or misbehaving."""


class InvalidEvent(DriftrecError):
    """A message that does not match the event schema (goes to the dead-letter topic)."""


class InvalidRow(InvalidEvent):
    """A click-log row that cannot become an event; carries its file and line."""

    def __init__(self, reason: str, *, source: str, line: int, raw: str = "") -> None:
        super().__init__(f"{source}:{line}: {reason}")
        self.reason = reason
        self.source = source
        self.line = line
        self.raw = raw
