"""probes/wire.py on real sockets: one connection per probe or reused ones, never a resent request, phase
timings and TLS facts, and answers a monitor must not wait on (malformed chunked bodies)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import probes
from monitor.core.config import RequestSpec
from monitor.core.results import Outcome
from probes._http import Failed, Fetched, fetch
from tests.support.targets import DepsFactory, Handler, deadline_in, raw_tcp_server, run_probe, self_signed_tls
from tests.support.targets import http_check as make_check

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


class Counting:
    """A raw HTTP server's tally: connections accepted and request heads read, with the heads themselves."""

    def __init__(self) -> None:
        self.connections = 0
        self.heads: list[bytes] = []


async def _head(reader: asyncio.StreamReader) -> bytes | None:
    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
        return await reader.readuntil(b"\r\n\r\n")
    return None


def keep_alive_server(tally: Counting, *, reset_on: int | None = None, answers_per_connection: int = 100) -> Handler:
    """Answers every request on a connection with ANSWER (keep-alive), up to `answers_per_connection`, then
    closes; resets the connection instead of answering request number `reset_on` (1-based, over all)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tally.connections += 1
        for _ in range(answers_per_connection):
            head = await _head(reader)
            if head is None:
                return
            tally.heads.append(head)
            if reset_on is not None and len(tally.heads) == reset_on:
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return
            writer.write(ANSWER)
            await writer.drain()

    return handle


@contextlib.asynccontextmanager
async def counting_server(**kw: int) -> AsyncIterator[tuple[str, Counting]]:
    tally = Counting()
    async with raw_tcp_server(keep_alive_server(tally, **kw)) as url:
        yield url, tally


async def _get(deps: object, path: str = "/") -> Fetched | Failed:
    return await fetch(deps, "t", RequestSpec(path=path), deadline=deadline_in(3.0))  # type: ignore[arg-type]


async def test_fresh_connection_per_probe_by_default(make_deps: DepsFactory) -> None:
    """Without http.keep_alive every probe opens its own connection and says Connection: close, as
    blackbox_exporter does: each probe sees the connect (and TLS handshake) a new client would."""
    async with counting_server() as (url, tally):
        deps = make_deps(url)
        got = [await _get(deps) for _ in range(3)]
    assert [200, 200, 200] == [g.status for g in got if isinstance(g, Fetched)]
    assert 3 == tally.connections
    assert all(b"\r\nConnection: close\r\n" in head for head in tally.heads)


async def test_keep_alive_reuses_one_connection(make_deps: DepsFactory) -> None:
    """With http.keep_alive, sequential probes share one connection; the reused one spends no time connecting."""
    async with counting_server() as (url, tally):
        deps = make_deps(url, keep_alive=True)
        got = [await _get(deps) for _ in range(3)]
    traces = [g.trace for g in got if isinstance(g, Fetched) and g.trace is not None]
    assert (1, 3) == (tally.connections, len(traces))
    assert [False, True, True] == [t.reused for t in traces]
    assert 0.0 == traces[2].connect


async def test_reset_on_a_reused_connection_is_reported_not_resent(make_deps: DepsFactory) -> None:
    """A kept-alive connection reset by the server after the request went out is connection_error ('reset by
    peer'), and the request is not sent again on a new connection (aiohttp resends an idempotent request)."""
    async with counting_server(reset_on=2) as (url, tally):
        deps = make_deps(url, keep_alive=True)
        first = await _get(deps)
        second = await _get(deps)
    assert isinstance(first, Fetched)
    assert isinstance(second, Failed), second
    assert Outcome.CONNECTION_ERROR == second.outcome
    assert "reset by peer" in second.message
    assert (1, 2) == (tally.connections, len(tally.heads))


async def test_connection_closed_while_idle_is_not_a_failure(make_deps: DepsFactory) -> None:
    """A pooled connection the server closed while it sat idle is not used again: the next probe connects
    anew and passes."""
    async with counting_server(answers_per_connection=1) as (url, tally):
        deps = make_deps(url, keep_alive=True)
        first = await _get(deps)
        await asyncio.sleep(0.1)  # the server's close reaches the client
        second = await _get(deps)
    assert (200, 200) == (getattr(first, "status", None), getattr(second, "status", None)), second
    assert 2 == tally.connections


@pytest.mark.parametrize(
    "body",
    [b"zz\r\nabc\r\n", b"3\r\nabcdef\r\n", b"3\r\nabc\r\n0\r\nX-Trailer\r\n\r\n", b"-1\r\nabc\r\n",
     b"3;\x00\r\nabc\r\n"],
    ids=["bad-size", "longer-than-size", "bad-trailer", "negative-size", "control-char-extension"],
)
async def test_malformed_chunked_body_is_invalid_response_at_once(make_deps: DepsFactory, body: bytes) -> None:
    """A malformed chunked body after a 200 head is invalid_response within a moment, not a wait for the
    deadline (aiohttp waits on one such body until it times out); the server keeps the connection open."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
        await writer.drain()
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(10):
                await reader.read(1)

    async with raw_tcp_server(handle) as url:
        started = time.monotonic()
        result = await run_probe(make_check("/", timeout=8.0), make_deps(url))
        took = time.monotonic() - started
    assert (Outcome.INVALID_RESPONSE, 200) == (result.outcome, result.status_code), result.message
    # Ended by the answer, not by the 8 s timeout (the server holds the connection for 10 s): generous for a busy
    # machine.
    assert took < 4.0, f"{took:.2f} s"


async def test_head_answer_ends_at_its_head(make_deps: DepsFactory) -> None:
    """A HEAD answer announcing a Content-Length ends at its head (no body follows): ok at once, not a wait for
    a body that never comes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        await writer.drain()
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(10):
                await reader.read(1)

    async with raw_tcp_server(handle) as url:
        started = time.monotonic()
        result = await run_probe(make_check("/", method="HEAD", timeout=8.0), make_deps(url))
        took = time.monotonic() - started
    assert (Outcome.OK, 200) == (result.outcome, result.status_code), result.message
    # Ended by the answer, not by the 8 s timeout (the server holds the connection for 10 s): generous for a busy
    # machine.
    assert took < 4.0, f"{took:.2f} s"


async def test_http_facts_of_a_plain_request(base_url: str, make_deps: DepsFactory) -> None:
    """The registry's http probe carries the transport's facts: HTTP/1.1, the announced Content-Length (-1
    for a chunked body), time spent waiting for the answer, and no TLS."""
    deps = make_deps(base_url.replace("127.0.0.1", "localhost"))
    probe = probes.REGISTRY["http"].probe
    deadline = deadline_in(3.0)
    sized = await probe(make_check("/respond?body=hello"), deps, deadline)
    chunked = await probe(make_check("/endless?size=10"), deps, deadline)
    assert sized.http is not None
    assert chunked.http is not None
    assert (1.1, 5, -1) == (sized.http.version, sized.http.content_length, chunked.http.content_length)
    assert sized.http.phases["processing"] > 0.0
    assert sized.http.phases["resolve"] == sized.http.dns_lookup_s > 0.0  # 'localhost' is resolved each time
    assert None is sized.http.tls


async def test_http_facts_when_nothing_answers(make_deps: DepsFactory) -> None:
    """A refused connection still carries facts: no answer (version 0, content length 0, as blackbox)."""
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{spare.getsockname()[1]}"
    result = await probes.REGISTRY["http"].probe(make_check("/"), make_deps(url), deadline_in(3.0))
    assert Outcome.CONNECTION_ERROR == result.outcome
    assert result.http is not None
    assert (0.0, 0) == (result.http.version, result.http.content_length)


@pytest.mark.process
async def test_tls_facts_of_a_verified_connection(tmp_path: Path, make_deps: DepsFactory) -> None:
    """An https answer carries the negotiated TLS version and the certificate's subject, issuer and notAfter;
    with verification off the certificate is still read (its expiry is known), but no chain was verified."""
    cert, server_tls = self_signed_tls(tmp_path)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _head(reader)
        writer.write(ANSWER)
        await writer.drain()

    async with raw_tcp_server(handle, tls=server_tls) as url:
        verified = await _get(make_deps(url, target={"ca_file": str(cert)}))
        unverified = await _get(make_deps(url, target={"verify_tls": False}))
    assert isinstance(verified, Fetched)
    assert verified.trace is not None
    facts = verified.trace.tls_facts
    assert facts is not None
    assert facts.not_after is not None
    assert ("TLSv1.3", "CN=pam-monitor test", "CN=pam-monitor test") == (facts.version, facts.subject, facts.issuer)
    assert 0 < facts.not_after - time.time() <= 3 * 86400
    assert verified.trace.tls > 0.0
    assert isinstance(unverified, Fetched)
    assert unverified.trace is not None
    assert unverified.trace.tls_facts is not None
    assert facts.not_after == facts.earliest_expiry == facts.chain_expiry  # self-signed: the chain is the leaf
    seen = unverified.trace.tls_facts
    assert ("TLSv1.3", facts.not_after, facts.not_after, None, "CN=pam-monitor test") == (
        seen.version, seen.not_after, seen.earliest_expiry, seen.chain_expiry, seen.subject)
