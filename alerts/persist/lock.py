"""One daemon per `state_dir`: an exclusive `flock` on `state_dir/pam-monitor.lock`, held for the process's life.

Two daemons sharing one alert state would both fire, resolve and re-post every alert (every page twice), and
SQLite's own locking only serialises their writes. The lock file holds the holder's pid, so the refusal can name
it. The kernel drops a `flock` when its holder dies (kill -9 included): a stale lock file never blocks a restart.
The descriptor is not inherited by child processes (Python opens files close-on-exec), so the reload's child
never keeps it alive.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

from alerts.persist.database import check_dir
from monitor.core.errors import StateDirBusyError, StateDirError

LOCK_NAME = "pam-monitor.lock"


class StateLock:
    """The exclusive lock on one `state_dir`; `acquire` raises StateDirBusyError when another process holds it."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock (on the lock file that is in state_dir now)."""
        return self._fd is not None and self._same_file()

    def acquire(self) -> None:
        """Take the lock (creating state_dir and the lock file if needed) and write our pid into it."""
        if self.held:
            return
        self.release()
        check_dir(self.path.parent)  # its one-line refusals (not a directory, not writable) come first
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StateDirError(f"state_dir {self.path.parent} cannot hold its lock file {self.path} "
                                f"({exc.strerror or exc}); make it writable by this user, or set state_dir "
                                f"elsewhere") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StateDirError(f"cannot lock {self.path} ({exc.strerror or exc}); put state_dir on a local "
                                    f"filesystem that supports flock") from None
            who = f"pid {holder}" if holder is not None else "a process whose pid it did not write"
            raise StateDirBusyError(f"state_dir {self.path.parent} is in use by another pam-monitor ({who} holds "
                                    f"{self.path}); stop that one, or give each daemon its own state_dir") from None
        with contextlib.suppress(OSError):  # the pid is for the message only; the lock is what counts
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Let the lock go (closing the descriptor drops the flock); the file stays."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _same_file(self) -> bool:
        """Whether the lock file in state_dir is still the one we hold (state_dir was not deleted under us)."""
        assert self._fd is not None
        try:
            held, there = os.fstat(self._fd), os.stat(self.path)
        except OSError:
            return False
        return (held.st_dev, held.st_ino) == (there.st_dev, there.st_ino)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
