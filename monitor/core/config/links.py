"""Links an alert and the status page carry: `external_url` (where the status page is reached), and `runbook_url`
/ `dashboard_url` templates with `{check}`, `{target}` and `{alertname}`, filled (URL-encoded) per alert."""

from __future__ import annotations

import string
from typing import Annotated
from urllib.parse import quote, urlsplit

from pydantic import AfterValidator

PLACEHOLDERS = ("check", "target", "alertname")


def _template(value: str) -> str:
    try:
        names = [name for _, name, spec, conversion in string.Formatter().parse(value) if name is not None]
        specs = [(spec, conversion) for _, name, spec, conversion in string.Formatter().parse(value)
                 if name is not None and (spec or conversion)]
    except ValueError as exc:
        raise ValueError(f"is not a valid template ({exc}); write placeholders as {{check}}, {{target}}, "
                         "{alertname} and a literal brace as {{ or }}") from None
    unknown = sorted({n for n in names if n not in PLACEHOLDERS})
    if unknown:
        shown = ", ".join(repr(n) for n in unknown)
        raise ValueError(f"has unknown placeholder {shown}; use {{check}}, {{target}} or {{alertname}}")
    if specs:
        raise ValueError("has a placeholder with a conversion or format spec; write it plain: {check}, {target} or "
                         "{alertname}")
    _url(value.replace("{", "").replace("}", ""))
    return value


def _url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an absolute http:// or https:// URL")
    return value


LinkTemplate = Annotated[str, AfterValidator(_template)]
"""A URL template with `{check}`, `{target}`, `{alertname}` (validated at load)."""
ExternalUrl = Annotated[str, AfterValidator(_url)]
"""Where people reach this daemon's status page (behind a proxy, an ingress): `https://monitor.example.com/`."""


def fill(template: str, *, check: str, target: str, alertname: str) -> str:
    """A template with its placeholders replaced by the URL-encoded values."""
    return template.format(check=quote(check, safe=""), target=quote(target, safe=""),
                           alertname=quote(alertname, safe=""))


def check_anchor(check: str) -> str:
    """The id of a check's row on the status page (`/#check-<name>`)."""
    return f"check-{check}"
