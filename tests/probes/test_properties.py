"""Property tests of the HTTP response classifier (hypothesis): any status, headers and body give one of the http
kind's declared outcomes, never an exception; the same over the wire, from a raw TCP server on 127.0.0.1 that
answers whatever bytes hypothesis makes up."""

from __future__ import annotations

import asyncio
import gzip
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.core.config import HttpExpect
from probes import REGISTRY
from probes._http import Fetched
from probes.http import assess
from tests.support.targets import DepsFactory, http_check, raw_tcp_server, run_probe

OUTCOMES = set(REGISTRY["http"].outcomes)
CAP = 4096
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
WIRE = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=20,
)
BODIES = st.one_of(
    st.binary(max_size=600),
    _JSON.map(lambda doc: json.dumps(doc).encode()),
    st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),
    st.sampled_from([b'{"code":"42P01","message":"relation \\"public.t\\" does not exist"}', b"PGRST205",
                     gzip.compress(b'{"status":"healthy"}'), b"\xff\xfe\x00garbage", b""]),
)
HEADERS = st.lists(st.tuples(
    st.sampled_from([b"content-type", b"content-encoding", b"retry-after", b"x-any", b"content-length"]),
    st.one_of(st.binary(max_size=30), st.sampled_from([b"gzip", b"br", b"application/json", b"120", b"-1"])),
), max_size=5)
EXPECTS = st.builds(
    lambda statuses, fields, regex, latency: HttpExpect.model_validate(
        {"status": statuses, "json": fields, "body_regex": regex, "max_latency": latency}),
    st.lists(st.integers(100, 599), min_size=1, max_size=3),
    st.dictionaries(st.sampled_from(["status", "a.b", "items.0", "x"]),
                    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10),
                              st.sampled_from([{"exists": True}, {"one_of": [1, "a"]}, {"regex": "^o"}])),
                    max_size=2),
    st.one_of(st.none(), st.sampled_from(["ok", "^\\{", "(a|b)+c"])),
    st.one_of(st.none(), st.floats(0.001, 10)),
)


@FAST
@given(expect=EXPECTS, status=st.integers(100, 999), headers=HEADERS, body=BODIES, truncated=st.booleans(),
       undecoded=st.sampled_from(["", "br", "zstd, gzip"]), elapsed=st.floats(0, 30))
def test_assess_any_answer(expect: HttpExpect, status: int, headers: list[tuple[bytes, bytes]], body: bytes,
                           truncated: bool, undecoded: str, elapsed: float) -> None:
    """Whatever came back (as the transport hands it over), assess() returns a declared outcome and a one-line
    sentence, and never raises."""
    got = Fetched(status=status, raw_headers=headers, body=body[:CAP], truncated=truncated, elapsed=elapsed,
                  cap=CAP, undecoded=undecoded)
    result = assess(expect, got)
    assert result.outcome in OUTCOMES
    assert result.message
    assert "\n" not in result.message


def _answer(status: int, headers: list[tuple[bytes, bytes]], body: bytes, chunked: bool) -> bytes:
    head = [f"HTTP/1.1 {status} X".encode()]
    head += [name + b": " + value.replace(b"\r", b"").replace(b"\n", b"") for name, value in headers
             if name not in (b"content-length", b"transfer-encoding")]
    if chunked:
        head.append(b"Transfer-Encoding: chunked")
        payload = (f"{len(body):x}\r\n".encode() + body + b"\r\n" if body else b"") + b"0\r\n\r\n"
    else:
        head.append(f"Content-Length: {len(body)}".encode())
        payload = body
    return b"\r\n".join(head) + b"\r\n\r\n" + payload


@WIRE
@given(status=st.integers(100, 599), headers=HEADERS, body=BODIES, chunked=st.booleans(),
       raw=st.one_of(st.none(), st.binary(max_size=200)), fields=st.booleans())
async def test_probe_any_answer_over_the_wire(make_deps: DepsFactory, status: int,
                                              headers: list[tuple[bytes, bytes]], body: bytes, chunked: bool,
                                              raw: bytes | None, fields: bool) -> None:
    """A raw TCP server answers an HTTP message built from the generated parts (or, sometimes, raw bytes that are
    not HTTP at all): the http probe's outcome is always a declared one and never internal_error."""
    wire = raw if raw is not None else _answer(status, headers, body, chunked)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(wire)
        await writer.drain()

    check_fields: dict[str, Any] = {"expect": {"json": {"status": "healthy"}}} if fields else {}
    async with raw_tcp_server(handle) as url:
        result = await run_probe(http_check("/", **check_fields), make_deps(url, body_limit=CAP))
    assert result.outcome in OUTCOMES - {"internal_error"}, result.message
