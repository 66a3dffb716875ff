"""Response framing: pam-monitor's HTTP/1.1 client against curl and httpx on the same bytes, never stricter than curl.

Each case is a raw answer a TCP server on 127.0.0.1 writes (then closes). pam-monitor's verdict is what `fetch`
makes of it (the status it read, or the outcome); curl's is `curl -s` (the status, or its exit code); httpx's is
`httpx.Client.get` (the status, or the exception). The README's framing table is this module's output:
`.venv/bin/python -m tests.probes.test_framing` rewrites it.

"Never stricter than curl": wherever curl reads a status in 100-599, pam-monitor reads the same status, except
the few cases in STRICT_ON_PURPOSE, each with the reason (RFC 9112 requires a user agent to refuse them, or the
leniency would misread the answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from alerts.judge.readme_tables import extract, splice
from monitor.core.config import RequestSpec
from probes._http import Fetched, fetch
from tests.support.targets import DepsFactory, deadline_in

pytestmark = pytest.mark.process  # runs curl on the same bytes as pam-monitor

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = "framing-table"
OK = b"HTTP/1.1 200 OK\r\n"


@dataclass(frozen=True)
class Case:
    """One answer on the wire, what it shows, and the verdict pam-monitor must reach."""

    name: str
    what: str
    answer: bytes
    expected: str
    keep_open: bool = False
    """The server leaves the connection open after the answer (until the client closes it)."""


CASES = [
    Case("plain", "Content-Length: 2, CRLF", OK + b"Content-Length: 2\r\n\r\nok", "200"),
    Case("obs-fold", "a header folded onto a second line (RFC 9112 5.2: a user agent MUST accept it)",
         OK + b"X-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok", "200"),
    Case("obs-fold-401", "401 with a folded WWW-Authenticate",
         b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"x\",\r\n error=\"invalid_token\"\r\n"
         b"Content-Length: 2\r\n\r\nno", "401"),
    Case("bare-lf", "every line ends in LF alone", b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", "200"),
    Case("cl-and-te", "Content-Length and Transfer-Encoding: chunked (chunked wins, connection closed after)",
         OK + b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", "200"),
    Case("cl-twice-same", "Content-Length: 2 twice", OK + b"Content-Length: 2\r\nContent-Length: 2\r\n\r\nok", "200"),
    Case("cl-list-same", "Content-Length: 2, 2", OK + b"Content-Length: 2, 2\r\n\r\nok", "200"),
    Case("cl-conflict", "Content-Length: 2 and Content-Length: 3",
         OK + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\nok", "invalid_response"),
    Case("cl-not-number", "Content-Length: 2x", OK + b"Content-Length: 2x\r\n\r\nok", "invalid_response"),
    Case("cl-negative", "Content-Length: -1", OK + b"Content-Length: -1\r\n\r\nok", "invalid_response"),
    Case("space-before-colon", "Content-Length : 2 (whitespace before the colon)",
         OK + b"Content-Length : 2\r\n\r\nok", "200"),
    Case("te-identity", "Transfer-Encoding: identity, body until the server closes",
         OK + b"Transfer-Encoding: identity\r\n\r\nok", "200"),
    Case("te-identity-with-cl", "Transfer-Encoding: identity with Content-Length: 2, connection kept open",
         OK + b"Transfer-Encoding: identity\r\nContent-Length: 2\r\n\r\nok", "200", keep_open=True),
    Case("te-chunked-twice", "Transfer-Encoding: chunked twice",
         OK + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", "200"),
    Case("te-gzip-chunked", "Transfer-Encoding: gzip, chunked (a coding nobody decodes)",
         OK + b"Transfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", "invalid_response"),
    Case("te-xchunked", "Transfer-Encoding: xchunked (a smuggling shape)",
         OK + b"Transfer-Encoding: xchunked\r\n\r\nok", "invalid_response"),
    Case("te-chunked-with-cl-conflict", "Transfer-Encoding: chunked with two different Content-Lengths",
         OK + b"Transfer-Encoding: chunked\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n2\r\nok\r\n0\r\n\r\n",
         "200"),
    Case("te-chunked-lower", "transfer-encoding: chunked, lower case (the usual chunked answer)",
         OK + b"transfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", "200"),
    Case("chunk-space", "chunk size line '2 '", OK + b"Transfer-Encoding: chunked\r\n\r\n2 \r\nok\r\n0\r\n\r\n",
         "200"),
    Case("chunk-ext", "chunk extension '2;a=b'",
         OK + b"Transfer-Encoding: chunked\r\n\r\n2;a=b\r\nok\r\n0\r\n\r\n", "200"),
    Case("chunk-bare-lf", "chunked framing with bare LF",
         OK + b"Transfer-Encoding: chunked\r\n\r\n2\nok\n0\n\n", "invalid_response"),
    Case("chunk-bad-size", "chunk size 'zz'", OK + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n",
         "invalid_response"),
    Case("chunk-cut", "chunked body closed before the last chunk",
         OK + b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n", "connection_error"),
    Case("short-body", "Content-Length: 10, 2 bytes, then close", OK + b"Content-Length: 10\r\n\r\nok",
         "connection_error"),
    Case("head-120k", "a 120 KB header", OK + b"X-Big: " + b"a" * 120_000 + b"\r\nContent-Length: 2\r\n\r\nok",
         "200"),
    Case("head-300k", "a 300 KB header", OK + b"X-Big: " + b"a" * 300_000 + b"\r\nContent-Length: 2\r\n\r\nok",
         "invalid_response"),
    Case("interim-100", "100 Continue, then a bare-LF, folded 200",
         b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\nX-A: a\n b\nContent-Length: 2\n\nok", "200"),
    Case("no-reason", "status line without a reason phrase", b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok", "200"),
    Case("http10-close", "HTTP/1.0, no length, body until close", b"HTTP/1.0 200 OK\r\n\r\nok", "200"),
    Case("status-600", "status 600", b"HTTP/1.1 600 X\r\nContent-Length: 2\r\n\r\nok", "invalid_response"),
    Case("status-999", "status 999", b"HTTP/1.1 999 X\r\nContent-Length: 2\r\n\r\nok", "invalid_response"),
    Case("status-099", "status 099", b"HTTP/1.1 099 X\r\nContent-Length: 2\r\n\r\nok", "invalid_response"),
    Case("nul-in-header", "a NUL byte in a header value", OK + b"X-A: a\x00b\r\nContent-Length: 2\r\n\r\nok",
         "invalid_response"),
    Case("leading-space", "the first header line starts with a space",
         OK + b" X-A: a\r\nContent-Length: 2\r\n\r\nok", "invalid_response"),
    Case("not-http", "an SSH banner", b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "invalid_response"),
    Case("nothing", "the server closes without a byte", b"", "connection_error"),
]

STRICT_ON_PURPOSE = {
    "cl-not-number": "RFC 9112 6.3: an invalid Content-Length is an unrecoverable error for a user agent (curl "
                     "reads '2x' as 2); httpx refuses it too",
    "chunk-bare-lf": "llhttp cannot read bare-LF chunk framing even when told to be lenient; httpx refuses it too",
    "status-600": "RFC 9110 15: a status is 100-599; a monitor must not call 600 a server error (curl reports it)",
    "status-999": "RFC 9110 15: as status-600",
}
"""Cases where curl reads a status and pam-monitor, on purpose, does not: the reason for each."""


@contextlib.contextmanager
def serving(answer: bytes, keep_open: bool = False) -> Iterator[str]:
    """A thread serving `answer` to every connection on 127.0.0.1 (after the request head), then closing it
    (`keep_open`: once the client has closed, or after 2 s); yields the URL. A thread, so curl and httpx's
    blocking client can use it while the test's loop waits."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:  # the accept timeout (to notice `stop`) or the listener closed
                continue
            with conn:
                conn.settimeout(5)
                head = b""
                with contextlib.suppress(OSError):
                    while b"\r\n\r\n" not in head and len(head) < 65536:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        head += chunk
                    conn.sendall(answer)
                    if keep_open:
                        conn.settimeout(2)
                        conn.recv(1)  # until the client closes (or 2 s: curl reads this one until close)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


async def pam_verdict(make_deps: DepsFactory, url: str) -> str:
    """The status pam-monitor read, or its outcome."""
    deps = make_deps(url)
    got = await fetch(deps, "t", RequestSpec(path="/"), deadline=deadline_in(5.0))
    await deps.aclose()  # closes a connection still lingering, so a server keeping it open sees the close now
    return str(got.status) if isinstance(got, Fetched) else got.outcome.value


def curl_verdict(url: str) -> str:
    """curl's status, or its exit code."""
    done = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", url + "/"],
                          capture_output=True, text=True, timeout=20, check=False)
    return done.stdout if done.returncode == 0 else f"error (exit {done.returncode})"


def httpx_verdict(url: str) -> str:
    """httpx's status, or its exception."""
    try:
        with httpx.Client(trust_env=False, timeout=5) as client:
            return str(client.get(url + "/").status_code)
    except httpx.HTTPError as exc:
        return type(exc).__name__


def _status(verdict: str) -> int | None:
    return int(verdict) if verdict.isdigit() and 100 <= int(verdict) <= 599 else None


needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_pam_monitor_verdict(case: Case, make_deps: DepsFactory) -> None:
    """pam-monitor reads each answer as the case expects: lenient where RFC 9112 lets a user agent be, an
    outcome (invalid_response, never connection_error, for bad framing) where it must not."""
    with serving(case.answer, case.keep_open) as url:
        assert case.expected == await pam_verdict(make_deps, url)


@needs_curl
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_never_stricter_than_curl(case: Case, make_deps: DepsFactory) -> None:
    """Where curl reads a status from an answer, pam-monitor reads the same one, except the STRICT_ON_PURPOSE
    cases, where curl must really be the lenient one (so the list cannot hide a case that is no longer one)."""
    with serving(case.answer, case.keep_open) as url:
        ours = await pam_verdict(make_deps, url)
        curls = await asyncio.to_thread(curl_verdict, url)
    if case.name in STRICT_ON_PURPOSE:
        assert curls.isdigit(), (case.name, curls)
        assert ours != curls, (case.name, ours)
    elif _status(curls) is not None:
        assert ours == curls, f"{case.name}: curl read {curls}, pam-monitor {ours}"


async def table(make_deps: DepsFactory) -> str:
    """The README's framing table, measured."""
    rows = ["| Case | The answer | pam-monitor | curl 7.88 | httpx |", "|---|---|---|---|---|"]
    for case in CASES:
        with serving(case.answer, case.keep_open) as url:
            ours = await pam_verdict(make_deps, url)
            curls = await asyncio.to_thread(curl_verdict, url)
            theirs = await asyncio.to_thread(httpx_verdict, url)
        note = " (on purpose)" if case.name in STRICT_ON_PURPOSE else ""
        rows.append(f"| `{case.name}` | {case.what} | {ours}{note} | {curls} | {theirs} |")
    return "\n".join(rows)


@needs_curl
async def test_readme_holds_the_measured_table(make_deps: DepsFactory) -> None:
    """README.md's framing table is what this module measures now (curl and httpx included)."""
    assert await table(make_deps) == extract(README.read_text(encoding="utf-8"), BLOCK), (
        "README.md is stale: run `.venv/bin/python -m tests.probes.test_framing`")


async def _main() -> None:
    factory = DepsFactory()
    try:
        text = splice(README.read_text(encoding="utf-8"), BLOCK, await table(factory))
    finally:
        await factory.aclose()
    README.write_text(text, encoding="utf-8")
    print(f"rewrote the {BLOCK} block of {README}")


if __name__ == "__main__":
    asyncio.run(_main())
