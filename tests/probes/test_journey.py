"""The journey kind against a real signed-in backend on 127.0.0.1: CSRF double submit, a nonce written and read
back, a failure at each step named in the result, cookies per run, the deadline, and no secret in the result."""

from __future__ import annotations

import asyncio
from typing import Any

import jwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from monitor.core.config import Target
from monitor.core.results import Outcome
from probes import REGISTRY
from tests.probes.signed_in import STEPS, Made, example_config, journey, minted
from tests.support.servers import serve_asgi
from tests.support.signed_in import CSRF_COOKIE, JWT_SECRET, MONITOR_SUB, Backend
from tests.support.targets import run_probe

Server = tuple[Backend, str]


async def test_the_design_example_passes_with_csrf_and_a_nonce_read_back(backend: Server, made: Made) -> None:
    """examples/journeys.yaml's journey, as it stands: the CSRF token is captured from JSON and sent back as a
    header beside its cookie, the nonce written is the run's run_id and is read back; ok lists every step."""
    state, url = backend
    config = example_config()
    check = next(c for c in config.checks if c.name == "settings_journey")
    deps = made(url, dict(config.identities))

    result = await run_probe(check, deps)

    assert Outcome.OK == result.outcome, result.message
    run_id = result.details["run_id"]
    assert {"monitor_nonce": run_id} == {"monitor_nonce": state.settings[MONITOR_SUB]["monitor_nonce"]}
    assert [("csrf", 200), ("read", 200), ("write", 200), ("read_back", 200)] == [
        (s["name"], s["status"]) for s in result.details["steps"]]
    assert result.message.startswith("4 steps ok as monitor_user in "), result.message
    assert "csrf 200 (" in result.message
    assert "read_back 200 (" in result.message
    assert ["csrf", "read", "write", "read_back"] == list(result.phases)
    assert ("csrf", "read", "write", "read_back") == REGISTRY["journey"].phases(check)
    assert 200 == result.status_code
    # The write carried the cookie set by the csrf step (double submit), and every request the minted token.
    assert [set(), {CSRF_COOKIE}, {CSRF_COOKIE}, {CSRF_COOKIE}] == [set(c) for c in state.cookies]
    subs = {jwt.decode(t, JWT_SECRET, algorithms=["HS256"], audience="authenticated")["sub"] for t in state.tokens}
    assert {MONITOR_SUB} == subs


async def test_each_run_has_its_own_run_id_and_cookie_jar(backend: Server, made: Made) -> None:
    """A second run writes a new run_id and starts with no cookie: nothing set in run 1 is sent in run 2."""
    state, url = backend
    deps = made(url, {"monitor_user": minted(MONITOR_SUB)})
    first = await run_probe(journey(), deps)
    second = await run_probe(journey(), deps)

    assert (Outcome.OK, Outcome.OK) == (first.outcome, second.outcome), second.message
    assert first.details["run_id"] != second.details["run_id"]
    assert second.details["run_id"] == state.settings[MONITOR_SUB]["monitor_nonce"]
    assert {} == state.cookies[4], "the second run's first request carried a cookie from the first run"


def _without_csrf_header() -> list[dict[str, Any]]:
    return [{k: v for k, v in step.items() if k != "headers"} for step in STEPS]


FAILURES: list[tuple[str, str, list[dict[str, Any]] | None, str, Outcome, int | None, str]] = [
    ("no_csrf_field", "csrf", None, "csrf", Outcome.INVALID_RESPONSE, 200,
     "step csrf: GET /api/auth/csrf-token: cannot capture csrf: the response has no json.csrf_token"),
    ("settings_500", "read", None, "read", Outcome.TABLE_MISSING, 500,
     "step read: GET /api/v1/users/{sub}/settings: expected 200, got 500 after "),
    ("csrf_missing", "write", _without_csrf_header(), "write", Outcome.UNEXPECTED_STATUS, 403,
     'step write: PUT /api/v1/users/{sub}/settings: expected 200, got 403 after '),
    ("write_500", "write", None, "write", Outcome.TABLE_MISSING, 500,
     "step write: PUT /api/v1/users/{sub}/settings: expected 200, got 500 after "),
    ("lost_write", "read_back", None, "read_back", Outcome.INVALID_RESPONSE, 200,
     "step read_back: GET /api/v1/users/{sub}/settings: json field monitor_nonce: expected '"),
]


@pytest.mark.parametrize(("fault", "step", "steps", "name", "outcome", "status", "starts"), FAILURES,
                         ids=[f[0] for f in FAILURES])
async def test_a_failing_step_is_named_with_what_it_saw(
    backend: Server, made: Made, fault: str, step: str, steps: list[dict[str, Any]] | None, name: str,
    outcome: Outcome, status: int | None, starts: str,
) -> None:
    """Each step can fail; the result names it first, carries its outcome and status, lists the statuses of the
    steps that ran (earlier ones passed), and the later steps were not sent."""
    state, url = backend
    if hasattr(state, fault):
        setattr(state, fault, True)
    deps = made(url, {"monitor_user": minted(MONITOR_SUB)})

    result = await run_probe(journey(steps), deps)

    assert (outcome, status, step) == (result.outcome, result.status_code, result.details["step"]), result.message
    assert result.message.startswith(starts), result.message
    order = ["csrf", "read", "write", "read_back"]
    ran = order[: order.index(step) + 1]
    assert ran == [s["name"] for s in result.details["steps"]]
    assert all(200 == s["status"] and "ok" == s["outcome"] for s in result.details["steps"][:-1])
    assert ran == list(result.phases)
    assert len(ran) == len(state.cookies), "a step after the failing one was sent"


async def test_csrf_refusal_quotes_the_body(backend: Server, made: Made) -> None:
    """The seed incident's shape: every PUT refused by the CSRF layer reads 'step write: expected 200, got 403
    after ... s: {"detail":"CSRF token missing"}'."""
    _, url = backend
    deps = made(url, {"monitor_user": minted(MONITOR_SUB)})
    result = await run_probe(journey(_without_csrf_header()), deps)
    assert result.message.endswith(': {"detail":"CSRF token missing"}'), result.message
    assert [200] == result.details["expected"]


async def test_table_named_in_a_500_is_table_missing_with_the_table(backend: Server, made: Made) -> None:
    """A step's 500 naming relation "user_settings" is table_missing, the table in details (for TableMissing)."""
    state, url = backend
    state.settings_500 = True
    deps = made(url, {"monitor_user": minted(MONITOR_SUB)})
    result = await run_probe(journey(), deps)
    assert (Outcome.TABLE_MISSING, "user_settings", ["user_settings"]) == (
        result.outcome, result.details["table"], result.details["tables_missing"])
    assert "table user_settings does not exist (42P01)" in result.message


async def test_lost_write_names_the_field_and_both_values(backend: Server, made: Made) -> None:
    """PUT answered 200 but the read-back holds another value: invalid_response naming monitor_nonce, the
    run's nonce and what came back."""
    state, url = backend
    deps = made(url, {"monitor_user": minted(MONITOR_SUB)})
    assert Outcome.OK == (await run_probe(journey(), deps)).outcome
    stored = state.settings[MONITOR_SUB]["monitor_nonce"]
    state.lost_write = True
    result = await run_probe(journey(), deps)
    assert Outcome.INVALID_RESPONSE == result.outcome
    assert (f"step read_back: GET /api/v1/users/{{sub}}/settings: json field monitor_nonce: expected "
            f"'{result.details['run_id']}', "
            f"got '{stored}'") == result.message


async def test_captures_from_header_and_cookie_and_other_placeholders(base_url: str, made: Made) -> None:
    """header.<Name> and cookie.<name> captures and params fill later steps' paths, query, headers and JSON."""
    steps = [
        {"name": "login", "path": "/cookie", "capture": {"session": "cookie.session", "ctype": "header.Content-Type"}},
        {"name": "use", "method": "POST", "path": "/echo/{who}/{sub}", "query": {"q": "{ctype}"},
         "headers": {"X-Session": "{session}"}, "json": {"nested": ["{run_id}"]},
         "expect": {"status": [200],
                    "json": {"headers.x-session": "{session}", "headers.cookie": "session={session}"}}},
    ]
    deps = made(base_url, {"monitor_user": minted("u 1")})
    result = await run_probe(journey(steps, params={"who": "a/b"}), deps)
    assert Outcome.OK == result.outcome, result.message


async def test_a_hanging_step_times_out_within_the_deadline(base_url: str, made: Made) -> None:
    """The whole journey shares the check's timeout: a hanging second step is `timeout`, named, by the deadline."""
    steps = [{"name": "first", "path": "/respond"}, {"name": "stuck", "path": "/hang"},
             {"name": "never", "path": "/respond"}]
    deps = made(base_url, {"monitor_user": minted(MONITOR_SUB)})
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await run_probe(journey(steps, timeout=0.5), deps)
    took = loop.time() - started
    assert (Outcome.TIMEOUT, "stuck") == (result.outcome, result.details["step"]), result.message
    assert result.message.startswith("step stuck: GET /hang: timed out after "), result.message
    # At the deadline, not before it; the upper bound is generous (a busy machine delays the loop by seconds): it
    # only proves the run did not wait for the hanging step itself.
    assert 0.45 <= took < 3.0


async def test_slow_step_is_slow_and_named(base_url: str, made: Made) -> None:
    """A step over its max_latency makes the journey `slow` (the rest still runs), naming the step."""
    steps = [{"name": "quick", "path": "/respond"},
             {"name": "sluggish", "path": "/respond", "query": {"delay": "0.2"}, "expect": {"max_latency": "50ms"}},
             {"name": "after", "path": "/respond"}]
    deps = made(base_url, {"monitor_user": minted(MONITOR_SUB)})
    result = await run_probe(journey(steps), deps)
    assert (Outcome.SLOW, "sluggish") == (result.outcome, result.details["step"]), result.message
    assert ["quick", "sluggish", "after"] == [s["name"] for s in result.details["steps"]]
    assert result.message.startswith("step sluggish: GET /respond: 200 after 0.2"), result.message


async def test_no_token_cookie_or_secret_in_a_result_even_when_echoed(backend: Server, made: Made) -> None:
    """A target that echoes the request's Authorization and Cookie in its error body: the result shows neither
    the token, the cookie, nor the JWT secret."""
    state, url = backend
    steps = [{"name": "csrf", "path": "/api/auth/csrf-token", "capture": {"csrf": "cookie.csrf_token"}},
             {"name": "echo", "path": "/api/debug/echo-auth", "headers": {"X-CSRF-Token": "{csrf}"}}]
    deps = made(url, {"monitor_user": minted(MONITOR_SUB)})
    result = await run_probe(journey(steps), deps)
    assert Outcome.SERVER_ERROR == result.outcome, result.message
    assert "Bearer **********" in result.message, result.message
    shown = repr(result)
    token = deps.resources["identity/monitor_user"].current.token  # type: ignore[attr-defined]
    assert token not in shown
    assert JWT_SECRET not in shown
    cookies = [v for c in state.cookies for v in c.values()]
    assert cookies
    assert all(v not in shown for v in cookies)


def _cookie_app() -> Starlette:
    async def set_cookies(request: Request) -> Response:
        response = Response("set")
        response.headers.append("set-cookie", "a=1; Path=/elsewhere; Secure; HttpOnly; Partitioned; Priority=High")
        response.headers.append("set-cookie", "b=2; Path=/")
        response.headers.append("set-cookie", "c=3; Path=/")
        return response

    async def delete_cookies(request: Request) -> Response:
        response = Response("deleted")
        response.headers.append("set-cookie", "b=; Max-Age=0; Path=/")
        response.headers.append("set-cookie", "c=gone; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/")
        return response

    async def show(request: Request) -> Response:
        return JSONResponse({"cookies": dict(request.cookies)})

    return Starlette(routes=[Route("/set", set_cookies), Route("/delete", delete_cookies), Route("/show", show)])


async def test_cookie_jar_keeps_what_a_browser_session_would_and_forgets_deleted_ones(made: Made) -> None:
    """Cookies with attributes the stdlib parser refuses (Partitioned, Priority) are kept; Max-Age=0 and an
    Expires in the past delete one; later steps of the run send exactly the live cookies."""
    steps = [{"name": "set", "path": "/set"}, {"name": "delete", "path": "/delete"},
             {"name": "show", "path": "/show", "expect": {"json": {"cookies": {"a": "1"}}}}]
    with serve_asgi(_cookie_app()) as url:
        deps = made(url, {"monitor_user": minted(MONITOR_SUB)})
        result = await run_probe(journey(steps), deps)
    assert Outcome.OK == result.outcome, result.message


async def test_the_identitys_token_is_the_only_authorization_sent(backend: Server, made: Made) -> None:
    """A target header `authorization` (any case) is replaced by the identity's token, not sent beside it (a
    backend reads the first one)."""
    _, url = backend
    stale = Target.model_validate({"base_url": url, "headers": {"authorization": "Bearer stale-token"}})
    deps = made(url, {"monitor_user": minted(MONITOR_SUB)}, targets={"backend": stale})
    result = await run_probe(journey(), deps)
    assert Outcome.OK == result.outcome, result.message
