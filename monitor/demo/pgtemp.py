"""A throwaway PostgreSQL cluster (initdb + pg_ctl in a temp dir) for tests and `pam-monitor demo`."""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import structlog

log = structlog.get_logger("pam_monitor.pgtemp")

_SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")
_INSTALL_HINT = (
    "install the PostgreSQL server (Debian/Ubuntu: `apt-get install postgresql`; "
    "Fedora: `dnf install postgresql-server`; macOS: `brew install postgresql`), "
    "or use an existing server: `pam-monitor demo --database-url URL` (the demo keeps to a schema of its own), "
    "PAM_MONITOR_TEST_DSN for the tests"
)
# The OS account a cluster runs as when we are root: initdb and postgres refuse to run as root.
_DEFAULT_ROOT_RUN_AS = "postgres"


class PostgresNotFoundError(RuntimeError):
    """No PostgreSQL server binaries (initdb, pg_ctl, postgres) could be found."""


class TempPostgresError(RuntimeError):
    """The throwaway cluster could not be created, started or stopped."""


def _has_server_binaries(directory: Path) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in _SERVER_BINARIES)


def _version_key(path: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/<version>/bin: numeric compare so 15 beats 9.6.
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.name)) or (0,)


def find_pg_bin() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres, or None when the server is not installed.

    Searched in order: PATH (symlinks resolved, so Debian's wrappers lead to the real bin dir),
    `pg_config --bindir`, then /usr/lib/postgresql/*/bin (highest version first).
    """
    initdb = shutil.which("initdb")
    if initdb is not None:
        resolved = Path(initdb).resolve().parent
        if _has_server_binaries(resolved):
            return resolved
        if _has_server_binaries(Path(initdb).parent):
            return Path(initdb).parent
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        try:
            out = subprocess.run(  # noqa: S603 - the path comes from PATH lookup, no shell
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out and _has_server_binaries(Path(out)):
            return Path(out)
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    for candidate in candidates:
        if _has_server_binaries(candidate):
            return candidate
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TempPostgres:
    """A PostgreSQL cluster in a temporary directory, listening on 127.0.0.1 at a free port.

    `start()` runs initdb (once) and `pg_ctl start`, waiting until the server accepts connections;
    `stop()` shuts it down fast and (by default) removes the directory; a stopped cluster whose data was
    kept can be started again on the same port. Use it as a context manager. fsync is off: the data is
    disposable. When the process runs as root the cluster runs as the `postgres` OS account (initdb
    refuses root); pass `run_as` to choose another account.

    With `password` set, the superuser `postgres` gets that password and TCP connections must
    authenticate with scram-sha-256 (the unix socket stays trust); otherwise everything is trust.
    """

    def __init__(
        self,
        *,
        bin_dir: Path | None = None,
        password: str | None = None,
        run_as: str | None = None,
        base_dir: Path | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        found = bin_dir or find_pg_bin()
        if found is None:
            raise PostgresNotFoundError(
                "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found on PATH, via pg_config "
                f"or in /usr/lib/postgresql/*/bin; {_INSTALL_HINT}"
            )
        if not _has_server_binaries(found):
            raise PostgresNotFoundError(f"{found} does not hold initdb, pg_ctl and postgres; {_INSTALL_HINT}")
        self.bin_dir = found
        self.password = password
        self.start_timeout = start_timeout
        self._base_dir = base_dir
        self._run_as = run_as if run_as is not None else (_DEFAULT_ROOT_RUN_AS if os.geteuid() == 0 else None)
        self._dir: Path | None = None
        self._port: int | None = None
        self._running = False

    # ------------------------------------------------------------------------------------------ paths

    @property
    def directory(self) -> Path:
        """The temp dir holding data/, the socket and the server log (only after start())."""
        if self._dir is None:
            raise TempPostgresError("the cluster has not been started")
        return self._dir

    @property
    def port(self) -> int:
        """The TCP port on 127.0.0.1 (only after start())."""
        if self._port is None:
            raise TempPostgresError("the cluster has not been started")
        return self._port

    @property
    def running(self) -> bool:
        """Whether the server is up (as far as this object started and did not stop it)."""
        return self._running

    def dsn_for(self, dbname: str = "postgres", user: str = "postgres", password: str | None = None) -> str:
        """A postgresql:// URL to this server over TCP for `user` (with `password` when given)."""
        auth = quote(user, safe="")
        if password is not None:
            auth += ":" + quote(password, safe="")
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{quote(dbname, safe='')}"

    @property
    def dsn(self) -> str:
        """A superuser DSN (user postgres, database postgres; with the password when one is set)."""
        return self.dsn_for(password=self.password)

    # ------------------------------------------------------------------------------------------ running

    def _ids(self) -> tuple[int, int] | None:
        if self._run_as is None:
            return None
        try:
            entry = pwd.getpwnam(self._run_as)
        except KeyError:
            raise TempPostgresError(
                f"running as root, and the OS account {self._run_as!r} to run PostgreSQL as does not exist "
                "(initdb refuses to run as root); create it (`useradd --system postgres`) or pass run_as"
            ) from None
        return entry.pw_uid, entry.pw_gid

    def _run(self, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        ids = self._ids()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        try:
            return subprocess.run(  # noqa: S603 - fixed argv of our own binaries, no shell
                args,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                env=env,
                cwd=self.directory,
                user=ids[0] if ids else None,
                group=ids[1] if ids else None,
                extra_groups=[] if ids else None,
            )
        except subprocess.TimeoutExpired as exc:
            raise TempPostgresError(f"{Path(args[0]).name} did not finish within {timeout:g} s") from exc

    def _log_tail(self) -> str:
        try:
            lines = (self.directory / "server.log").read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-15:])

    def _make_dir(self) -> Path:
        ids = self._ids()  # first: an unknown run_as account must not leave an empty directory behind
        directory = Path(tempfile.mkdtemp(prefix="pam-monitor-pg-", dir=self._base_dir))
        try:
            if ids is not None:
                os.chown(directory, ids[0], ids[1])
            directory.chmod(0o700)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        return directory

    def _initdb(self) -> None:
        data = self.directory / "data"
        args = [
            str(self.bin_dir / "initdb"),
            "--pgdata", str(data),
            "--username", "postgres",
            "--encoding", "UTF8",
            "--locale", "C",
            "--no-sync",
            "--auth-local", "trust",
        ]
        if self.password is not None:
            pwfile = self.directory / "pwfile"
            pwfile.write_text(self.password + "\n")
            ids = self._ids()
            if ids is not None:
                os.chown(pwfile, ids[0], ids[1])
            pwfile.chmod(0o600)
            args += ["--auth-host", "scram-sha-256", "--pwfile", str(pwfile)]
        else:
            args += ["--auth-host", "trust"]
        done = self._run(args, timeout=self.start_timeout)
        if self.password is not None:
            (self.directory / "pwfile").unlink(missing_ok=True)
        if done.returncode != 0:
            raise TempPostgresError(f"initdb failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
        settings = (
            "\n# pam-monitor throwaway cluster\n"
            "listen_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{self.directory}'\n"
            "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            "max_connections = 100\nshared_buffers = 32MB\n"
        )
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(settings)

    def start(self) -> TempPostgres:
        """Create (first time) and start the cluster; return self once it accepts connections."""
        if self._running:
            return self
        created = False
        if self._dir is None:
            self._dir = self._make_dir()
            created = True
        try:
            if created:
                self._initdb()
            self._start_server()
        except BaseException:
            if created:
                self._remove()
            raise
        self._running = True
        log.info("pgtemp.started", port=self._port, directory=str(self._dir))
        return self

    def _start_server(self) -> None:
        # A free port can be taken between probing it and binding; a few tries make that race harmless.
        attempts = 1 if self._port is not None else 3
        last = ""
        for _ in range(attempts):
            port = self._port if self._port is not None else _free_port()
            done = self._run(
                [
                    str(self.bin_dir / "pg_ctl"), "start",
                    "--pgdata", str(self.directory / "data"),
                    "--log", str(self.directory / "server.log"),
                    "--wait", "--timeout", str(int(self.start_timeout)),
                    "-o", f"-p {port}",
                ],
                timeout=self.start_timeout + 10,
            )
            if done.returncode == 0:
                self._port = port
                return
            last = f"{done.stderr.strip()}\n{self._log_tail()}".strip()
            self._run([str(self.bin_dir / "pg_ctl"), "stop", "--pgdata", str(self.directory / "data"),
                       "--mode", "immediate", "--wait"], timeout=30)
        raise TempPostgresError(f"pg_ctl start failed: {last[-3000:]}")

    def stop(self, *, remove: bool = True) -> None:
        """Shut the server down (fast mode) and, unless `remove` is False, delete its directory."""
        if self._dir is None:
            return
        if self._running:
            data = str(self.directory / "data")
            done = self._run([str(self.bin_dir / "pg_ctl"), "stop", "--pgdata", data, "--mode", "fast",
                              "--wait", "--timeout", "30"], timeout=40)
            if done.returncode != 0:
                self._run([str(self.bin_dir / "pg_ctl"), "stop", "--pgdata", data, "--mode", "immediate",
                           "--wait"], timeout=40)
            self._running = False
            log.info("pgtemp.stopped", port=self._port)
        if remove:
            self._remove()

    def _remove(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
            self._port = None

    def __enter__(self) -> TempPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __del__(self) -> None:
        # Last resort for a forgotten stop(): never leave a postgres running after the interpreter exits.
        # (getattr: __init__ may have raised before the attribute existed.)
        if getattr(self, "_running", False):
            with contextlib.suppress(Exception):
                self.stop()
