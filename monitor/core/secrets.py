"""Secrets: find every configured secret (and its parts) and redact them from any text that leaves the daemon.

One redactor serves logs, results (/status, alerts, `check --format json`) and probe error messages, and one walk
(`redact_values`) applies it to nested values, leaving names (check, step, kind, target, alert, label) alone.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from pydantic import BaseModel, SecretStr

REDACTED = "**********"
MIN_FRAGMENT = 8
"""A part of a secret shorter than this (the token of `Bearer <token>`, a URL's password, a JWT's signature, the
start of a secret left by a cut) is hidden only where it stands as that part: as the password of a URL, after
`password=`, or as the value of an Authorization scheme. Bare, inside ordinary words, it is left alone: `http`,
`post` or `create_` are the first characters of many secrets and of many words."""

IDENTIFIER_KEYS = frozenset({
    "check", "checks", "kind", "step", "target", "alertname", "alert", "alerts", "labels", "label", "identity",
    "table", "tables", "sink", "service", "severity", "outcome", "from", "to", "key", "name", "logger", "level",
})
"""Keys whose values are names pam-monitor gave (check, step, kind, target, alert and label names, alert keys):
never redacted by `redact_values`. They come from the configuration's names, never from a secret, and a
redacted name is a page nobody can route (`step=**********`)."""


class Redactor:
    """Replaces every known secret value in a text with REDACTED (longest first, so no prefix is left).

    Which occurrences count (see MIN_FRAGMENT): a configured secret and every part of it of 8 characters or more
    wherever they appear; a configured secret shorter than that where it stands as a whole word; a shorter part
    only in its place (a URL's password, `password=`, `Bearer`); the start of a secret cut off at the end of a
    text or before an ellipsis when it holds 8 characters or more past the secret's public prefix (`https://`,
    `name=`, `Bearer `).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: tuple[str, ...] = ()
        self._whole: re.Pattern[str] | None = None
        self._placed: frozenset[str] = frozenset()
        self._tails: tuple[tuple[str, int], ...] = ()
        self.update(secrets)

    def update(self, secrets: Iterable[str]) -> None:
        """Replace the set of secret values (each is also expanded into its parts: see secret_parts)."""
        anywhere: set[str] = set()
        whole: set[str] = set()
        placed: set[str] = set()
        for secret in secrets:
            full = {v for v in (secret, secret.strip()) if v.strip()}
            for value in full:
                (anywhere if len(value) >= MIN_FRAGMENT else whole).add(value)
            for value in secret_parts(secret) - full:
                if value.strip():
                    (anywhere if len(value) >= MIN_FRAGMENT else placed).add(value)
        self._secrets = tuple(sorted(anywhere, key=len, reverse=True))
        self._whole = (re.compile("(?<![A-Za-z0-9_])(?:" + "|".join(map(re.escape, sorted(whole, key=len,
                       reverse=True))) + ")(?![A-Za-z0-9_])") if whole else None)
        self._placed = frozenset(placed | whole | anywhere)
        self._tails = tuple((s, _public_prefix(s) + MIN_FRAGMENT) for s in self._secrets
                            if len(s) > _public_prefix(s) + MIN_FRAGMENT)

    def scrub(self, text: str) -> str:
        """`text` with every secret replaced, and the start of one cut off where the text was cut (see
        scrub_tails)."""
        if not self._placed:
            return text
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        if self._whole is not None:
            text = self._whole.sub(REDACTED, text)
        text = _PLACES.sub(self._placed_value, text)
        return self.scrub_tails(text)

    def scrub_tails(self, text: str) -> str:
        """`text` without the start of a secret left where it was cut short: at its end or before an ellipsis
        ("..." or "…", the marks an excerpt or a shortened value ends with), when that start holds at least
        MIN_FRAGMENT characters past the secret's public prefix (a scheme, `name=`, an auth scheme)."""
        if not self._tails:
            return text
        cuts = {len(text), *(m.start() for m in _ELLIPSIS.finditer(text))}
        for cut in sorted(cuts, reverse=True):
            for secret, need in self._tails:
                start = _cut_prefix(text, cut, secret, need)
                if start is not None:
                    text = text[:start] + REDACTED + text[cut:]
                    break
        return text

    def _placed_value(self, match: re.Match[str]) -> str:
        for before, value in (("before", "value"), ("before2", "value2"), ("before3", "value3")):
            found = match.group(value)
            if found is not None:
                if found in self._placed or unquote(found) in self._placed:
                    return match.group(before) + REDACTED
                break
        return match.group(0)

    __call__ = scrub


def redact_values(value: Any, redact: Callable[[str], str], keep: frozenset[str] = IDENTIFIER_KEYS) -> Any:
    """`value` with every string in it (at any depth of mappings, lists and tuples) passed through `redact`,
    except the values of mapping keys in `keep` (names: see IDENTIFIER_KEYS). Tuples come back as lists.

    The one walk for logs (monitor.logs) and results (monitor.runner: /status, alerts, `check --format json`).
    """
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: v if k in keep else redact_values(v, redact, keep) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_values(v, redact, keep) for v in value]
    return value


_ELLIPSIS = re.compile(r"\.\.\.|…")
_AUTH_SCHEME = re.compile(r"^(?:Bearer|Basic|Token|Bot)\s+(\S+)$", re.IGNORECASE)
_JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
_PLACES = re.compile(
    r"(?P<before>://[^/\s:@]*:)(?P<value>[^/\s@]+)(?=@)"  # a URL's password
    r"|(?P<before2>\b(?:password|passwd|pwd)(?:\s*[=:]\s*|\s+)[\"']?)(?P<value2>[^\s\"'&;,()]+)"  # password=, password:
    r"|(?P<before3>\b(?:Bearer|Basic|Token|Bot)\s+)(?P<value3>[^\s\"',;]+)",  # an Authorization value
    re.IGNORECASE,
)
_PUBLIC_PREFIX = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*(?:://|%3A%2F%2F)|[A-Za-z0-9_.-]+(?:=|%3D)"
                            r"|(?:Bearer|Basic|Token|Bot)(?:\s+|%20))", re.IGNORECASE)


def _public_prefix(secret: str) -> int:
    """How many leading characters of a secret are no secret: a URL's scheme, a `name=`, an auth scheme."""
    match = _PUBLIC_PREFIX.match(secret)
    return match.end() if match else 0


def _cut_prefix(text: str, cut: int, secret: str, need: int) -> int | None:
    """Where, before `cut`, text ends with the first `need` or more characters of `secret` (None: it does not)."""
    head = secret[:need]
    at = text.find(head, max(0, cut - len(secret) + 1), cut)
    while at != -1:
        if secret.startswith(text[at:cut]):
            return at
        at = text.find(head, at + 1, cut)
    return None


def secret_parts(value: str) -> set[str]:
    """A secret and the forms of it that can appear alone: the token of `Bearer <token>`, the user:password and
    password inside `Basic <base64>`, the payload and signature of a JWT (a target may echo either alone), a URL's
    password; each also percent-encoded."""
    parts = {value}
    stripped = value.strip()
    if stripped:
        parts.add(stripped)
    match = _AUTH_SCHEME.match(stripped)
    token = match.group(1) if match else stripped
    if match:
        parts.add(token)
        if stripped[:5].lower() == "basic":
            parts.update(_basic_parts(token))
    if _JWT.match(token):
        parts.update(token.split(".")[1:])
    parts.update(dsn_passwords(stripped))
    # A secret may be echoed percent-encoded (in a URL a target or a library prints).
    parts.update({quote(p, safe="") for p in parts})
    return {p for p in parts if p}


def _basic_parts(token: str) -> set[str]:
    """`user:password` and `password` from the base64 of HTTP Basic credentials (empty when it is not base64)."""
    try:
        decoded = base64.b64decode(token, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return set()
    _, _, password = decoded.partition(":")
    return {decoded, password}


def dsn_passwords(raw: str) -> set[str]:
    """The password inside a URL (raw and percent-decoded, `?password=` too) or a key=value conninfo string."""
    out: set[str] = set()
    if "://" in raw:
        try:
            parts = urlsplit(raw)
            password = parts.password
            query = parse_qs(parts.query)
        except ValueError:
            password, query = None, {}
        if password:
            out.update({password, unquote(password)})
        out.update(query.get("password", []))
        return {p for p in out if p}
    for match in re.finditer(r"password\s*=\s*(?:'((?:[^'\\]|\\.)*)'|(\S+))", raw):
        quoted, bare = match.group(1), match.group(2)
        out.add(re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare)
    return {p for p in out if p}


def collect_secrets(config: BaseModel) -> set[str]:
    """Every SecretStr value in a loaded config (walked recursively), and the password of any URL in it, for the
    redactor."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, SecretStr):
            found.add(value.get_secret_value())
        elif isinstance(value, str):
            if "://" in value and "@" in value:  # a plain URL field with credentials (an Alertmanager's)
                found.update(dsn_passwords(value))
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(config)
    return {s for s in found if s}
