"""probes/wire.py's promises beyond framing, on real sockets: the monitor's own resource limits are a skipped run
(never the target's outcome), typed errors with the socket error as cause, Happy Eyeballs across a name's
addresses, and a target's proxy_url (CONNECT and absolute form) through a tiny real proxy on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import re
import resource
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from monitor.core.config import Config, RequestSpec
from monitor.core.results import Outcome
from monitor.core.secrets import collect_secrets
from monitor.metrics import Metrics
from monitor.runner import Runner
from monitor.state import State
from probes import _errors
from probes._http import Fetched, fetch
from probes.deps import build_deps
from probes.wire import Trace, WireTransport, interleave, prepare
from tests.support.targets import (
    OK_ANSWER,
    DepsFactory,
    canned_handler,
    deadline_in,
    raw_tcp_server,
    run_probe,
    self_signed_tls,
)
from tests.support.targets import http_check as make_check

# ---------------------------------------------------------------------------------------------- own limits


@contextlib.contextmanager
def no_free_descriptors() -> Iterator[None]:
    """This process out of file descriptors (EMFILE): the soft RLIMIT_NOFILE lowered to just above the fds in
    use and the rest taken by duplicates of one socket; everything is given back on exit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    probe = socket.socket()
    held: list[int] = []
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (probe.fileno() + 16, hard))
        for _ in range(64):  # bounded: the limit is 16 above, so EMFILE comes within 16
            try:
                held.append(probe.dup().detach())
            except OSError as exc:
                if exc.errno != errno.EMFILE:
                    raise
                break
        else:
            pytest.fail("could not exhaust file descriptors")
        yield
    finally:
        for fd in held:
            with contextlib.suppress(OSError):
                socket.close(fd)
        probe.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _runner(url: str) -> Runner:
    config = Config.model_validate({
        "targets": {"t": {"base_url": url}},
        "defaults": {"interval": "10s", "timeout": "1s"},
        "checks": [{"name": "c", "kind": "http", "target": "t", "path": "/"}],
    })
    deps = build_deps(config)
    return Runner(config, deps, Metrics(process_metrics=False), State(deps.clock.monotonic))


async def test_running_out_of_file_descriptors_is_a_skipped_run_not_the_targets_outcome() -> None:
    """With no file descriptor left, the run is skipped as saturated (counted, logged with its cause), with no
    result: before, it was connection_error ("Too many open files") and paged EndpointDown."""
    async with raw_tcp_server(canned_handler(OK_ANSWER)) as url:
        runner = _runner(url)
        recorded: list[object] = []
        runner.on_result = recorded.append
        with capture_logs() as logs, no_free_descriptors():
            result = await runner.run_once(runner.checks["c"])
        await runner.deps.aclose()
    assert result is None
    assert 1 == runner.saturation.total
    assert 1.0 == runner.metrics.skipped.labels("saturated")._value.get()
    (line,) = [e for e in logs if e["event"] == "scheduler.saturated"]
    assert "too many open files (EMFILE)" in line["cause"], line
    assert [] == recorded


async def test_check_mode_reports_exhaustion_as_the_monitors_internal_error() -> None:
    """`pam-monitor check` reports every run: out of descriptors it says internal_error, pam-monitor's own
    resources, never connection_error."""
    async with raw_tcp_server(canned_handler(OK_ANSWER)) as url:
        runner = _runner(url)
        with no_free_descriptors():
            result = await runner.run_once(runner.checks["c"], must_trust=False)
        await runner.deps.aclose()
    assert result is not None
    assert Outcome.INTERNAL_ERROR == result.outcome
    assert "pam-monitor ran out of its own resources" in result.message


@pytest.mark.parametrize("code", sorted(_errors.LOCAL_ERRNOS))
def test_every_local_errno_is_the_monitors(code: int) -> None:
    """EMFILE, ENFILE, ENOBUFS, EADDRNOTAVAIL and ENOMEM are the monitor's; a refused or reset connection is not."""
    exhausted = _errors.local_exhaustion(OSError(code, "x"))
    assert exhausted is not None
    assert errno.errorcode[code] in exhausted.cause
    assert _errors.local_exhaustion(OSError(errno.ECONNREFUSED, "refused")) is None


# ---------------------------------------------------------------------------------------------- typed errors


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_errors_are_typed_with_the_socket_error_as_cause() -> None:
    """A refused connect raises ConnectFailed caused by ConnectionRefusedError; a server that closes at once
    ConnectionClosed; one that answers garbage InvalidResponse; none is an httpx exception any more."""
    transport = WireTransport(None)
    refused = prepare(httpx.Request("GET", f"http://127.0.0.1:{_free_port()}/"))
    with pytest.raises(_errors.ConnectFailed) as caught:
        await transport.send(refused, Trace())
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    async with raw_tcp_server(canned_handler()) as url:
        with pytest.raises(_errors.ConnectionClosed):
            await transport.send(prepare(httpx.Request("GET", url + "/")), Trace())
    async with raw_tcp_server(canned_handler(b"SSH-2.0-x\r\n\r\n")) as url:
        with pytest.raises(_errors.InvalidResponse):
            await transport.send(prepare(httpx.Request("GET", url + "/")), Trace())
    await transport.aclose()


# ---------------------------------------------------------------------------------------------- Happy Eyeballs


def test_families_are_interleaved() -> None:
    """RFC 8305 4: the first address's family first, then alternating, each family in the resolver's order."""
    v4a, v4b = (socket.AF_INET, ("127.0.0.2", 1)), (socket.AF_INET, ("127.0.0.3", 1))
    v6a, v6b = (socket.AF_INET6, ("::1", 1, 0, 0)), (socket.AF_INET6, ("::2", 1, 0, 0))
    assert [v6a, v4a, v6b, v4b] == interleave([v6a, v6b, v4a, v4b])
    assert [v4a, v6a, v4b] == interleave([v4a, v4b, v6a])


@contextlib.contextmanager
def black_hole(host: str, port: int) -> Iterator[None]:
    """host:port listening with a full accept queue: the kernel drops new SYNs, a connect never completes."""
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(socket.socket())
        server.bind((host, port))
        server.listen(0)
        for _ in range(3):
            filler = stack.enter_context(socket.socket())
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect((host, port))
        yield


@contextlib.asynccontextmanager
async def answering(host: str) -> AsyncIterator[int]:
    """A server on host (port chosen) answering every request with a 200; yields the port."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(OK_ANSWER)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, host, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_a_name_whose_first_address_drops_syns_connects_to_the_second() -> None:
    """A name resolving to [an address that drops SYNs, a good one] (both on 127.0.0.0/8, same port) is answered
    through the second address after the 250 ms attempt delay, long before the 3 s deadline that the old
    one-address-at-a-time connect spent entirely on the first."""
    async with answering("127.0.0.3") as port:
        with black_hole("127.0.0.2", port):
            def resolver(host: str, p: int) -> list[tuple[int, Any]]:
                return [(socket.AF_INET, ("127.0.0.2", p)), (socket.AF_INET, ("127.0.0.3", p))]

            transport = WireTransport(None, resolver=resolver)
            trace = Trace()
            async with asyncio.timeout(3.0):
                exchange = await transport.send(prepare(httpx.Request("GET", f"http://dual.test:{port}/")), trace)
            transport.release(exchange)
            await transport.aclose()
    assert 200 == exchange.status
    # Generous: the attempt delay is 0.25 s; the bound only shows the first address did not take the deadline.
    assert 0.2 <= trace.connect < 2.0, trace.connect


async def test_a_refused_first_address_moves_on_at_once() -> None:
    """A first address that refuses starts the next attempt at once, not after the 250 ms delay."""
    async with answering("127.0.0.3") as port:
        def resolver(host: str, p: int) -> list[tuple[int, Any]]:
            return [(socket.AF_INET, ("127.0.0.4", p)), (socket.AF_INET, ("127.0.0.3", p))]

        transport = WireTransport(None, resolver=resolver, attempt_delay=5.0)
        trace = Trace()
        async with asyncio.timeout(3.0):  # far under the 5 s attempt delay: the refusal moved it on
            exchange = await transport.send(prepare(httpx.Request("GET", f"http://dual.test:{port}/")), trace)
        transport.release(exchange)
        await transport.aclose()
    assert 200 == exchange.status


async def test_every_address_dropping_syns_runs_out_the_deadline_and_leaks_nothing() -> None:
    """When no address connects, the attempts run until the caller's deadline (a timeout, the target's), and
    every attempt's socket is closed (pytest turns an unclosed one into a failure with -W error)."""
    listener = socket.socket()
    listener.bind(("127.0.0.2", 0))
    port = listener.getsockname()[1]
    listener.close()
    with black_hole("127.0.0.2", port), black_hole("127.0.0.3", port):
        def resolver(host: str, p: int) -> list[tuple[int, Any]]:
            return [(socket.AF_INET, ("127.0.0.2", p)), (socket.AF_INET, ("127.0.0.3", p))]

        transport = WireTransport(None, resolver=resolver, attempt_delay=0.05)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.4):
                await transport.send(prepare(httpx.Request("GET", f"http://dual.test:{port}/")), Trace())
        await asyncio.sleep(0.05)  # the cancelled attempts unwind and close their sockets
        await transport.aclose()


# ---------------------------------------------------------------------------------------------- proxy


class TinyProxy:
    """An HTTP proxy on 127.0.0.1: CONNECT tunnels and absolute-form requests, with optional Basic auth; records
    the request lines and Proxy-Authorization values it saw."""

    def __init__(self, credentials: str | None = None) -> None:
        self.credentials = credentials
        self.lines: list[bytes] = []
        self.auth: list[str | None] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: set[asyncio.Task[Any]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one client connection (the task is kept so the test can end it)."""
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self.writers.append(writer)
        try:
            await self._serve(reader, writer)
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        line, *headers = head.split(b"\r\n")
        self.lines.append(line)
        given = next((h.split(b":", 1)[1].strip().decode() for h in headers
                      if h.lower().startswith(b"proxy-authorization:")), None)
        self.auth.append(given)
        expected = (None if self.credentials is None
                    else "Basic " + base64.b64encode(self.credentials.encode()).decode())
        if given != expected:
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        method, target, _ = line.split(b" ")
        if method == b"CONNECT":
            host, _, port = target.decode().rpartition(":")
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            self.writers.append(up_writer)
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            rest = b""
        else:
            match = re.match(rb"http://([^/:]+):(\d+)(/.*)", target)
            assert match is not None, target
            up_reader, up_writer = await asyncio.open_connection(match.group(1).decode(), int(match.group(2)))
            self.writers.append(up_writer)
            kept = [h for h in headers if h and not h.lower().startswith(b"proxy-authorization:")]
            rest = b" ".join([method, match.group(3), b"HTTP/1.1"]) + b"\r\n" + b"\r\n".join(kept) + b"\r\n\r\n"
        up_writer.write(rest)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while chunk := await src.read(65536):
                    dst.write(chunk)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@contextlib.asynccontextmanager
async def tiny_proxy(credentials: str | None = None) -> AsyncIterator[tuple[TinyProxy, int]]:
    """A TinyProxy listening on 127.0.0.1; yields it and its port."""
    proxy = TinyProxy(credentials)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    try:
        yield proxy, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in proxy.writers:
            writer.close()
        for task in proxy.tasks:
            task.cancel()
        await asyncio.gather(*proxy.tasks, return_exceptions=True)
        await server.wait_closed()


async def test_http_target_through_the_proxy_in_absolute_form(make_deps: DepsFactory) -> None:
    """An http target with proxy_url is asked through the proxy: absolute-form request line, Basic
    Proxy-Authorization from the URL's user:password, and the target's answer comes back."""
    async with raw_tcp_server(canned_handler(OK_ANSWER)) as url, tiny_proxy("user:s3cret-pw") as (proxy, port):
        deps = make_deps(url, target={"proxy_url": f"http://user:s3cret-pw@127.0.0.1:{port}"})
        got = await fetch(deps, "t", RequestSpec(path="/x"), deadline=deadline_in(3.0))
    assert isinstance(got, Fetched), got
    assert 200 == got.status
    assert [f"GET {url}/x HTTP/1.1".encode()] == proxy.lines
    assert ["Basic " + base64.b64encode(b"user:s3cret-pw").decode()] == proxy.auth


@pytest.mark.process  # makes its certificate with openssl
async def test_https_target_through_a_connect_tunnel(tmp_path: Path, make_deps: DepsFactory) -> None:
    """An https target with proxy_url goes through CONNECT host:port; TLS runs end to end with the target."""
    cert, server_tls = self_signed_tls(tmp_path)
    async with raw_tcp_server(canned_handler(OK_ANSWER), tls=server_tls) as url, tiny_proxy() as (proxy, port):
        deps = make_deps(url, target={"proxy_url": f"http://127.0.0.1:{port}", "ca_file": str(cert)})
        result = await run_probe(make_check("/"), deps)
    assert (Outcome.OK, 200) == (result.outcome, result.status_code), result.message
    assert [f"CONNECT {url.removeprefix('https://')} HTTP/1.1".encode()] == proxy.lines


async def test_a_refusing_proxy_is_named_without_its_password(make_deps: DepsFactory) -> None:
    """A proxy that answers 407 makes the run connection_error naming the proxy's host:port and status, never
    the password; the password is registered with the redactor through the config."""
    async with raw_tcp_server(canned_handler(OK_ANSWER)) as url, tiny_proxy("user:right") as (_, port):
        https_url = url.replace("http://", "https://")
        proxy_url = f"http://user:wr0ng-pass@127.0.0.1:{port}"
        result = await run_probe(make_check("/"), make_deps(https_url, target={"proxy_url": proxy_url}))
    assert Outcome.CONNECTION_ERROR == result.outcome
    assert f"127.0.0.1:{port} refused the tunnel" in result.message, result.message
    assert "407" in result.message, result.message
    assert "wr0ng-pass" not in result.message
    config = Config.model_validate({"targets": {"t": {"base_url": "https://x.test", "proxy_url": proxy_url}}})
    assert "wr0ng-pass" in collect_secrets(config)


async def test_a_proxy_that_is_down_is_connection_error_naming_it(make_deps: DepsFactory) -> None:
    """No proxy listening: connection_error that says the proxy could not be reached."""
    port = _free_port()
    result = await run_probe(make_check("/"), make_deps("http://127.0.0.1:9", target={
        "proxy_url": f"http://127.0.0.1:{port}"}))
    assert Outcome.CONNECTION_ERROR == result.outcome
    assert f"could not connect to the proxy 127.0.0.1:{port}" in result.message, result.message


async def test_a_host_name_lookup_out_of_descriptors_is_the_monitors_too() -> None:
    """A target named by host name: with no descriptor left the lookup itself fails (glibc cannot open
    /etc/hosts); that is the monitor's exhaustion too, a skipped run, not dns_error or connection_error."""
    async with raw_tcp_server(canned_handler(OK_ANSWER)) as url:
        runner = _runner(url.replace("127.0.0.1", "localhost"))
        socket.getaddrinfo("localhost", 80)  # the first lookup imports the idna codec: not under the limit
        with no_free_descriptors():
            result = await runner.run_once(runner.checks["c"])
        await runner.deps.aclose()
    assert result is None
    assert 1 == runner.saturation.total


async def test_an_answer_with_length_and_chunking_is_not_reused(make_deps: DepsFactory) -> None:
    """Content-Length with Transfer-Encoding: chunked is read (chunked wins) but its connection is closed after,
    even with keep-alive (RFC 9112 6.1): the next request opens a new connection."""
    answer = (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"2\r\nok\r\n0\r\n\r\n")
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            for _ in range(5):  # keeps the connection open for more requests
                await reader.readuntil(b"\r\n\r\n")
                writer.write(answer)
                await writer.drain()

    async with raw_tcp_server(handle) as url:
        deps = make_deps(url, keep_alive=True)
        for _ in range(2):
            got = await fetch(deps, "t", RequestSpec(path="/"), deadline=deadline_in(3.0))
            assert isinstance(got, Fetched), got
            assert b"ok" == got.body
    assert 2 == connections


async def test_identity_sign_ins_go_through_the_proxy_too(make_deps: DepsFactory) -> None:
    """The httpx client that signs identities in for a target (Deps.client_for) uses its proxy_url as well, so a
    target reachable only through its proxy can still be signed in to."""
    async with raw_tcp_server(canned_handler(OK_ANSWER)) as url, tiny_proxy("u:pw") as (proxy, port):
        deps = make_deps(url, target={"proxy_url": f"http://u:pw@127.0.0.1:{port}"})
        response = await deps.client_for(deps.targets["t"]).get(url + "/token")
    assert 200 == response.status_code
    assert [f"GET {url}/token HTTP/1.1".encode()] == proxy.lines
