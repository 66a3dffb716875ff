"""MonitorCredentialExpiring: a credential pam-monitor sends expires within alerts.credential_warning or _critical.

pam-monitor holds credentials it cannot renew itself: a static token in a target's or check's `headers`
(`Authorization: Bearer <jwt>`, a Supabase `apikey`: anon and service keys are JWTs with `exp`) and a sign_in
identity's `api_key`. When such a value is a JWT with a numeric `exp`, that expiry is read from the config (the
signature is not checked: only the date matters) and:

- exported as `pam_monitor_credential_expiry_timestamp_seconds{credential="<name>"}`, with bounded names from
  the config, never values: `<target>/<header>`, `<check>/<header>`, `<check>/<step>/<header>`,
  `identity/<name>/apikey`; an identity's current access token as `identity/<name>` (renewed by pam-monitor
  itself before it expires, so exported but not alerted on);
- judged on every result of a check that sends it, like CertificateExpiring: one instance per band,
  `MonitorCredentialExpiring/<check>/warning` and `.../critical`, labelled `credential` with the earliest one.
  A value that is not a JWT with `exp` (an opaque token, Basic auth) has no series and no alert.

Secrets stay secret: labels and summaries carry the names above and the expiry date, never the value.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from alerts.judge.certs import expiry_phrase
from alerts.labels import ANNOTATION_LIMIT, alert_key, build_annotations, identity_labels
from alerts.model import Observation, Signal
from monitor.core.clock import iso
from monitor.core.config import AlertName, Config
from monitor.core.results import Result

if TYPE_CHECKING:
    from alerts.judge.rules import Facts

NAME: AlertName = "MonitorCredentialExpiring"
BANDS: tuple[str, ...] = ("critical", "warning")
RUNBOOK = ("A credential pam-monitor sends (a static token in `headers`, a Supabase anon or service key) expires "
           "soon: issue a new one, put it where the config reads it (the environment variable or secret file) and "
           "reload pam-monitor (SIGHUP); the alert resolves at the next run with the new value.")
_MAX_TOKEN = 16 * 1024


def jwt_expiry(value: str) -> float | None:
    """The `exp` of a JWT (alone or after `Bearer `), without checking its signature; None for anything else."""
    token = value.strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    parts = token.split(".")
    if len(token) > _MAX_TOKEN or len(parts) != 3 or not all(parts[:2]):
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    if isinstance(exp, int | float) and not isinstance(exp, bool) and exp > 0:
        return float(exp)
    return None


def _read(prefix: str, headers: Mapping[str, SecretStr]) -> Iterator[tuple[str, float]]:
    for header, secret in headers.items():
        exp = jwt_expiry(secret.get_secret_value())
        if exp is not None:
            yield f"{prefix}/{header}", exp


def check_credentials(config: Config, check: Any) -> dict[str, float]:
    """Name -> expiry of every readable credential `check` sends: its target's headers, its own, its steps',
    its identity's api_key."""
    found: dict[str, float] = {}
    target = config.targets.get(getattr(check, "target", ""))
    if target is not None:
        found.update(_read(check.target, target.headers))
    headers = getattr(check, "headers", None)
    if isinstance(headers, Mapping):
        found.update(_read(check.name, headers))
    for step in getattr(check, "steps", ()) or ():
        found.update(_read(f"{check.name}/{step.name}", step.headers))
    identity_name = getattr(check, "identity", None)
    identity = config.identities.get(identity_name) if isinstance(identity_name, str) else None
    if identity is not None and identity.sign_in is not None:
        found.update(_read(f"identity/{identity_name}", {"apikey": identity.sign_in.api_key}))
    return found


def configured(config: Config) -> dict[str, float]:
    """Every readable credential of the config, by name (for the metric family)."""
    found: dict[str, float] = {}
    for name, target in config.targets.items():
        found.update(_read(name, target.headers))
    for check in config.checks:
        found.update(check_credentials(config, check))
    for name, identity in config.identities.items():
        if identity.sign_in is not None:
            found.update(_read(f"identity/{name}", {"apikey": identity.sign_in.api_key}))
    return found


_cache: tuple[Config, dict[str, tuple[str, float]]] | None = None


def _earliest_by_check(config: Config) -> dict[str, tuple[str, float]]:
    """Check name -> (name, expiry) of its earliest-expiring credential, computed once per loaded config."""
    global _cache
    cached = _cache
    if cached is not None and cached[0] is config:
        return cached[1]
    earliest: dict[str, tuple[str, float]] = {}
    for check in config.checks:
        found = check_credentials(config, check)
        if found:
            name = min(found, key=lambda n: found[n])
            earliest[check.name] = (name, found[name])
    _cache = (config, earliest)
    return earliest


def expiring(config: Config, result: Result) -> tuple[str, float, str, float] | None:
    """(band, seconds left, credential name, expiry) when the check's earliest credential expires within
    alerts.credential_warning at the time the run finished."""
    found = _earliest_by_check(config).get(result.check)
    if found is None:
        return None
    name, exp = found
    left = exp - result.finished_at
    if left < config.alerts.credential_critical:
        return "critical", left, name, exp
    if left < config.alerts.credential_warning:
        return "warning", left, name, exp
    return None


def credential_expiring(alertname: str, facts: Facts) -> list[Observation]:
    """BAD for the band the check's earliest credential falls in, GOOD for the other band (or both when it is
    further away); nothing for a check that sends no readable credential."""
    result, check, config = facts.result, facts.check, facts.config
    if result.check not in _earliest_by_check(config):
        return []
    found = expiring(config, result)
    out: list[Observation] = []
    for band in BANDS:
        key = alert_key(alertname, check.name, band)
        if found is None or found[0] != band:
            out.append(Observation(key, alertname, check.name, Signal.GOOD))
            continue
        _, left, name, exp = found
        limit = config.alerts.credential_critical if band == "critical" else config.alerts.credential_warning
        labels = {**identity_labels(config, check, alertname, band, facts.extra_labels), "credential": name}
        notes = build_annotations(result, RUNBOOK)
        notes["summary"] = (f"credential {name} (a JWT pam-monitor sends) {expiry_phrase(left)}, at {iso(exp)}: under "
                            f"alerts.credential_{band} ({limit / 86400:g}d)")[:ANNOTATION_LIMIT]
        notes["expires_at"] = iso(exp)
        out.append(Observation(key, alertname, check.name, Signal.BAD, labels, notes))
    return out

