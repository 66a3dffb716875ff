"""The shared HTTP client on the wire (headers, URL, redirects, cookies, proxies, TLS) and how every way a
connection can fail is classified, against real servers on 127.0.0.1."""

from __future__ import annotations

import gc
import json
import re
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from monitor.core.config import RequestSpec
from monitor.core.results import Outcome
from probes._http import Failed, Fetched, fetch
from tests.support.servers import free_port
from tests.support.targets import (
    OK_ANSWER,
    TIMING,
    DepsFactory,
    canned_handler,
    deadline_in,
    raw_tcp_server,
    run_probe,
    self_signed_tls,
    unaccepted_port,
)
from tests.support.targets import http_check as make_check


async def fetched(deps: Any, spec: RequestSpec) -> Fetched:
    got = await fetch(deps, "t", spec, deadline=deadline_in(3.0))
    assert isinstance(got, Fetched), got
    return got


async def test_request_headers_on_the_wire(base_url: str, make_deps: DepsFactory) -> None:
    """The request carries Accept-Encoding: identity (so the byte cap bounds memory), our User-Agent and the
    target's headers, and nothing the client library would add on its own such as a cookie."""
    deps = make_deps(base_url, headers={"X-Api-Key": "k-123"})
    got = await fetched(deps, RequestSpec(path="/echo"))
    headers = json.loads(got.body)["headers"]
    assert "identity" == headers.get("accept-encoding")
    assert "pam-monitor-test" == headers.get("user-agent")
    assert "k-123" == headers.get("x-api-key")
    assert None is headers.get("cookie")


async def test_path_and_query_arrive_as_built(base_url: str, make_deps: DepsFactory) -> None:
    """The path (with a quoted parameter) and the query reach the server byte for byte as httpx built them."""
    spec = RequestSpec(path="/echo/{id}", params={"id": "a/b c%é"},
                       query={"select": "*", "q": "x y&z=é/%2F", "limit": "0"})
    got = await fetched(make_deps(base_url), spec)
    echoed = json.loads(got.body)
    built = httpx.Request("GET", base_url + spec.filled_path(), params=spec.query).url
    assert ("/echo/a%2Fb%20c%25%C3%A9", built.query.decode()) == (echoed["raw_path"], echoed["query"])
    assert [("select", "*"), ("q", "x y&z=é/%2F"), ("limit", "0")] == parse_qsl(echoed["query"])


async def test_redirect_is_not_followed(base_url: str, make_deps: DepsFactory) -> None:
    """A 302 is reported as it is (unexpected_status 302), not followed to the page it points at."""
    result = await run_probe(make_check("/redirect"), make_deps(base_url))
    assert (Outcome.UNEXPECTED_STATUS, 302) == (result.outcome, result.status_code)


async def test_cookies_are_not_kept_between_probes(base_url: str, make_deps: DepsFactory) -> None:
    """A cookie set by one response is not sent with the next request: every probe starts without state (an
    auth check must never ride on a session cookie from an earlier probe)."""
    deps = make_deps(base_url)
    first = await fetched(deps, RequestSpec(path="/cookie"))
    assert "session=abc123" in first.headers.get("set-cookie", "")
    echoed = json.loads((await fetched(deps, RequestSpec(path="/echo"))).body)
    assert None is echoed["headers"].get("cookie")


async def test_proxy_environment_is_ignored(base_url: str, make_deps: DepsFactory,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Proxy variables in the environment are not used (trust_env off): the probe goes straight to the target
    although the proxy named there does not exist."""
    dead = f"http://127.0.0.1:{free_port()}"
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, dead)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    result = await run_probe(make_check(), make_deps(base_url))
    assert (Outcome.OK, 200) == (result.outcome, result.status_code)


# ---------------------------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cert, _ = self_signed_tls(tmp_path_factory.mktemp("tls"))
    return cert


@pytest.mark.process
async def test_tls_self_signed_is_tls_error(tls_cert: Path, make_deps: DepsFactory) -> None:
    """With verification on and no ca_file, a self-signed certificate is tls_error saying verification failed."""
    _, server_tls = self_signed_tls(tls_cert.parent)
    async with raw_tcp_server(canned_handler(OK_ANSWER), tls=server_tls) as url:
        result = await run_probe(make_check("/"), make_deps(url))
    assert Outcome.TLS_ERROR == result.outcome
    assert result.message.startswith("GET /: TLS handshake with 127.0.0.1 failed: ")
    assert "certificate verify failed" in result.message


@pytest.mark.process
async def test_tls_ca_file_is_trusted(tmp_path: Path, make_deps: DepsFactory) -> None:
    """The target's ca_file is used to verify the server: the same self-signed server is then ok."""
    cert, server_tls = self_signed_tls(tmp_path)
    async with raw_tcp_server(canned_handler(OK_ANSWER), tls=server_tls) as url:
        result = await run_probe(make_check("/"), make_deps(url, target={"ca_file": str(cert)}))
    assert (Outcome.OK, 200) == (result.outcome, result.status_code)


@pytest.mark.process
async def test_tls_verify_off_accepts_any_certificate(tmp_path: Path, make_deps: DepsFactory) -> None:
    """verify_tls: false accepts the self-signed certificate (ok)."""
    _, server_tls = self_signed_tls(tmp_path)
    async with raw_tcp_server(canned_handler(OK_ANSWER), tls=server_tls) as url:
        result = await run_probe(make_check("/"), make_deps(url, target={"verify_tls": False}))
    assert (Outcome.OK, 200) == (result.outcome, result.status_code)


async def test_https_to_a_plain_http_port_is_tls_error(base_url: str, make_deps: DepsFactory) -> None:
    """Speaking TLS to a plain-HTTP server fails the handshake: tls_error."""
    result = await run_probe(make_check("/"), make_deps(base_url.replace("http://", "https://")))
    assert Outcome.TLS_ERROR == result.outcome
    assert result.message.startswith("GET /: TLS handshake with 127.0.0.1 failed: ")


# ---------------------------------------------------------------------------------------------- broken answers


HEAD_200 = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
SHORT = HEAD_200 + b"Content-Length: 1000\r\n\r\n"
CHUNKED = HEAD_200 + b"Transfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    ("parts", "reset", "outcome", "status", "starts"),
    [
        ((), False, Outcome.CONNECTION_ERROR, None, "server closed the connection before any response"),
        ((), True, Outcome.CONNECTION_ERROR, None, "connection to 127.0.0.1 reset by peer"),
        ((SHORT, b"abc"), False, Outcome.CONNECTION_ERROR, 200,
         "server closed the connection while reading a 200 response"),
        ((SHORT, b"abc"), True, Outcome.CONNECTION_ERROR, 200,
         "connection to 127.0.0.1 reset by peer while reading a 200 response"),
        ((CHUNKED, b"5\r\nabc"), False, Outcome.CONNECTION_ERROR, 200,
         "server closed the connection while reading a 200 response"),
        ((CHUNKED, b"zz\r\nabc\r\n"), False, Outcome.INVALID_RESPONSE, 200,
         "the body of the 200 response is not valid HTTP"),
        ((b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 300_000 + b"\r\nContent-Length: 2\r\n\r\nok",), False,
         Outcome.INVALID_RESPONSE, None, "the answer is not HTTP: response head larger than 256 KB"),
        ((b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 20_000 + b"\r\nContent-Length: 2\r\n\r\nok",), False,
         Outcome.OK, 200, "200 after "),
        ((b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 150_000 + b"\r\nContent-Length: 2\r\n\r\nok",), False,
         Outcome.OK, 200, "200 after "),
        ((b"HTTP/1.1 99999 Whatever\r\nContent-Length: 0\r\n\r\n",), False, Outcome.INVALID_RESPONSE, None,
         "the answer is not HTTP"),
    ],
    ids=["closed-before-response", "reset-before-response", "short-body-closed", "short-body-reset",
         "chunked-cut", "bad-chunk-size", "header-300k", "header-20k", "header-150k", "bad-status-code"],
)
async def test_broken_answers(
    make_deps: DepsFactory, parts: tuple[bytes, ...], reset: bool, outcome: Outcome, status: int | None,
    starts: str,
) -> None:
    """Each way a server can break an answer has its outcome, the status when one arrived, and a message
    saying what happened."""
    async with raw_tcp_server(canned_handler(*parts, reset=reset)) as url:
        result = await run_probe(make_check("/"), make_deps(url))
    assert (outcome, status) == (result.outcome, result.status_code), result.message
    assert result.message.startswith("GET /: " + starts), result.message


async def test_failure_is_a_result_not_an_exception(make_deps: DepsFactory) -> None:
    """fetch returns Failed (never raises) for a refused connection, and it says refused, not timeout."""
    deps = make_deps(f"http://127.0.0.1:{free_port()}")
    got = await fetch(deps, "t", RequestSpec(path="/"), deadline=deadline_in(2.0))
    assert isinstance(got, Failed)
    assert (Outcome.CONNECTION_ERROR, None) == (got.outcome, got.status)


async def test_connect_that_never_completes_is_timeout(make_deps: DepsFactory) -> None:
    """A TCP connect the server never completes is timeout (aiohttp's ConnectionTimeoutError, or our own
    deadline), never connection_error."""
    with unaccepted_port() as url:
        result = await run_probe(make_check("/", **{**TIMING, "timeout": 0.3}), make_deps(url))
    assert (Outcome.TIMEOUT, None) == (result.outcome, result.status_code)
    took = re.match(r"GET /: timed out after (\d+\.\d\d) s ", result.message)
    assert took is not None, result.message
    assert 0.0 < float(took.group(1)) <= 0.3, result.message


async def test_closing_deps_closes_the_pooled_connections(base_url: str) -> None:
    """Deps.aclose() closes the shared client and its keep-alive connections: collecting them afterwards warns
    about nothing (an unclosed socket transport warns, and pytest turns warnings into errors)."""
    deps = DepsFactory()(base_url)
    got = await fetch(deps, "t", RequestSpec(path="/respond"), deadline=deadline_in(3.0))
    assert isinstance(got, Fetched)
    await deps.aclose()
    del deps, got
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        gc.collect()
    assert [] == [str(w.message) for w in seen]
