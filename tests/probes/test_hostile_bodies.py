"""Hostile bodies from a real server on 127.0.0.1: a gzip bomb sent despite `Accept-Encoding: identity` costs the
body cap and no more memory, for every HTTP kind; honest gzip and deflate still read; other encodings are named;
JSON nested 100,000 levels is `invalid_response` with a clear sentence, never RecursionError or internal_error."""

from __future__ import annotations

import gzip
import json
import struct
import tracemalloc
import zlib
from collections.abc import Awaitable, Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from monitor.core.config import AuthContractCheck, PostgrestCheck, VoiceCheck
from monitor.core.results import Outcome, ProbeResult
from probes._body import content_encoding, read_body
from probes._json import MAX_JSON_DEPTH, JsonTooDeep, loads, nesting_depth
from tests.probes.signed_in import Made, journey, minted
from tests.support.servers import serve_asgi
from tests.support.targets import TIMING, DepsFactory, http_check, run_probe

CAP = 256 * 1024
BOMB_INFLATED = 1 << 30  # what the bomb below inflates to: 1 GiB of zeros, from about 1 MB on the wire
PEAK_LIMIT = 4 * CAP
"""Per request: the cap, the copy handed on, and the reader's own buffers. The old decoder took ~64 MB a chunk."""


def _bomb_parts() -> tuple[bytes, bytes, bytes]:
    """A valid gzip stream of 1 GiB of zeros, as (head block, repeated block, tail): made in milliseconds.

    Each MiB is compressed after a full flush, so every block but the first is the same bytes and the stream is
    streamed by repeating it 1,023 times; the tail closes the stream with the right CRC and length."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"\0" * (1 << 20)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(BOMB_INFLATED >> 20):
        crc = zlib.crc32(zeros, crc)
    tail = zlib.compressobj(9, zlib.DEFLATED, -15).flush() + struct.pack("<II", crc, BOMB_INFLATED & 0xFFFFFFFF)
    return first, block, tail


FIRST, BLOCK, TAIL = _bomb_parts()
DEEP = 100_000


async def bomb(request: Request) -> Response:
    """The gzip bomb with ?status= (default 200), JSON content type, Content-Encoding: gzip."""

    async def chunks() -> Any:
        yield FIRST
        for _ in range(1023 // 64):
            # Stop once the client has gone (it stops at its cap), rather than writing into a closed socket.
            if await request.is_disconnected():
                return
            yield BLOCK * 64
        yield BLOCK * (1023 % 64)
        yield TAIL

    return StreamingResponse(chunks(), status_code=int(request.query_params.get("status", "200")),
                             media_type="application/json", headers={"Content-Encoding": "gzip"})


async def deep(request: Request) -> Response:
    """JSON arrays nested ?n= levels deep (default 100,000) with ?status=."""
    n = int(request.query_params.get("n", str(DEEP)))
    return Response("[" * n + "]" * n, status_code=int(request.query_params.get("status", "200")),
                    media_type="application/json")


async def failing_table(request: Request) -> Response:
    """A PostgREST table that answers 500 with the bomb (under /rest/v1) or with deep JSON (under /deep)."""
    if request.url.path.startswith("/deep/"):
        n = DEEP
        return Response("{\"code\":" * n + "1" + "}" * n, status_code=500, media_type="application/json")
    response = await bomb(request)
    response.status_code = 500
    return response


async def encoded(request: Request) -> Response:
    """{"status": "healthy"} compressed as ?as=gzip|deflate|rawdeflate|br (br: bytes we cannot decode)."""
    body = json.dumps({"status": "healthy"}).encode()
    kind = request.query_params["as"]
    if kind == "gzip":
        data, header = gzip.compress(body), "gzip"
    elif kind == "deflate":
        data, header = zlib.compress(body), "deflate"
    elif kind == "rawdeflate":
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        data, header = compressor.compress(body) + compressor.flush(), "deflate"
    else:
        data, header = b"\x1b\x12\x00\xf8\x85\x94\x40\x02" + body, "br"
    return Response(data, media_type="application/json", headers={"Content-Encoding": header})


@pytest.fixture(scope="module")
def hostile_url() -> Iterator[str]:
    app = Starlette(routes=[
        Route("/bomb", bomb, methods=["GET", "POST"]), Route("/deep", deep, methods=["GET", "POST"]),
        Route("/encoded", encoded), Route("/rest/v1/{table}", failing_table),
        Route("/deep/rest/v1/{table}", failing_table),
    ])
    with serve_asgi(app) as url:
        yield url


async def peak_during(run: Awaitable[ProbeResult]) -> tuple[ProbeResult, int]:
    """The result of `run` and the peak of Python memory allocated while it ran (bytes above the start)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        result = await run
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak - before


def _auth(path: str, **fields: Any) -> AuthContractCheck:
    return AuthContractCheck.model_validate({"name": "a", "kind": "auth_contract", "target": "t", "path": path,
                                             "forged": ["garbage"], **TIMING, **fields})


def _voice(path: str) -> VoiceCheck:
    return VoiceCheck.model_validate({"name": "v", "kind": "voice", "target": "t", "path": path, **TIMING,
                                      "expect": {"json": {"status": "healthy"}}})


def _postgrest() -> PostgrestCheck:
    return PostgrestCheck.model_validate({"name": "p", "kind": "postgrest", "target": "t", **TIMING,
                                          "required_tables": ["user_settings"]})


async def test_gzip_bomb_costs_the_cap_for_an_http_check(hostile_url: str, make_deps: DepsFactory) -> None:
    """An http check reading a 1 GiB gzip bomb: invalid_response saying the body passed the cap, and the memory
    the run allocated stays within a few caps (it inflates at most the cap plus one byte)."""
    deps = make_deps(hostile_url, body_limit=CAP)
    result, peak = await peak_during(run_probe(http_check("/bomb", expect={"json": {"status": "healthy"}}), deps))
    assert Outcome.INVALID_RESPONSE == result.outcome, result.message
    assert f"longer than the {CAP}-byte read cap" in result.message
    assert peak < PEAK_LIMIT, f"{peak} bytes allocated for a {CAP}-byte cap"


@pytest.mark.parametrize("kind", ["auth_contract", "voice", "postgrest"])
async def test_gzip_bomb_costs_the_cap_for_every_kind(hostile_url: str, make_deps: DepsFactory, kind: str) -> None:
    """auth_contract (a 401 bomb, with a body expectation), voice health (a JSON expectation) and a postgrest
    table answering 500 read the bomb within the cap: memory within a few caps per request, and a verdict."""
    deps = make_deps(hostile_url, body_limit=CAP, target={"api_key": "anon-key-0123456789"})
    check: Any = {
        "auth_contract": lambda: _auth("/bomb?status=401", expect={"json": {"detail": {"exists": True}}}),
        "voice": lambda: _voice("/bomb"),
        "postgrest": _postgrest,
    }[kind]()
    requests = 2 if kind == "auth_contract" else 1  # no token, and the one forged token, at once
    result, peak = await peak_during(run_probe(check, deps))
    assert peak < requests * PEAK_LIMIT, f"{peak} bytes for a {CAP}-byte cap ({result.outcome}: {result.message})"
    assert Outcome.INTERNAL_ERROR != result.outcome, result.message
    assert Outcome.OK != result.outcome, result.message


async def test_gzip_bomb_costs_the_cap_for_a_journey(hostile_url: str, made: Made) -> None:
    """A journey step answered with the bomb fails that step as invalid_response within a few caps of memory."""
    deps = made(hostile_url, {"monitor_user": minted("7c0f3a8e-0000-4000-8000-000000000001")})
    deps.body_limit = CAP
    check = journey([{"name": "read", "method": "GET", "path": "/bomb", "expect": {"json": {"a": 1}}}])
    result, peak = await peak_during(run_probe(check, deps))
    assert (Outcome.INVALID_RESPONSE, "read") == (result.outcome, result.details.get("step")), result.message
    assert peak < PEAK_LIMIT, f"{peak} bytes allocated for a {CAP}-byte cap"


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "rawdeflate"])
async def test_an_honest_compressed_body_is_still_read(hostile_url: str, make_deps: DepsFactory,
                                                       encoding: str) -> None:
    """A target that compresses despite identity, but honestly, is judged on the inflated body: ok."""
    result = await run_probe(http_check(f"/encoded?as={encoding}", expect={"json": {"status": "healthy"}}),
                             make_deps(hostile_url))
    assert Outcome.OK == result.outcome, result.message


async def test_an_encoding_we_do_not_decode_is_named(hostile_url: str, make_deps: DepsFactory) -> None:
    """A br body is not decoded: a JSON expectation fails as invalid_response naming the encoding."""
    result = await run_probe(http_check("/encoded?as=br", expect={"json": {"status": "healthy"}}),
                             make_deps(hostile_url))
    assert Outcome.INVALID_RESPONSE == result.outcome
    assert "br-encoded although pam-monitor asked for identity" in result.message


async def test_read_body_stops_inflating_at_the_cap() -> None:
    """read_body on the bomb's bytes keeps exactly `cap` bytes, says it was cut, and stops reading early."""
    fed = 0

    async def chunks() -> Any:
        nonlocal fed
        for part in (FIRST, *(BLOCK,) * 1023, TAIL):
            fed += 1
            yield part

    body = await read_body(chunks(), content_encoding([(b"Content-Encoding", b"GZIP")]), CAP)
    assert (CAP, True, "", 1) == (len(body.data), body.truncated, body.undecoded, fed)


async def test_a_multi_member_gzip_body_is_read_whole() -> None:
    """Two gzip members back to back (allowed by RFC 1952) inflate to both parts."""

    async def chunks() -> Any:
        yield gzip.compress(b"hello ") + gzip.compress(b"world")

    assert b"hello world" == (await read_body(chunks(), "gzip", 100)).data


async def test_a_corrupt_gzip_body_is_invalid_response(make_deps: DepsFactory) -> None:
    """Bytes that claim gzip but are not: invalid_response saying the body is corrupt, never an exception."""
    app = Starlette(routes=[Route("/", lambda r: Response(b"not gzip at all", headers={"Content-Encoding": "gzip"}))])
    with serve_asgi(app) as url:
        result = await run_probe(http_check("/"), make_deps(url))
    assert Outcome.INVALID_RESPONSE == result.outcome
    assert "gzip body is corrupt" in result.message


# ---------------------------------------------------------------------------------------------- JSON depth


def test_nesting_depth_ignores_brackets_inside_strings() -> None:
    """Brackets in strings (escaped quotes too) do not count; the depth of real nesting does."""
    assert 3 == nesting_depth(b'[1, "[[[[\\"[[", {"a": [2, "]]]"]}]')
    assert 0 == nesting_depth(b'"[[[["')


def test_loads_accepts_the_limit_and_refuses_one_more() -> None:
    """MAX_JSON_DEPTH levels parse; one more is JsonTooDeep (a ValueError) with a sentence naming the limit."""
    at_limit = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert isinstance(loads(at_limit), list)
    with pytest.raises(JsonTooDeep, match=f"nested more than {MAX_JSON_DEPTH} levels"):
        loads("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1))
    with pytest.raises(JsonTooDeep):
        loads(b'{"a":' * 100_000 + b"1" + b"}" * 100_000)


async def test_json_nested_100k_levels_is_invalid_response(hostile_url: str, make_deps: DepsFactory) -> None:
    """An http check with a JSON expectation on a body nested 100,000 levels: invalid_response, with the limit in
    the sentence (the old result was internal_error from RecursionError on every run)."""
    result = await run_probe(http_check("/deep", expect={"json": {"status": "healthy"}}), make_deps(hostile_url))
    assert Outcome.INVALID_RESPONSE == result.outcome, result.message
    assert f"nested more than {MAX_JSON_DEPTH} levels" in result.message


@pytest.mark.parametrize("kind", ["auth_contract", "voice", "postgrest", "journey"])
async def test_deep_json_is_never_an_internal_error(hostile_url: str, make_deps: DepsFactory, made: Made,
                                                    kind: str) -> None:
    """Every kind that parses JSON gives a verdict on a 100,000-level body, never internal_error."""
    if kind == "journey":
        deps = made(hostile_url, {"monitor_user": minted("7c0f3a8e-0000-4000-8000-000000000001")})
        check: Any = journey([{"name": "read", "method": "GET", "path": "/deep", "expect": {"json": {"a": 1}}}])
    else:
        deps = make_deps(hostile_url if kind != "postgrest" else hostile_url + "/deep",
                         target={"api_key": "anon-key-0123456789"})
        check = {
            "auth_contract": lambda: _auth("/deep?status=401", expect={"json": {"detail": {"exists": True}}}),
            "voice": lambda: _voice("/deep"),
            "postgrest": _postgrest,
        }[kind]()
    result = await run_probe(check, deps)
    assert Outcome.INTERNAL_ERROR != result.outcome, result.message
    assert Outcome.OK != result.outcome, result.message
    if kind != "postgrest":  # a 500 from PostgREST is server_error whatever its body says
        assert Outcome.INVALID_RESPONSE == result.outcome, result.message

