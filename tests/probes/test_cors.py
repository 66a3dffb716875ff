"""CORS as the frontend's browser sees it (probes/_cors.py) against Starlette's CORSMiddleware, set right and wrong,
served by a real local server: http, auth_contract (the preflight and a 401) and journey checks with `cors`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

import probes
from monitor.core.config import AuthContractCheck, HttpCheck, JourneyCheck
from monitor.core.results import Outcome
from tests.support.servers import serve_asgi
from tests.support.targets import TIMING, DepsFactory, run_probe

ORIGIN = "https://app.example.com"
RIGHT: dict[str, Any] = {
    "allow_origins": [ORIGIN], "allow_credentials": True,
    "allow_headers": ["Authorization", "X-CSRF-Token", "Content-Type"], "allow_methods": ["GET", "PUT", "OPTIONS"],
}
CORS = {"origin": ORIGIN, "credentials": True, "headers": ["Authorization", "X-CSRF-Token"], "methods": ["PUT"]}


class _Seen:
    """Every request the server got: (method, headers and ":query"), in order."""

    def __init__(self, app: ASGIApp, log: list[tuple[str, dict[str, str]]]) -> None:
        self.app, self.log = app, log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            headers[":query"] = scope["query_string"].decode("latin-1")  # kept beside the headers for the asserts
            self.log.append((scope["method"], headers))
        await self.app(scope, receive, send)


class _GateOutsideCors:
    """An auth gate placed outside CORSMiddleware (a common ordering bug): its 401 carries no CORS headers,
    while the preflight (which it lets through) is answered right."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers", []))
        if scope["type"] == "http" and scope["method"] != "OPTIONS" and b"authorization" not in headers:
            await JSONResponse({"detail": "Not authenticated"}, status_code=401)(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def _settings(request: Request) -> Response:
    if not request.headers.get("authorization", "").startswith("Bearer good"):
        raise HTTPException(401, "Not authenticated")
    return JSONResponse({"theme": "dark"})


async def _open(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def _broken(request: Request) -> Response:
    raise RuntimeError("the handler crashed")


def _app(cors: dict[str, Any], log: list[tuple[str, dict[str, str]]], *, gate: bool = False) -> Starlette:
    routes = [Route("/settings", _settings, methods=["GET", "PUT"]), Route("/open", _open, methods=["GET", "PUT"]),
              Route("/broken", _broken)]
    stack = [Middleware(_Seen, log=log)] + ([Middleware(_GateOutsideCors)] if gate else [])
    return Starlette(routes=routes, middleware=[*stack, Middleware(CORSMiddleware, **cors)])


@contextmanager
def _served(cors: dict[str, Any], *, gate: bool = False) -> Iterator[tuple[str, list[tuple[str, dict[str, str]]]]]:
    log: list[tuple[str, dict[str, str]]] = []
    with serve_asgi(_app(cors, log, gate=gate)) as url:
        yield url, log


def _http(**fields: Any) -> HttpCheck:
    return HttpCheck.model_validate({"name": "c", "kind": "http", "target": "t", "path": "/open", "cors": CORS,
                                     **TIMING, **fields})


def _auth(**fields: Any) -> AuthContractCheck:
    return AuthContractCheck.model_validate({"name": "a", "kind": "auth_contract", "target": "t", "path": "/settings",
                                             "forged": ["garbage"], "expect": {"status": [401]}, "cors": CORS,
                                             **TIMING, **fields})


def _journey(**fields: Any) -> JourneyCheck:
    steps = [{"name": "load", "method": "GET", "path": "/open"}, {"name": "save", "method": "PUT", "path": "/open",
                                                                  "json": {"theme": "dark"}}]
    return JourneyCheck.model_validate({"name": "j", "kind": "journey", "target": "t", "steps": steps,
                                        "cors": {**CORS, "methods": []}, **TIMING, **fields})


async def test_right_cors_is_ok_and_the_preflight_is_a_real_request(make_deps: DepsFactory) -> None:
    """With CORSMiddleware allowing the origin, credentials, the headers and PUT, an http check with `cors` is ok;
    the server got the request with Origin and the browser's preflight (Origin, Access-Control-Request-*; no
    credentials), and the kind counts both for pacing."""
    with _served(RIGHT) as (url, log):
        result = await run_probe(_http(headers={"Authorization": "Bearer good"}, query={"v": "1"}), make_deps(url))
    assert Outcome.OK == result.outcome, result.message
    assert ["GET", "OPTIONS"] == [method for method, _ in log]
    assert result.http is not None
    # The run's first-request facts are the request's (its 11-byte body), not the preflight's ("OK").
    assert len(b'{"ok":true}') == result.http.content_length
    actual, pre = log[0][1], log[1][1]
    assert ORIGIN == pre["origin"]
    assert "v=1" == pre[":query"] == actual[":query"]
    assert "GET" == pre["access-control-request-method"]
    assert "authorization, x-csrf-token" == pre["access-control-request-headers"]
    assert "authorization" not in pre
    assert ORIGIN == actual["origin"]
    assert "Bearer good" == actual["authorization"]
    assert 2 == probes.REGISTRY["http"].requests(_http())
    assert 1 == probes.REGISTRY["http"].requests(_http(cors=None))


@pytest.mark.parametrize(("wrong", "named"), [
    ({"allow_origins": ["https://other.example.com"]}, "'Disallowed CORS origin') has no Access-Control-Allow-Origin"),
    ({"allow_credentials": False}, "no Access-Control-Allow-Credentials: true (held none)"),
    ({"allow_headers": ["Authorization", "Content-Type"]},
     "Access-Control-Allow-Headers does not allow X-CSRF-Token (held 'Accept, Accept-Language, Authorization, "),
    ({"allow_methods": ["GET", "OPTIONS"]}, "Access-Control-Allow-Methods does not allow PUT (held 'GET, OPTIONS')"),
])
async def test_wrong_cors_is_cors_refused(make_deps: DepsFactory, wrong: dict[str, Any], named: str) -> None:
    """Each way CORSMiddleware can be set wrong for the frontend (origin list, allow_credentials, a header or a
    method missing) is cors_refused, and the sentence names the header and what it held."""
    with _served({**RIGHT, **wrong}) as (url, _):
        result = await run_probe(_http(), make_deps(url))
    assert Outcome.CORS_REFUSED == result.outcome
    assert named in result.message, result.message
    assert result.message.startswith(f"GET /open: CORS for origin {ORIGIN}: the preflight (OPTIONS, GET")


async def test_wildcard_origin_is_refused_only_with_credentials(make_deps: DepsFactory) -> None:
    """`Access-Control-Allow-Origin: *` serves a frontend that sends no credentials and refuses one that does."""
    star = {**RIGHT, "allow_origins": ["*"], "allow_credentials": False}
    with _served(star) as (url, _):
        deps = make_deps(url)
        without = await run_probe(_http(cors={**CORS, "credentials": False}), deps)
        with_credentials = await run_probe(_http(), deps)
    assert Outcome.OK == without.outcome, without.message
    assert Outcome.CORS_REFUSED == with_credentials.outcome
    assert "Access-Control-Allow-Origin: * but the frontend sends credentials" in with_credentials.message


async def test_server_error_stays_server_error_with_cors(make_deps: DepsFactory) -> None:
    """A 500 (Starlette's error page, which carries no CORS headers) is the endpoint's failure, not CORS's."""
    with _served(RIGHT) as (url, _):
        result = await run_probe(_http(path="/broken", cors={**CORS, "methods": []}), make_deps(url))
    assert Outcome.SERVER_ERROR == result.outcome


async def test_preflight_without_answer_is_its_transport_outcome(make_deps: DepsFactory) -> None:
    """A preflight that gets no answer (a proxy swallowing OPTIONS) while the request itself is answered is that
    transport outcome (timeout), never ok; a target that refuses connections is connection_error."""
    from tests.support.servers import free_port

    async def swallow_options(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "OPTIONS":
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):  # bounded: the client gives up long before
                    while (await receive())["type"] != "http.disconnect":
                        pass
            return
        await JSONResponse({"ok": True})(scope, receive, send)

    with serve_asgi(swallow_options) as url:
        result = await run_probe(_http(timeout=0.5, interval=5), make_deps(url))
    assert Outcome.TIMEOUT == result.outcome, result.message
    assert "the preflight (OPTIONS, GET)" in result.message
    refused = await run_probe(_http(), make_deps(f"http://127.0.0.1:{free_port()}"))
    assert Outcome.CONNECTION_ERROR == refused.outcome


async def test_auth_contract_refusals_with_right_cors_are_ok(make_deps: DepsFactory) -> None:
    """CORSMiddleware adds its headers to the app's 401 (HTTPException is handled inside it): the preflight and
    every refusal read right, so auth_contract with `cors` is ok, and counts the preflight among its requests."""
    with _served(RIGHT) as (url, log):
        result = await run_probe(_auth(), make_deps(url))
    assert Outcome.OK == result.outcome, result.message
    assert {"no_token": 401, "garbage": 401} == {k: result.details[k] for k in ("no_token", "garbage")}
    assert sorted(["OPTIONS", "GET", "GET"]) == sorted(method for method, _ in log)
    assert all(ORIGIN == headers["origin"] for _, headers in log)
    assert 3 == probes.REGISTRY["auth_contract"].requests(_auth())


async def test_auth_contract_preflight_refused(make_deps: DepsFactory) -> None:
    """A preflight refusing the origin makes auth_contract cors_refused, with the variants' statuses kept."""
    with _served({**RIGHT, "allow_origins": ["https://other.example.com"]}) as (url, _):
        result = await run_probe(_auth(), make_deps(url))
    assert Outcome.CORS_REFUSED == result.outcome
    assert "the preflight (OPTIONS, GET, got 400 'Disallowed CORS origin') has no Access-Control-Allow-Origin" \
        in result.message, result.message
    assert 401 == result.details["no_token"]


async def test_auth_contract_401_without_cors_headers(make_deps: DepsFactory) -> None:
    """An auth gate outside CORSMiddleware answers the preflight right but its 401 has no CORS headers, so the
    frontend cannot read it (and cannot send its user to log in): cors_refused naming the refusal."""
    with _served(RIGHT, gate=True) as (url, _):
        result = await run_probe(_auth(), make_deps(url))
    assert Outcome.CORS_REFUSED == result.outcome
    assert "no token's refusal (401) has no Access-Control-Allow-Origin" in result.message, result.message


async def test_auth_contract_bypass_outranks_cors(make_deps: DepsFactory) -> None:
    """A bypass is reported as such even when the CORS headers are also wrong."""
    with _served({**RIGHT, "allow_origins": ["https://other.example.com"]}) as (url, _):
        result = await run_probe(_auth(path="/open"), make_deps(url))
    assert Outcome.AUTH_BYPASS == result.outcome


async def test_journey_cors_names_the_step(make_deps: DepsFactory) -> None:
    """A journey with `cors` sends a preflight with each step; PUT missing from allow_methods fails step `save`
    (the GET step passes: GET is safelisted) and right CORS passes both."""
    with _served(RIGHT) as (url, log):
        good = await run_probe(_journey(), make_deps(url))
    assert Outcome.OK == good.outcome, good.message
    assert ["GET", "OPTIONS", "PUT", "OPTIONS"] == [method for method, _ in log]
    assert 4 == probes.REGISTRY["journey"].requests(_journey())
    with _served({**RIGHT, "allow_methods": ["GET"]}) as (url, _):
        bad = await run_probe(_journey(), make_deps(url))
    assert Outcome.CORS_REFUSED == bad.outcome
    assert "save" == bad.details["step"]
    assert bad.message.startswith("step save: PUT /open: CORS for origin"), bad.message
    assert "Access-Control-Allow-Methods does not allow PUT (held 'GET')" in bad.message


def test_origin_must_be_an_origin() -> None:
    """A `cors.origin` with a path is refused at load time."""
    with pytest.raises(ValueError, match="origin"):
        _http(cors={"origin": "https://app.example.com/settings"})
