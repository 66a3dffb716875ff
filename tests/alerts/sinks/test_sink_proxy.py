"""Sinks behind a proxy: with `alerts.trust_env: true` pages leave through HTTP_PROXY (forwarded) or HTTPS_PROXY
(CONNECT), NO_PROXY is honoured, and without it (the default) a proxy in the environment is never used. A real
proxy on 127.0.0.1 (threads and sockets) and real sinks; the webhook's host name resolves only at the proxy."""

from __future__ import annotations

import contextlib
import select
import socket
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import prometheus_client
import pytest

from tests.support.alerting import Recorder, fire_regression, make_config, make_engine, sent
from tests.support.certs import Authority, serve_tls, server_context
from tests.support.poll import until_async
from tests.support.servers import serve_asgi

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR")
ONLY_AT_THE_PROXY = "hooks.invalid"
""".invalid never resolves (RFC 6761): a webhook there is reachable through the proxy only."""


class _ProxyHandler(socketserver.BaseRequestHandler):
    """One client connection: CONNECT host:port is tunnelled; an absolute-form request is forwarded once (with
    Connection: close). Every upstream is 127.0.0.1 at the requested port, whatever the host name."""

    def handle(self) -> None:
        with contextlib.suppress(OSError):  # a peer that hangs up ends its connection, nothing more
            self._serve()

    def _serve(self) -> None:
        server: _Proxy = self.server  # type: ignore[assignment]
        client: socket.socket = self.request
        client.settimeout(10)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(65536)
            if not chunk:
                return
            head += chunk
        head, rest = head.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        with server.lock:
            server.seen.append(f"{method} {target}")
        if method == "CONNECT":
            upstream = socket.create_connection(("127.0.0.1", int(target.rsplit(":", 1)[1])), timeout=10)
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if rest:
                upstream.sendall(rest)
            _pipe(client, upstream)
            return
        url = urlsplit(target)
        headers = [h for h in lines[1:] if h.split(":", 1)[0].strip().lower() not in ("connection", "proxy-connection")]
        length = next((int(h.split(":", 1)[1]) for h in headers if h.lower().startswith("content-length:")), 0)
        while len(rest) < length:
            rest += client.recv(65536)
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        request = "\r\n".join([f"{method} {path} HTTP/1.1", *headers, "Connection: close", "", ""]).encode()
        with socket.create_connection(("127.0.0.1", url.port or 80), timeout=10) as upstream:
            upstream.sendall(request + rest)
            answer = b""
            while chunk := upstream.recv(65536):
                answer += chunk
        client.sendall(answer)


def _pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes (bounded by the sockets' timeouts)."""
    with b:
        while True:
            ready, _, _ = select.select([a, b], [], [], 10)
            if not ready:
                return
            for sock in ready:
                data = sock.recv(65536)
                if not data:
                    return
                (b if sock is a else a).sendall(data)


class _Proxy(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _ProxyHandler)


@contextlib.contextmanager
def _proxy() -> Iterator[tuple[_Proxy, str]]:
    server = _Proxy()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy or CA variable from the machine running the tests (either case)."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def _webhook(url: str, **alerts: Any) -> dict[str, Any]:
    return {"sinks": [{"kind": "webhook", "name": "hook", "url": url, "max_attempts": 50}], **alerts}


async def _fire(tmp_path: Path, alerts: dict[str, Any], registry: prometheus_client.CollectorRegistry,
                done: str) -> None:
    """Fire ContractRegression and wait until the webhook sink counted `done` (sent or retried) once."""
    config = make_config(tmp_path, alerts=alerts)
    async with make_engine(config, registry, backoff_base=0.02, backoff_cap=0.1) as engine:
        fire_regression(engine)
        await until_async(lambda: sent(registry, "hook", done) >= 1.0, what=f"a notification {done}")


async def test_trust_env_sends_pages_through_http_proxy(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """alerts.trust_env: true and HTTP_PROXY set: the page to a webhook only the proxy can reach goes through the
    proxy (absolute-form request) and is accepted. (Before, every page was unreachable.)"""
    rec = Recorder()
    with serve_asgi(rec.app()) as hook, _proxy() as (proxy, proxy_url):
        clean_env.setenv("HTTP_PROXY", proxy_url)
        url = f"http://{ONLY_AT_THE_PROXY}:{urlsplit(hook).port}/hook"
        await _fire(tmp_path, _webhook(url, trust_env=True), prometheus_client.CollectorRegistry(), "sent")
    assert [f"POST {url}"] == proxy.seen
    assert ["ContractRegression"] == [b["alerts"][0]["labels"]["alertname"] for b in rec.bodies("/hook")]


async def test_trust_env_tunnels_https_pages_through_connect(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """alerts.trust_env: true, HTTPS_PROXY set and SSL_CERT_FILE naming the test CA: an https webhook is reached
    through a CONNECT tunnel, TLS end to end (the proxy sees only the CONNECT line), and accepts the page."""
    authority = Authority(tmp_path)
    with serve_tls(server_context(authority.issue(30))) as hook, _proxy() as (proxy, proxy_url):
        clean_env.setenv("HTTPS_PROXY", proxy_url)
        clean_env.setenv("SSL_CERT_FILE", str(authority.ca_file))
        port = urlsplit(hook).port
        await _fire(tmp_path, _webhook(f"https://localhost:{port}/hook", trust_env=True),
                    prometheus_client.CollectorRegistry(), "sent")
    # serve_tls answers as soon as it has read the request head and closes, so an attempt can end in a reset
    # before the answer is read, and be retried: every tunnel the proxy saw was this CONNECT.
    assert {f"CONNECT localhost:{port}"} == set(proxy.seen)


async def test_no_proxy_is_honoured(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With trust_env and HTTP_PROXY, a host listed in NO_PROXY is contacted directly: the proxy sees nothing (and
    the .invalid host cannot be reached, so the page is retried)."""
    rec = Recorder()
    with serve_asgi(rec.app()) as hook, _proxy() as (proxy, proxy_url):
        clean_env.setenv("HTTP_PROXY", proxy_url)
        clean_env.setenv("NO_PROXY", ONLY_AT_THE_PROXY)
        url = f"http://{ONLY_AT_THE_PROXY}:{urlsplit(hook).port}/hook"
        await _fire(tmp_path, _webhook(url, trust_env=True), prometheus_client.CollectorRegistry(), "retried")
    assert [] == proxy.seen


async def test_the_environment_s_proxy_is_ignored_by_default(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without alerts.trust_env (default false) a proxy in the daemon's environment is never used: the proxy sees
    nothing and the page, which only the proxy could deliver, is retried."""
    rec = Recorder()
    with serve_asgi(rec.app()) as hook, _proxy() as (proxy, proxy_url):
        clean_env.setenv("HTTP_PROXY", proxy_url)
        url = f"http://{ONLY_AT_THE_PROXY}:{urlsplit(hook).port}/hook"
        await _fire(tmp_path, _webhook(url), prometheus_client.CollectorRegistry(), "retried")
    assert [] == proxy.seen
    assert [] == rec.requests
