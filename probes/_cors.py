"""CORS as the frontend's browser sees it: the preflight a check with `cors:` sends, and how both answers are judged.

curl-style probes never send `Origin`, so a backend that stops allowing the frontend's origin stays green while
every user gets "Failed to load settings". A check with `cors: {origin, credentials, headers, methods}` sends, per
request it makes, the preflight a browser would (OPTIONS with `Origin`, `Access-Control-Request-Method` and
`Access-Control-Request-Headers`, no credentials) and puts `Origin` on the request itself. The browser's rules:

- the preflight must answer 2xx;
- `Access-Control-Allow-Origin` (preflight and response, whatever the response's status: a 401 the frontend must
  read needs it too) equals the origin, or is `*` only when credentials are not sent;
- with `credentials: true`, `Access-Control-Allow-Credentials` is `true` on both;
- every method (the request's own plus `cors.methods`) is a CORS-safelisted one (GET, HEAD, POST) or listed in
  the preflight's `Access-Control-Allow-Methods` (`*` counts without credentials);
- every header of `cors.headers` is listed in `Access-Control-Allow-Headers` (`*` counts without credentials, never
  for Authorization).

A broken rule is `cors_refused`; its sentence names the header that is missing or wrong and what it held.
"""

from __future__ import annotations

from dataclasses import dataclass

from monitor.core.config import Cors, RequestSpec
from monitor.core.results import Outcome, ProbeResult
from probes._http import Failed, Fetched, fetch, short_repr
from probes.deps import Deps

_SAFELISTED_METHODS = frozenset({"GET", "HEAD", "POST"})


@dataclass(frozen=True, slots=True)
class Preflight:
    """The preflight's answer (or why there was none) and the method it asked about."""

    method: str
    answer: Fetched | Failed


def methods(cors: Cors, method: str) -> list[str]:
    """The methods a preflight must allow: the request's own, then cors.methods (each once)."""
    return list(dict.fromkeys([method.upper(), *(m.upper() for m in cors.methods)]))


def origin_header(cors: Cors | None) -> dict[str, str]:
    """`{"Origin": ...}` for the request itself, or nothing without `cors`."""
    return {"Origin": cors.origin} if cors is not None else {}


async def preflight(deps: Deps, target_name: str, cors: Cors, method: str, path: str, *,
                    query: dict[str, str], deadline: float) -> Preflight:
    """Send the browser's preflight for `method` on `path` (an already filled path, braces escaped) and `query`
    (the request's: a browser preflights the very URL)."""
    spec = RequestSpec.model_construct(method="OPTIONS", path=path, params={}, headers={}, query=query,
                                       json_body=None, body=None)
    headers = {"Accept-Encoding": "identity", "Origin": cors.origin, "Access-Control-Request-Method": method.upper()}
    if cors.headers:
        headers["Access-Control-Request-Headers"] = ", ".join(h.lower() for h in cors.headers)
    answer = await fetch(deps, target_name, spec, deadline=deadline, headers=headers)
    return Preflight(method.upper(), answer)


def escaped(path: str) -> str:
    """A filled path made safe for RequestSpec.filled_path's format_map (its braces are literal)."""
    return path.replace("{", "{{").replace("}", "}}")


def _held(got: Fetched, name: str) -> str | None:
    value = got.headers.get(name)
    return None if value is None else value.strip()


def _origin_problem(cors: Cors, got: Fetched, what: str) -> str | None:
    allowed = _held(got, "access-control-allow-origin")
    if allowed is None:
        return f"{what} has no Access-Control-Allow-Origin (the browser needs {cors.origin})"
    if allowed == "*":
        if cors.credentials:
            return (f"{what} has Access-Control-Allow-Origin: * but the frontend sends credentials, which needs "
                    f"{cors.origin} itself")
        return None
    if allowed.lower() != cors.origin:
        return f"{what} has Access-Control-Allow-Origin: {short_repr(allowed[:120])}, not {cors.origin}"
    if cors.credentials:
        said = _held(got, "access-control-allow-credentials")
        if said != "true":
            held = "none" if said is None else short_repr(said[:40])
            return f"{what} has no Access-Control-Allow-Credentials: true (held {held}); credentials are sent"
    return None


def _listed(value: str | None) -> set[str]:
    return {part.strip().lower() for part in (value or "").split(",") if part.strip()}


def preflight_problem(cors: Cors, sent: Preflight, extra_methods: list[str]) -> str | None:
    """Why a browser would refuse after this preflight answer (None when it would go on): the first header that
    is missing or wrong, else a status other than 2xx."""
    got = sent.answer
    assert isinstance(got, Fetched)
    said = ""
    if not 200 <= got.status < 300:
        body = got.excerpt()
        said = f"got {got.status}" + (f" {short_repr(body[:120])}" if body else "")
    what = f"the preflight (OPTIONS, {sent.method}{', ' + said if said else ''})"
    problem = _origin_problem(cors, got, what)
    if problem is not None:
        return problem
    allowed_methods = _listed(_held(got, "access-control-allow-methods"))
    wildcard = "*" in allowed_methods and not cors.credentials
    for method in [sent.method, *extra_methods]:
        if method in _SAFELISTED_METHODS or method.lower() in allowed_methods or wildcard:
            continue
        held = _held(got, "access-control-allow-methods")
        return f"{what}: Access-Control-Allow-Methods does not allow {method} (held {_shown(held)})"
    allowed_headers = _listed(_held(got, "access-control-allow-headers"))
    for name in cors.headers:
        lower = name.lower()
        if lower in allowed_headers or ("*" in allowed_headers and not cors.credentials and lower != "authorization"):
            continue
        held = _held(got, "access-control-allow-headers")
        return f"{what}: Access-Control-Allow-Headers does not allow {name} (held {_shown(held)})"
    if said:
        return f"the preflight (OPTIONS, {sent.method}) {said}; a browser stops there"
    return None


def _shown(held: str | None) -> str:
    return "none" if held is None else short_repr(held[:120])


def response_problem(cors: Cors, got: Fetched, what: str = "the response") -> str | None:
    """Why a browser would not let the frontend read this response (None when it would)."""
    return _origin_problem(cors, got, f"{what} ({got.status})")


def judge(cors: Cors, sent: Preflight, extra_methods: list[str], answers: dict[str, Fetched]) -> ProbeResult | None:
    """cors_refused naming the first broken rule, the preflight first; a preflight that got no answer or was rate
    limited is that outcome; None when a browser would read every answer."""
    got = sent.answer
    if isinstance(got, Failed):
        return ProbeResult(got.outcome, f"the preflight (OPTIONS, {sent.method}): {got.message}",
                           status_code=got.status, details={"cors": "preflight"})
    if got.rate_limited:
        return ProbeResult(Outcome.RATE_LIMITED, f"the preflight (OPTIONS, {sent.method}) was rate limited "
                           f"({got.status}); this run says nothing about CORS", status_code=got.status,
                           details={"cors": "preflight"}, retry_after=got.retry_after)
    problem = preflight_problem(cors, sent, extra_methods)
    where = "preflight"
    if problem is None:
        for name, answer in answers.items():
            problem = response_problem(cors, answer, name)
            if problem is not None:
                where = name
                break
    if problem is None:
        return None
    return ProbeResult(Outcome.CORS_REFUSED, f"CORS for origin {cors.origin}: {problem}",
                       status_code=got.status if where == "preflight" else answers[where].status,
                       details={"cors": where, "origin": cors.origin})
