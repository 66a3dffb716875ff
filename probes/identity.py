"""Identities' access tokens: minted (HS256) or signed in (Supabase Auth), cached per identity, renewed early.

One `Session` per identity lives in `deps.resources["identity/<name>"]`, shared by every check that uses the
identity; a lock makes concurrent checks wait for one mint or sign-in instead of each doing their own. A token is
reused while it outlives the run by a margin (a fifth of its lifetime, at least 30 s, at most half of it); a
signed-in token is then refreshed with its refresh token, and a refresh that fails falls back to a fresh sign-in.
Tokens, refresh tokens, passwords and keys go nowhere but the requests: `Session.scrub` removes them from any
text a probe reports.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import structlog

from monitor.core.config import SIGN_IN_STEP, Identity, Mint, SignIn, Target
from monitor.core.results import Outcome, ProbeResult
from monitor.core.retry_after import retry_after_seconds
from monitor.core.secrets import Redactor
from monitor.core.status import is_server_error
from probes import _json
from probes._body import content_encoding, read_body
from probes._http import body_excerpt, classify_failure
from probes.deps import Deps

log = structlog.get_logger("pam_monitor.probe.identity")

_BODY_CAP = 64 * 1024
_DEFAULT_LIFETIME = 3600.0
# A minted token's iat is this much in the past: a backend whose clock runs a little behind ours would otherwise
# refuse it as "not yet valid" (PyJWT checks iat with no leeway by default).
CLOCK_SKEW_S = 10


@dataclass(frozen=True, slots=True)
class Credential:
    """A usable access token: its user's id, its claims (what PostgREST would put in request.jwt.claims) and
    when it stops being usable (deps.clock.monotonic() time)."""

    token: str
    sub: str
    claims: Mapping[str, Any]
    expires_at: float
    lifetime: float

    def headers(self) -> dict[str, str]:
        """The Authorization header that carries it."""
        return {"Authorization": f"Bearer {self.token}"}

    def apply(self, headers: Mapping[str, str]) -> dict[str, str]:
        """`headers` with the token as their only Authorization header (whatever its case there)."""
        return {**{k: v for k, v in headers.items() if k.lower() != "authorization"}, **self.headers()}


@dataclass(frozen=True, slots=True)
class SignInFailed:
    """No token: the outcome, a sentence naming the identity and what the auth server said, the status seen."""

    outcome: Outcome
    message: str
    status: int | None = None
    retry_after: float | None = None

    def result(self, identity: str, **details: Any) -> ProbeResult:
        """The check's result: failed at step `sign_in` (the target itself was never asked)."""
        return ProbeResult(
            self.outcome,
            f"step {SIGN_IN_STEP}: {self.message}",
            details={"step": SIGN_IN_STEP, "identity": identity, "sign_in_status": self.status, **details},
            retry_after=self.retry_after,
        )


def renew_margin(lifetime: float) -> float:
    """How long before expiry a token is renewed: a fifth of its lifetime, at least 30 s, at most half of it."""
    return min(max(0.2 * lifetime, 30.0), 0.5 * lifetime)


@dataclass
class Session:
    """One identity's current token, shared by every check using the identity (safe under concurrency)."""

    name: str
    identity: Identity
    deps: Deps
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    current: Credential | None = None
    refresh_token: str | None = None
    attempts: int = 0  # mints or sign-ins started
    finished: int = 0  # ... and finished
    last_failure: tuple[int, SignInFailed] | None = None
    _redactor: Redactor = field(default_factory=Redactor)

    def __post_init__(self) -> None:
        self._remember_secrets()

    async def credential(self, deadline: float) -> Credential | SignInFailed:
        """A token that outlives a run ending at `deadline` (event-loop time), minting or signing in if needed."""
        loop = asyncio.get_running_loop()
        arrived = self.finished
        try:
            async with asyncio.timeout_at(deadline):
                await self.lock.acquire()
        except TimeoutError:
            return SignInFailed(Outcome.TIMEOUT, f"timed out waiting for another check's sign-in as {self.label}")
        try:
            needed = max(deadline - loop.time(), 0.0)
            fresh = self.current
            if fresh is not None and fresh.expires_at - self.deps.clock.monotonic() > (
                renew_margin(fresh.lifetime) + needed
            ):
                return fresh
            if self.last_failure is not None and self.last_failure[0] > arrived:
                # It failed while this check waited for the lock: the answer would be the same, so do not ask
                # the auth server again right away (a wrong password must not turn into a burst of sign-ins).
                return self.last_failure[1]
            self.attempts += 1
            try:
                got = await self._obtain(deadline)
            finally:
                self.finished += 1
            if isinstance(got, SignInFailed):
                self.last_failure = (self.finished, got)
                self.current = None
            else:
                self.last_failure = None
                self.current = got
            self._remember_secrets()
            return got
        finally:
            self.lock.release()

    def invalidate(self, credential: Credential) -> None:
        """Forget a token the target refused (401), so the next run gets a new one."""
        if self.current is credential:
            self.current = None

    @property
    def label(self) -> str:
        """The identity's user as results name it (sub or email; never a secret)."""
        return self.identity.label

    def scrub(self, text: str) -> str:
        """`text` without the identity's secrets and tokens."""
        return self._redactor(text)

    def _remember_secrets(self) -> None:
        values: list[str] = []
        if self.identity.mint is not None:
            values.append(self.identity.mint.secret.get_secret_value())
        if self.identity.sign_in is not None:
            values += [self.identity.sign_in.password.get_secret_value(),
                       self.identity.sign_in.api_key.get_secret_value()]
        if self.current is not None:
            values.append(self.current.token)
        if self.refresh_token:
            values.append(self.refresh_token)
        self._redactor.update(values)

    async def _obtain(self, deadline: float) -> Credential | SignInFailed:
        if self.identity.mint is not None:
            return self._mint(self.identity.mint)
        assert self.identity.sign_in is not None
        spec = self.identity.sign_in
        if self.refresh_token is not None:
            refreshed = await self._token_request(spec, "refresh_token", {"refresh_token": self.refresh_token},
                                                  deadline)
            if isinstance(refreshed, Credential):
                log.info("identity.refreshed", identity=self.name, lifetime_s=round(refreshed.lifetime, 1))
                return refreshed
            log.info("identity.refresh_failed", identity=self.name, outcome=refreshed.outcome.value,
                     status=refreshed.status)
            self.refresh_token = None
        signed = await self._token_request(
            spec, "password", {"email": spec.email, "password": spec.password.get_secret_value()}, deadline
        )
        if isinstance(signed, Credential):
            log.info("identity.signed_in", identity=self.name, lifetime_s=round(signed.lifetime, 1))
        else:
            log.warning("identity.sign_in_failed", identity=self.name, outcome=signed.outcome.value,
                        status=signed.status)
        return signed

    def _mint(self, spec: Mint) -> Credential:
        from probes._jwt import encode_hs256  # PyJWT is loaded by the first signed-in run, not by `import probes`

        now = self.deps.clock.time()
        claims: dict[str, Any] = {"role": "authenticated", "aud": "authenticated", **spec.claims,
                                  "sub": spec.sub, "iat": int(now) - CLOCK_SKEW_S, "exp": int(now + spec.ttl)}
        token = encode_hs256(claims, spec.secret.get_secret_value())
        log.debug("identity.minted", identity=self.name, ttl_s=spec.ttl)
        return Credential(token, spec.sub, claims, self.deps.clock.monotonic() + spec.ttl, spec.ttl)

    async def _token_request(
        self, spec: SignIn, grant: str, payload: dict[str, str], deadline: float
    ) -> Credential | SignInFailed:
        """POST {url}/token?grant_type=<grant>; the answer as a Credential, or why not."""
        target = Target(base_url=spec.url)
        client = self.deps.client_for(target)
        key = spec.api_key.get_secret_value()
        what = f"sign-in as {spec.email}" if grant == "password" else f"token refresh for {spec.email}"
        started = self.deps.clock.monotonic()
        status: int | None = None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(deadline):
                request = client.build_request(
                    "POST", f"{spec.url}/token", params={"grant_type": grant}, json=payload,
                    headers={"apikey": key, "Authorization": f"Bearer {key}", "Accept-Encoding": "identity",
                             "X-Client-Info": "pam-monitor"},
                    timeout=httpx.Timeout(max(deadline - loop.time(), 0.001)),
                )
                response = await client.send(request, stream=True)
                try:
                    status = response.status_code
                    body = await _read(response)
                finally:
                    await response.aclose()
        except (TimeoutError, httpx.TransportError, httpx.DecodingError, OSError) as exc:
            failed = classify_failure(exc, httpx.URL(spec.url).host, status, self.deps.clock.monotonic() - started)
            return SignInFailed(failed.outcome, self.scrub(f"{what} failed: {failed.message}"), status)
        return self._judge(spec, what, status, response.headers, body)

    def _judge(
        self, spec: SignIn, what: str, status: int, headers: httpx.Headers, body: bytes
    ) -> Credential | SignInFailed:
        try:
            document = _json.loads(body) if body else None
        except (ValueError, UnicodeDecodeError):
            document = None
        if status != 200:
            # A refusal (4xx) means the monitor cannot act as its user (a wrong password, a banned user, a wrong
            # API key): identity_failed, never the backend's fault; a 5xx is the auth server failing.
            outcome = (Outcome.RATE_LIMITED if status == 429 else Outcome.SERVER_ERROR if is_server_error(status)
                       else Outcome.IDENTITY_FAILED)
            reason = _auth_error(document) or body_excerpt(body) or "no body"
            retry = retry_after_seconds(headers.get("retry-after"), self.deps.clock.time()) if status == 429 else None
            said = f"{what} failed: {status} {reason}"
            if outcome is Outcome.IDENTITY_FAILED:
                said += " (the auth server refused the identity: the monitor cannot act as the user)"
            return SignInFailed(outcome, self.scrub(said), status, retry)
        token = document.get("access_token") if isinstance(document, dict) else None
        if not isinstance(token, str) or not token:
            return SignInFailed(Outcome.INVALID_RESPONSE,
                                f"{what} failed: 200 without an access_token in the body", status)
        assert isinstance(document, dict)
        refresh = document.get("refresh_token")
        self.refresh_token = refresh if isinstance(refresh, str) and refresh else None
        claims = _unverified_claims(token)
        user = document.get("user")
        sub = user.get("id") if isinstance(user, dict) else None
        sub = str(sub or claims.get("sub") or "")
        if not sub:
            return SignInFailed(Outcome.INVALID_RESPONSE,
                                f"{what} failed: the answer names no user id (user.id or the token's sub)", status)
        lifetime = _lifetime(document, claims, self.deps.clock.time())
        return Credential(token, sub, claims or {"sub": sub, "role": "authenticated"},
                          self.deps.clock.monotonic() + lifetime, lifetime)


async def _read(response: httpx.Response) -> bytes:
    """At most _BODY_CAP bytes of the answer, inflated step by step when it came compressed (never past the cap)."""
    body = await read_body(response.aiter_raw(), content_encoding(response.headers.raw), _BODY_CAP)
    return b"" if body.undecoded else body.data


def _auth_error(document: Any) -> str:
    """Supabase Auth's error as `code (message)`: `error_code`/`error` and `msg`/`error_description`/`message`."""
    if not isinstance(document, dict):
        return ""
    code = next((str(document[k]) for k in ("error_code", "error") if document.get(k)), "")
    text = next((str(document[k]) for k in ("msg", "error_description", "message") if document.get(k)), "")
    if code and text and text != code:
        return f"{code} ({text[:160]})"
    return code or text[:160]


def _unverified_claims(token: str) -> dict[str, Any]:
    """The token's payload without checking its signature (the monitor does not hold the Auth server's key)."""
    import jwt

    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}
    return dict(claims) if isinstance(claims, dict) else {}


def _lifetime(document: Mapping[str, Any], claims: Mapping[str, Any], now: float) -> float:
    """Seconds the token lives: expires_in, else expires_at, else the token's exp, else an hour."""
    for candidate in (document.get("expires_in"),
                      _minus(document.get("expires_at"), now), _minus(claims.get("exp"), now)):
        if isinstance(candidate, int | float) and not isinstance(candidate, bool) and candidate > 0:
            return float(candidate)
    return _DEFAULT_LIFETIME


def _minus(value: Any, now: float) -> float | None:
    return float(value) - now if isinstance(value, int | float) and not isinstance(value, bool) else None


def session_for(deps: Deps, name: str) -> Session | None:
    """The identity's shared session (made on first use), or None when no identity has that name."""
    identity = deps.identities.get(name)
    if identity is None:
        return None
    key = f"identity/{name}"
    session = deps.resources.get(key)
    if not isinstance(session, Session) or session.identity is not identity:
        session = Session(name, identity, deps)
        deps.resources[key] = session
    return session


async def credential_for(deps: Deps, name: str, deadline: float) -> tuple[Session, Credential] | SignInFailed:
    """The identity's session and a token usable until `deadline`, or why there is none."""
    session = session_for(deps, name)
    if session is None:
        return SignInFailed(Outcome.INTERNAL_ERROR, f"identity {name!r} is not defined under identities:")
    got = await session.credential(deadline)
    return got if isinstance(got, SignInFailed) else (session, got)


def token_expiries(deps: Deps) -> dict[str, float]:
    """`identity/<name>` -> the `exp` (Unix seconds) of each identity's current access token, for
    pam_monitor_credential_expiry_timestamp_seconds; an identity that holds no token (yet) has none. pam-monitor
    renews these itself before they expire (a refresh, else a new sign-in or mint)."""
    out: dict[str, float] = {}
    for key, session in list(deps.resources.items()):
        if not key.startswith("identity/") or not isinstance(session, Session) or session.current is None:
            continue
        exp = session.current.claims.get("exp")
        if isinstance(exp, int | float) and not isinstance(exp, bool):
            out[key] = float(exp)
    return out


def new_run_id() -> str:
    """A fresh `{run_id}`: 32 hex characters, unique per run."""
    return uuid.uuid4().hex
