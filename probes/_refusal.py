"""Who refused: a refusal's fingerprint, the bodies of blockers and WAFs, and the layer that answered.

A refusal is only good evidence when it came from the layer a check means to test. An IP blocker, a WAF or a
gateway in front of the backend refuses everything, so "all refused: ok" would be read from a wall the monitor
ran into. Three things tell them apart:

- `Shape`, the fingerprint of a refusal: status, media type without parameters, the sorted top-level JSON key set
  (never the values), and the scheme of `WWW-Authenticate` when present. Non-JSON bodies are shaped by media type.
- `blocked(...)`: a body that says blocked, banned, denied by policy, security violation, or an HTML/text page
  saying "access denied" (a WAF's) is never a good refusal, whatever its shape.
- `Learner`: an endpoint's own refusal shapes, declared (`expect.refusal`) or learned from the check's first
  `AGREEING_RUNS` good runs that agree, kept in `deps.refusals` (the state database in the daemon, memory in
  `pam-monitor check`). A blocked body is never learned.

`foreign_refusal(...)` is the one record every HTTP kind puts in `details["foreign_refusal"]` when an answer is
a refusal from someone else; the alert engine's MonitorBlocked (alerts/judge/blocked.py) reads it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from probes._http import Fetched, parse_json
from probes.deps import Deps

REFUSAL_STATUSES = frozenset({401, 403, 407, 429, 451, 503})
"""Statuses that mean "not you" rather than "not here" or "broken": where a blocker or gateway answers."""

AGREEING_RUNS = 2
"""Good runs with the same refusal shapes before they become the endpoint's learned baseline."""

# Said by IP blockers, WAFs (Cloudflare "Sorry, you have been blocked", AWS WAF "Request blocked", Sucuri,
# ModSecurity, F5 "The requested URL was rejected") and ban middlewares. Word-bounded, case-insensitive.
_BLOCK = re.compile(
    r"\b(?:blocked|banned|blacklisted|blocklisted|denylisted|denied by (?:security |access |the )?policy|"
    r"security violations?|web application firewall|requested url was rejected|request rejected|"
    r"mod_security|attention required|suspicious activity)\b",
    re.IGNORECASE,
)
# "Access denied" is also what an application's own owner check may say in JSON; only a page (HTML or text) saying
# it is taken for a WAF's.
_ACCESS_DENIED = re.compile(r"\baccess denied\b", re.IGNORECASE)
# Words that name the layer a refusal came from (also read by auth_contract's judgement of its variants).
CSRF_WORDS = re.compile(r"csrf|xsrf", re.IGNORECASE)
RATE_WORDS = re.compile(r"rate.?limit|too many requests|throttl", re.IGNORECASE)
OWNER_WORDS = re.compile(
    r"owner|permission|forbidden|not allowed|access denied|insufficient|not authori[sz]ed to|does not belong|"
    r"cannot access|not your",
    re.IGNORECASE,
)
_SCAN = 16 * 1024
_GATEWAY_SCHEMES = frozenset({"basic", "digest", "negotiate", "ntlm"})


@dataclass(frozen=True, slots=True)
class Shape:
    """A refusal's fingerprint: status, media type, top-level JSON keys (None: not a JSON object), auth scheme."""

    status: int
    media: str
    keys: tuple[str, ...] | None
    scheme: str = ""

    @property
    def layout(self) -> tuple[str, tuple[str, ...] | None, str]:
        """The shape without its status: what one layer's refusals share whatever status they carry."""
        return self.media, self.keys, self.scheme

    def describe(self) -> str:
        """'401 application/json keys=[detail]', '403 text/html', '401 text/plain WWW-Authenticate: Basic'."""
        text = f"{self.status} {self.media or 'no content-type'}"
        if self.keys is not None:
            text += f" keys=[{', '.join(self.keys)}]"
        if self.scheme:
            text += f" WWW-Authenticate: {self.scheme}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """The stored form."""
        return {"status": self.status, "media": self.media, "keys": None if self.keys is None else list(self.keys),
                "scheme": self.scheme}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Shape:
        """Read the stored form back."""
        keys = raw.get("keys")
        return cls(int(raw["status"]), str(raw.get("media", "")),
                   None if keys is None else tuple(str(k) for k in keys), str(raw.get("scheme", "")))


def _header(got: Fetched, name: bytes) -> str:
    """The first value of a response header (`name` lower-case), '' when absent; read from the raw headers (building
    httpx.Headers for each look-up would cost more than the judgement)."""
    return next((value.decode("latin-1") for key, value in got.raw_headers if key.lower() == name), "")


def _media(got: Fetched) -> str:
    return _header(got, b"content-type").split(";", 1)[0].strip().lower()


def shape_of(got: Fetched) -> Shape:
    """The fingerprint of an answer."""
    scheme = _header(got, b"www-authenticate").strip().split(" ", 1)[0]
    media = _media(got)
    keys: tuple[str, ...] | None = None
    if _jsonish(media):
        parsed, document, _ = parse_json(got)
        if parsed and isinstance(document, dict):
            keys = tuple(sorted(str(k) for k in document))
    return Shape(got.status, media, keys, scheme.capitalize() if scheme else "")


def _jsonish(media: str) -> bool:
    return media == "application/json" or media.endswith("+json") or media == "text/json"


def blocked(got: Fetched) -> bool:
    """Whether the body is a blocker's or a WAF's: it says blocked / banned / denied by policy / security
    violation, or it is a page (not JSON) saying access denied."""
    text = got.body[:_SCAN].decode("utf-8", errors="replace")
    if _BLOCK.search(text):
        return True
    return not _jsonish(_media(got)) and _ACCESS_DENIED.search(text) is not None


def layer(got: Fetched, *, own_token: bool = False) -> str | None:
    """Which layer the answer suggests refused, as a noun phrase; None when it does not say."""
    text = got.body[:_SCAN].decode("utf-8", errors="replace")
    if blocked(got):
        return "a blocker, WAF or gateway in front of the backend"
    if _header(got, b"www-authenticate").strip().lower().startswith("basic"):
        return "a gateway asking for Basic credentials"
    if CSRF_WORDS.search(text):
        return "the CSRF middleware"
    if got.status == 429 or RATE_WORDS.search(text):
        return "a rate limiter"
    if OWNER_WORDS.search(text):
        return "an owner (authorisation) check" + (", so the token was accepted" if own_token else "")
    return None


def foreign_refusal(got: Fetched, *, is_blocked: bool | None = None) -> dict[str, Any]:
    """What `details["foreign_refusal"]` holds: the shape, whether the body had a block marker, a redacted excerpt."""
    return {"shape": shape_of(got).describe(), "blocked": blocked(got) if is_blocked is None else is_blocked,
            "excerpt": got.excerpt()}


def gateway_challenge(got: Fetched) -> bool:
    """Whether a 401/407 asks for credentials a bearer-token API never asks for (Basic, Digest, Negotiate, NTLM):
    a gateway or proxy in front of the backend refused, not the backend's auth layer."""
    if got.status not in (401, 407):
        return False
    scheme = _header(got, b"www-authenticate" if got.status == 401 else b"proxy-authenticate")
    return scheme.strip().split(" ", 1)[0].lower() in _GATEWAY_SCHEMES


def blocked_refusal(got: Fetched) -> dict[str, Any] | None:
    """`foreign_refusal(got)` when the answer is a refusal status with a block-marker body, else None."""
    if got.status in REFUSAL_STATUSES and blocked(got):
        return foreign_refusal(got, is_blocked=True)
    return None


# ---------------------------------------------------------------------------------------------- baselines


@dataclass(frozen=True, slots=True)
class Expected:
    """An endpoint's own refusal shapes: declared (`expect.refusal`: one layout for every status) or learned (one
    shape per status seen)."""

    shapes: tuple[Shape, ...]
    declared: bool

    def matches(self, got: Shape) -> bool:
        """Whether `got` is this endpoint's own refusal: the shape learned for its status, or (a status not seen
        while learning, or a declared layout) the same media type, keys and scheme."""
        if self.declared:
            # A declared shape names no scheme: a challenge for gateway credentials is never the API's own.
            return got.scheme.lower() not in _GATEWAY_SCHEMES and any(
                s.media == got.media and s.keys == got.keys for s in self.shapes)
        same_status = [s for s in self.shapes if s.status == got.status]
        if same_status:
            return any(s.layout == got.layout for s in same_status)
        return any(s.layout == got.layout for s in self.shapes)

    def describe(self) -> str:
        """'401 application/json keys=[detail]' (declared layouts without a status: 'application/json keys=[...]')."""
        said = [s.describe().split(" ", 1)[1] if self.declared else s.describe() for s in self.shapes]
        return " or ".join(dict.fromkeys(said))


class Learner:
    """One check's refusal baseline: declared, or learned from its first good runs and kept in `deps.refusals`.

    `key` names the check and what it requests (method, path, expected statuses), so a changed check learns anew.
    """

    def __init__(self, deps: Deps, key: str, declared: Expected | None) -> None:
        self._deps = deps
        self.key = key
        self.declared = declared

    def expected(self) -> Expected | None:
        """The shapes refusals must have; None while still learning."""
        if self.declared is not None:
            return self.declared
        raw = self._deps.refusals.get(self.key)
        if raw is None:
            return None
        cached = self._deps.resources.get(f"refusal-parsed/{self.key}")
        if isinstance(cached, tuple) and cached[0] == raw:
            parsed: Expected | None = cached[1]
            return parsed
        try:
            shapes = tuple(Shape.from_dict(item) for item in json.loads(raw))
        except (ValueError, KeyError, TypeError):
            shapes = ()
        parsed = Expected(shapes, declared=False) if shapes else None
        self._deps.resources[f"refusal-parsed/{self.key}"] = (raw, parsed)
        return parsed

    def observe_good(self, shapes: list[Shape]) -> str:
        """A good run's refusal shapes (none blocked); they become the baseline after AGREEING_RUNS agreeing runs.
        Returns how far learning is, for the result sentence ('' once a baseline exists)."""
        if self.expected() is not None:
            return ""
        unique = sorted(set(shapes), key=lambda s: (s.status, s.media, s.keys or (), s.scheme))
        if len({s.status for s in unique}) != len(unique):
            return "refusal shape not learned: one status came in two shapes this run"
        slot = f"refusal-candidate/{self.key}"
        previous = self._deps.resources.get(slot)
        count = previous[1] + 1 if isinstance(previous, tuple) and previous[0] == tuple(unique) else 1
        if count >= AGREEING_RUNS:
            self._deps.refusals.put(self.key, json.dumps([s.to_dict() for s in unique], sort_keys=True))
            self._deps.resources.pop(slot, None)
            return f"refusal shape learned: {Expected(tuple(unique), False).describe()}"
        self._deps.resources[slot] = (tuple(unique), count)
        return f"refusal shape being learned ({count}/{AGREEING_RUNS} agreeing runs)"


def declared(status: list[int], media_type: str, keys: list[str] | None) -> Expected:
    """The declared layout (`expect.refusal`) as an Expected, one shape per allowed status."""
    sorted_keys = None if keys is None else tuple(sorted(keys))
    return Expected(tuple(Shape(code, media_type.lower(), sorted_keys) for code in status), declared=True)

