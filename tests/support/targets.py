"""A stand-in target app whose endpoints misbehave on demand, and raw TCP servers that do not speak HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import socket
import ssl
import struct
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

import probes
from monitor.core.config import Check, HttpCheck, Target
from monitor.core.results import ProbeResult
from monitor.runner import run_deadlines
from probes.deps import Deps

SECRET = "target-test-secret-0123456789abcdef"
"""The JWT secret the /auth endpoint treats as the real one."""

CHUNK = 64 * 1024
_HANG_LIMIT_S = 60.0


async def _wait_for_disconnect(request: Request, limit: float = _HANG_LIMIT_S) -> None:
    """Block until the client goes away (bounded, so a leaked request cannot outlive the test run)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(limit):
            while True:
                message = await request.receive()
                if message["type"] == "http.disconnect":
                    return


async def respond(request: Request) -> Response:
    """Any status, body and content type from the query: ?status=500&body=...&ctype=...&delay=0.2."""
    q = request.query_params
    delay = float(q.get("delay", "0"))
    if delay:
        await asyncio.sleep(delay)
    return Response(q.get("body", ""), status_code=int(q.get("status", "200")),
                    media_type=q.get("ctype", "text/plain"))


async def hang(request: Request) -> Response:
    """Never answer; return only once the client has given up."""
    await _wait_for_disconnect(request)
    return Response(status_code=204)


async def endless(request: Request) -> Response:
    """A 200 whose body streams ?size= bytes (default 1 GiB) of 'x' in 64 KiB chunks."""
    size = int(request.query_params.get("size", str(1 << 30)))

    async def chunks() -> AsyncIterator[bytes]:
        block = b"x" * CHUNK
        for i in range(math.ceil(size / CHUNK)):
            # The server would otherwise keep writing into a closed socket until `size` is spent.
            if i % 8 == 0 and await request.is_disconnected():
                return
            yield block

    return StreamingResponse(chunks(), media_type="application/json")


async def drip(request: Request) -> Response:
    """A 200 that sends its headers, then one byte every ?every= seconds, bounded to 600 bytes."""
    every = float(request.query_params.get("every", "0.1"))

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(600):
            if await request.is_disconnected():
                return
            yield b" "
            await asyncio.sleep(every)

    return StreamingResponse(chunks(), media_type="text/plain")


def _variant(request: Request) -> str:
    """Which token the request presents, judged with PyJWT; an expired token is `expired` whatever its key."""
    header = request.headers.get("authorization")
    if header is None:
        return "none"
    token = header.removeprefix("Bearer ").strip()
    try:
        head = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.DecodeError:
        return "garbage"
    if head.get("alg") == "none":
        return "alg_none"
    exp = claims.get("exp")
    if isinstance(exp, int | float) and exp < time.time():
        return "expired"
    try:
        jwt.decode(token, SECRET, algorithms=["HS256"], audience="authenticated")
    except jwt.InvalidTokenError:
        return "wrong_signature"
    return "valid"


def valid_token(sub: str = "u", ttl_s: float = 600) -> str:
    """A token the /auth endpoint accepts: HS256 with SECRET, audience `authenticated`, not expired."""
    now = int(time.time())
    claims = {"sub": sub, "role": "authenticated", "aud": "authenticated", "iat": now, "exp": now + int(ttl_s)}
    return jwt.encode(claims, SECRET, algorithm="HS256")


async def auth(request: Request) -> Response:
    """A protected endpoint: answers per presented-token variant, statuses from the query.

    Defaults: none 403, garbage/wrong_signature/alg_none/expired 401, valid 200. `?alg_none=404` makes the
    alg-none token get a 404; `?body=...` is the body of every 5xx answer.
    """
    variant = _variant(request)
    defaults = {"none": 403, "valid": 200}
    status = int(request.query_params.get(variant, defaults.get(variant, 401)))
    if status >= 500:
        return Response(request.query_params.get("body", "Internal Server Error"), status_code=status,
                        media_type="application/json")
    detail = {403: "Not authenticated", 401: "Invalid authentication credentials"}.get(status, "whatever")
    return JSONResponse({"detail": detail, "variant": variant}, status_code=status)


def wav_bytes(seconds: float = 0.1, rate: int = 8000) -> bytes:
    """A small valid mono 16-bit PCM WAV of silence."""
    frames = int(seconds * rate)
    data = b"\x00\x00" * frames
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return (b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)) + b"WAVE"
            + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data)


def mp3_bytes(frames: int = 8) -> bytes:
    """An ID3v2.4 tag followed by MPEG-1 Layer III frames (128 kbit/s, 44.1 kHz; payload zeros)."""
    tag = b"ID3\x04\x00\x00" + bytes([0, 0, 0, 10]) + b"\x00" * 10
    header = bytes([0xFF, 0xFB, 0x90, 0x64])  # MPEG-1 L3, 128 kbit/s, 44100 Hz, no padding
    frame = header + b"\x00" * (144 * 128000 // 44100 - 4)
    return tag + frame * frames


def ogg_bytes() -> bytes:
    """One Ogg page (version 0, beginning of stream) with a single 30-byte segment."""
    segment = b"\x01vorbis" + b"\x00" * 23
    return (b"OggS" + bytes([0, 0x02]) + b"\x00" * 8 + struct.pack("<III", 1, 0, 0)
            + bytes([1, len(segment)]) + segment)


AUDIO: dict[str, Callable[[int], bytes]] = {
    "wav": lambda size: wav_bytes(),
    "mp3": lambda size: mp3_bytes(),
    "ogg": lambda size: ogg_bytes() * 40,
    "zeros": lambda size: b"\x00" * size,
    "text": lambda size: (b"this is not audio " * (size // 18 + 1))[:size],
}


async def audio(request: Request) -> Response:
    """Audio (or not) on demand: ?kind=wav|mp3|ogg|zeros|text&ctype=audio/mpeg&size=200&status=200&delay=0."""
    q = request.query_params
    await asyncio.sleep(float(q.get("delay", "0")))
    body = AUDIO[q.get("kind", "wav")](int(q.get("size", "2000")))
    return Response(body, status_code=int(q.get("status", "200")), media_type=q.get("ctype", "audio/wav"))


async def voice_health(request: Request) -> Response:
    """{"status": ?status=healthy} with HTTP ?code=200."""
    q = request.query_params
    return Response(json.dumps({"status": q.get("status", "healthy"), "engine": "edge-tts"}),
                    status_code=int(q.get("code", "200")), media_type="application/json")


async def echo(request: Request) -> Response:
    """What arrived: the request's headers (lower-case names), raw path and raw query string, as JSON."""
    return JSONResponse({
        "headers": {k.decode("latin-1"): v.decode("latin-1") for k, v in request.scope["headers"]},
        "raw_path": request.scope.get("raw_path", b"").decode("latin-1"),
        "query": request.scope["query_string"].decode("latin-1"),
    })


async def redirect(request: Request) -> Response:
    """A 302 to /respond (a client that follows it would report 200)."""
    return Response(status_code=302, headers={"Location": "/respond"})


async def set_cookie(request: Request) -> Response:
    """A 200 that sets a session cookie (a client must not send it back on later probes)."""
    response = Response("cookie set", media_type="text/plain")
    response.set_cookie("session", "abc123", path="/")
    return response


def create_target_app() -> Starlette:
    """The misbehaving target: /respond, /hang, /endless, /drip, /auth, /audio, /voice/health, /echo,
    /redirect, /cookie."""
    every = ["GET", "POST", "PUT", "DELETE", "PATCH"]
    return Starlette(routes=[
        Route("/respond", respond, methods=every),
        Route("/hang", hang, methods=every),
        Route("/endless", endless),
        Route("/drip", drip),
        Route("/auth", auth, methods=every),
        Route("/audio", audio, methods=every),
        Route("/voice/health", voice_health),
        Route("/echo", echo, methods=every),
        Route("/echo/{rest:path}", echo, methods=every),
        Route("/redirect", redirect),
        Route("/cookie", set_cookie),
    ])


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_tcp_server(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    """A TCP server on 127.0.0.1 in the current loop running `handler` per connection; yields its base URL
    (https:// when `tls` is given, the server side of TLS). On exit, connections still open are closed and
    their handlers finished, so none outlives the test's event loop."""
    running: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        running[task] = writer
        try:
            await handler(reader, writer)
        finally:
            running.pop(task, None)
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        server.close()
        for task, writer in list(running.items()):
            writer.transport.abort()
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        await server.wait_closed()


@contextlib.contextmanager
def unaccepted_port() -> Iterator[str]:
    """A listening port whose accept queue is full, so a new TCP connection to it is never completed (the
    kernel drops the SYN): a real connect timeout on 127.0.0.1. Yields its http:// URL."""
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(socket.socket())
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        for _ in range(3):  # listen(0) queues one; the others wait in SYN retries, leaving nothing free
            filler = stack.enter_context(socket.socket())
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
        yield f"http://127.0.0.1:{port}"


def self_signed_tls(directory: Path) -> tuple[Path, ssl.SSLContext]:
    """A fresh self-signed certificate for 127.0.0.1 (made by the openssl CLI): its PEM path, and a server
    context using it."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=pam-monitor test",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return cert, context


async def _read_head(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        await reader.readuntil(b"\r\n\r\n")


def canned_handler(*parts: bytes, reset: bool = False, pause: float = 0.2) -> Handler:
    """A handler that reads the request head, writes `parts` verbatim with `pause` seconds between them (so the
    client has parsed what came before), then closes the connection, or resets it when `reset` is set."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        with contextlib.suppress(ConnectionError):
            for i, part in enumerate(parts):
                if i:
                    await asyncio.sleep(pause)
                writer.write(part)
                await writer.drain()
        if reset:
            # A reset discards what the peer has not read yet, so give it the time to read the last part.
            await asyncio.sleep(pause if parts and parts[-1] else 0)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        else:
            writer.close()

    return handle


OK_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
"""A complete, valid HTTP/1.1 response (for `canned_handler`)."""


async def garbage_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read a little of the request, then answer with bytes that are not HTTP."""
    await reader.read(1024)
    writer.write(b"\x00\x01\x02SSH-2.0-OpenSSH_9.6 not http at all\r\n\r\n")
    await writer.drain()
    writer.close()


async def reset_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read the request, then reset the connection (SO_LINGER 0 turns close into an RST)."""
    await reader.read(1024)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


Protocol = Literal["http", "postgres"]
Breakage = Literal["hang", "garbage", "closed", "reset"]

GARBAGE = b"\x00\x01\x02SSH-2.0-OpenSSH_9.6 not http at all\r\n\r\n"
"""Bytes that are neither HTTP nor the PostgreSQL protocol."""

_PARTIAL: dict[Protocol, bytes] = {
    # Headers promising 1000 bytes, then 3 of them.
    "http": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\nabc",
    # An authentication message ('R') announcing 8 bytes, cut after its length.
    "postgres": b"R\x00\x00\x00\x08",
}
_SSL_REQUEST = 80877103


async def _read_opening(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, protocol: Protocol) -> None:
    """Read what a client sends first: an HTTP request head, or a PostgreSQL startup message (an SSLRequest
    before it is declined with 'N', as a server without TLS does)."""
    if protocol == "http":
        await _read_head(reader)
        return
    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
        for _ in range(2):
            length, code = struct.unpack("!II", await reader.readexactly(8))
            await reader.readexactly(max(length - 8, 0))
            if code != _SSL_REQUEST:
                return
            writer.write(b"N")
            await writer.drain()


def broken_handler(breakage: Breakage, protocol: Protocol) -> Handler:
    """A server that reads the client's opening in `protocol`, then: never answers (`hang`, until the client
    gives up), answers bytes of no protocol (`garbage`), sends part of an answer and closes (`closed`), or
    resets the connection (`reset`)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_opening(reader, writer, protocol)
        if breakage == "hang":
            with contextlib.suppress(TimeoutError, ConnectionError):
                async with asyncio.timeout(_HANG_LIMIT_S):
                    while await reader.read(1024):
                        pass
        elif breakage == "reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return
        else:
            with contextlib.suppress(ConnectionError):
                writer.write(GARBAGE if breakage == "garbage" else _PARTIAL[protocol])
                await writer.drain()
        writer.close()

    return handle


TIMING = {"interval": 10.0, "timeout": 3.0, "failure_threshold": 2, "success_threshold": 2}
"""Check fields every test check needs; override `timeout` per test."""


class DepsFactory:
    """Builds Deps whose target `t` points at a given base URL, and closes them all at the end."""

    def __init__(self) -> None:
        self._made: list[Deps] = []

    def __call__(self, base_url: str, *, body_limit: int = 1 << 20, max_in_flight: int = 16,
                 headers: dict[str, str] | None = None, others: Mapping[str, str] | None = None,
                 target: Mapping[str, object] | None = None, keep_alive: bool = False) -> Deps:
        """Deps for a target named `t` at `base_url` (plus `others`: name -> base URL); `target` adds fields;
        `keep_alive` is http.keep_alive."""
        targets = {"t": Target.model_validate({"base_url": base_url, "headers": headers or {}, **(target or {})})}
        for name, url in (others or {}).items():
            targets[name] = Target.model_validate({"base_url": url})
        deps = Deps(targets=targets, max_in_flight=max_in_flight, body_limit=body_limit,
                    user_agent="pam-monitor-test", keep_alive=keep_alive)
        self._made.append(deps)
        return deps

    async def aclose(self) -> None:
        """Close every Deps built here."""
        for deps in self._made:
            await deps.aclose()


def http_check(path: str = "/respond", **fields: Any) -> HttpCheck:
    """An `http` check on target `t` with the test timing, validated like a config file would be."""
    return HttpCheck.model_validate({"name": "c", "kind": "http", "target": "t", "path": path, **TIMING, **fields})


def deadline_in(seconds: float) -> float:
    """An event-loop deadline `seconds` from now (for calling `fetch` directly)."""
    return asyncio.get_running_loop().time() + seconds


async def run_probe(check: Check, deps: Deps) -> ProbeResult:
    """Run `check` with its kind's prober and the runner's deadline, as one scheduled run would.

    The call is bounded by the runner's hard stop: a probe still running then fails the test with TimeoutError
    instead of being cut quietly, since in the daemon that would be a blind `timeout` from the runner.
    """
    deadline, hard_stop = run_deadlines(check.timeout, asyncio.get_running_loop().time())
    async with asyncio.timeout_at(hard_stop):
        return await probes.REGISTRY[check.kind].probe(check, deps, deadline)
