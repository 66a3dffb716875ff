"""SIGHUP reloads in a child process: a time and a memory budget, killed at once when the daemon stops.

The daemon's event loop never parses the new file itself, so a huge or hostile file can neither stall probes nor
grow the daemon, and a reload stuck on a file read (a stalled network disk, a FIFO) never holds up shutdown: the
child is killed, the running configuration stays. The child loads the file exactly as `pam-monitor validate`
would and hands the validated Config back pickled (it is our own interpreter running our own code).
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import resource
import sys
from pathlib import Path

from monitor.core.config import Config, load_config
from monitor.core.errors import ConfigError

RELOAD_TIMEOUT_S = 30.0
"""A reload that has not produced a configuration by then is abandoned (10,000 checks load in about 2 s)."""
RELOAD_MEMORY_BYTES = 1 << 30
"""The child's address-space limit: a file that needs more than this to load is refused, the daemon untouched.
Lowered to the limit the daemon itself runs under when that is smaller (see memory_budget)."""
_MIB = 1024 * 1024
_CHILD = "from monitor.reload import child_main; child_main()"


async def load_in_child(
    path: Path | None, *, listen: str | None, shard: tuple[int, int] | None,
    timeout: float = RELOAD_TIMEOUT_S, memory: int = RELOAD_MEMORY_BYTES,
) -> Config:
    """The configuration in `path`, loaded by a child process within `timeout` seconds and `memory` bytes.

    Raises ConfigError with one line per problem: the file's own, or one saying which budget it ran out of.
    Cancelling the call kills the child at once.
    """
    label = str(path) if path is not None else "<defaults>"
    memory = memory_budget(memory)
    request = pickle.dumps((str(path) if path is not None else None, listen, shard, memory))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CHILD, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate(request)
    except TimeoutError:
        raise ConfigError([f"{label}: the reload took longer than {timeout:g} s and was abandoned; check that the "
                           "file and every ${file:} it names can be read quickly"]) from None
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(Exception):
                await asyncio.shield(proc.wait())
    if proc.returncode != 0 or not out:
        raise ConfigError([f"{label}: {_child_failure(proc.returncode, err, memory)}"])
    kind, value = pickle.loads(out)  # noqa: S301 (our own child's answer, over a pipe only it holds)
    if kind == "ok":
        assert isinstance(value, Config)
        return value
    raise ConfigError(list(value))


def memory_budget(wanted: int = RELOAD_MEMORY_BYTES) -> int:
    """The reload child's address-space limit: `wanted`, or less when this process already runs under a smaller
    RLIMIT_AS (soft or hard: `ulimit -v`). The child inherits that limit and may lower it, never raise it, so
    asking for more fails (`not allowed to raise maximum limit`) and no reload could ever succeed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    return min([wanted, *(limit for limit in (soft, hard) if limit != resource.RLIM_INFINITY)])


def _child_failure(code: int | None, stderr: bytes, memory: int) -> str:
    """Why the child produced no answer, from its exit and the last line it wrote (a Python error's type and
    text: it never read the file's values into that line, which come back through the answer only)."""
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    last = lines[-1][:200] if lines else ""
    if "MemoryError" in last or code == -9:
        return (f"the reload ran out of its {memory // _MIB} MiB memory budget before it could answer; check the "
                "file's size and aliases, or raise the daemon's address-space limit (ulimit -v)")
    said = f": {last}" if last else ""
    return f"the reload's child process failed (exit {code}){said}; the running configuration is kept"


def child_main() -> None:
    """The child's side: read the request on stdin, load within the memory limit, answer pickled on stdout."""
    path, listen, shard, memory = pickle.loads(sys.stdin.buffer.read())  # noqa: S301 (written by our parent)
    label = path or "<defaults>"
    try:
        # Only ever lowered: the parent sized `memory` under the limits this process inherited, and when the
        # inherited limit is that size already there is nothing to set.
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY or memory < soft:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    except (ValueError, OSError) as exc:
        sys.stdout.buffer.write(pickle.dumps(("problems", [
            f"{label}: could not set the reload's memory limit ({memory // _MIB} MiB): {exc}; the running "
            "configuration is kept"])))
        sys.stdout.buffer.flush()
        return
    too_big = ("problems", [f"{label}: loading it needs more than the reload's {memory // _MIB} MiB memory budget; "
                            "check the file's size and aliases"])
    answer: tuple[str, object] | None = None
    try:
        answer = ("ok", load_config(path, listen=listen, shard=shard))
        data = pickle.dumps(answer)
    except ConfigError as exc:
        data = pickle.dumps(("problems", exc.problems))
    except MemoryError:
        answer = None  # let the half-built configuration go before saying so
        data = pickle.dumps(too_big)
    except Exception as exc:  # a value that cannot be pickled is a bug; say so rather than die silently
        data = pickle.dumps(("problems", [f"{label}: the reloaded configuration could not be handed over "
                                          f"({type(exc).__name__}); restart the daemon to apply it"]))
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
