"""Every exception pam-monitor raises on purpose, in one tree.

    PamMonitorError
    ├── ConfigError     the configuration file could not be turned into a valid Config (one line per problem)
    └── StoreError      the alert state database could not be opened, read or written
        ├── StateDirError       state_dir itself cannot be created or written (a configuration problem)
        ├── StateDirBusyError   another process holds state_dir's lock (a second daemon on the same state_dir)
        └── StoreVanishedError  the database file (or its -wal, -shm) was deleted or replaced while the daemon ran
"""

from __future__ import annotations

from collections.abc import Sequence


class PamMonitorError(Exception):
    """Base of every exception pam-monitor raises on purpose."""


_ESCAPED_BREAKS = {ord(c): repr(c)[1:-1] for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}
"""Every character str.splitlines() breaks a line at, to its escape (a newline to the two characters \\n)."""


class ConfigError(PamMonitorError):
    """The file could not be turned into a valid Config; `problems` holds one printable line each (any line break
    a problem quotes from the file is escaped here, whoever built it, so a problem can never span two lines)."""

    def __init__(self, problems: Sequence[str]) -> None:
        lines = [problem.translate(_ESCAPED_BREAKS) for problem in problems]
        super().__init__("\n".join(lines))
        self.problems = lines


class StoreError(PamMonitorError):
    """The SQLite state database could not be opened, read or written; at open, the message is one line saying
    what is wrong, with which path, and the fix."""


class StateDirError(StoreError):
    """`state_dir` cannot be created, is not a directory, or is not writable by this user: fix the config or the
    permissions."""


class StateDirBusyError(StoreError):
    """Another process (another pam-monitor) holds the lock on `state_dir`: two daemons writing one alert state
    would page everything twice."""


class StoreVanishedError(StoreError):
    """The database file is no longer the one that was opened (its directory was deleted or replaced), or its
    write-ahead log or shared-memory file was; `paths` names the files that are gone or replaced."""

    def __init__(self, message: str, paths: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.paths = list(paths)
