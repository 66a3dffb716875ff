"""Every exception pam-monitor raises on purpose, in one tree.

    PamMonitorError
    ├── ConfigError     the configuration file could not be turned into a valid Config (one line per problem)
    └── StoreError      the alert state database could not be opened, read or written
        ├── StateDirError       state_dir itself cannot be created or written (a configuration problem)
        └── StoreVanishedError  the database file was deleted or replaced while the daemon ran
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
    """The SQLite state database could not be opened, read or written; at open, the message is one line saying
    what is wrong, with which path, and the fix."""


class StateDirError(StoreError):
    """`state_dir` cannot be created, is not a directory, or is not writable by this user: fix the config or the
    permissions."""


class StoreVanishedError(StoreError):
    """The database file is no longer the one that was opened (its directory was deleted or replaced)."""
