"""Every exception pam-monitor raises on purpose, in one tree.

    PamMonitorError
    ├── ConfigError     the configuration file could not be turned into a valid Config (one line per problem)
    └── StoreError      the alert state database could not be opened, read or written
"""

from __future__ import annotations

from collections.abc import Sequence


class PamMonitorError(Exception):
    """Base of every exception pam-monitor raises on purpose."""


class ConfigError(PamMonitorError):
    """The file could not be turned into a valid Config; `problems` holds one printable line each."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


class StoreError(PamMonitorError):
    """The SQLite state database could not be opened, read or written."""
