"""Secrets: find every configured secret (and its parts) and redact them from any text that leaves the daemon.

One redactor serves logs, results (/status, alerts, `check --format json`) and probe error messages.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from pydantic import BaseModel, SecretStr

REDACTED = "**********"
_MIN_LEN = 4  # shorter values would blank out ordinary words; no real secret is this short


class Redactor:
    """Replaces every known secret value in a text with REDACTED (longest first, so no prefix is left)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: tuple[str, ...] = ()
        self.update(secrets)

    def update(self, secrets: Iterable[str]) -> None:
        """Replace the set of secret values (each is also expanded into its parts: see secret_parts)."""
        found: set[str] = set()
        for secret in secrets:
            found.update(secret_parts(secret))
        self._secrets = tuple(sorted((s for s in found if len(s) >= _MIN_LEN), key=len, reverse=True))

    def scrub(self, text: str) -> str:
        """`text` with every secret replaced, and the start of one cut off where the text was cut (see
        scrub_tails)."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return self.scrub_tails(text) if self._secrets else text

    def scrub_tails(self, text: str) -> str:
        """`text` without the start of a secret (4 characters or more) left where it was cut short: at its end or
        before an ellipsis ("..." or "…"), the marks an excerpt or a shortened value ends with."""
        cuts = {len(text), *(m.start() for m in _ELLIPSIS.finditer(text))}
        for cut in sorted(cuts, reverse=True):
            for secret in self._secrets:
                start = _cut_prefix(text, cut, secret)
                if start is not None:
                    text = text[:start] + REDACTED + text[cut:]
                    break
        return text

    __call__ = scrub


_ELLIPSIS = re.compile(r"\.\.\.|…")
_AUTH_SCHEME = re.compile(r"^(?:Bearer|Basic|Token|Bot)\s+(\S+)$", re.IGNORECASE)
_JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")


def _cut_prefix(text: str, cut: int, secret: str) -> int | None:
    """Where, before `cut`, text ends with the first 4 or more characters of `secret` (None: it does not)."""
    head = secret[:_MIN_LEN]
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
