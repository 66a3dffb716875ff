"""CertificateExpiring: a check's TLS certificate expires within alerts.cert_warning (warning) or cert_critical.

The rule reads the earliest notAfter of the chain the server presented at the run's first request (also with
verify_tls: false). It has one instance per band, `CertificateExpiring/<check>/warning` and `.../critical`, with
that severity: a certificate that crosses into the critical band resolves its warning and fires the critical one,
and a renewed certificate resolves whichever fired. A run without a handshake (refused, an expired or untrusted
certificate failing verification, which stays `tls_error` and pages as EndpointDown) says nothing about it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alerts.labels import ANNOTATION_LIMIT, alert_key, build_annotations, identity_labels
from alerts.model import Observation, Signal
from monitor.core.clock import iso
from monitor.core.config import AlertName, Config
from monitor.core.results import Result

if TYPE_CHECKING:
    from alerts.judge.rules import Facts

NAME: AlertName = "CertificateExpiring"
BANDS: tuple[str, ...] = ("critical", "warning")
RUNBOOK = ("The TLS certificate the endpoint presents (or one in its chain) expires soon: renew it (certbot renew, "
           "the load balancer's or CDN's certificate, cert-manager's Certificate) and check that the renewal job "
           "runs; the alert resolves at the first run that sees the new certificate.")


def expiring(config: Config, result: Result) -> tuple[str, float, float] | None:
    """(band, seconds left, earliest notAfter) when the run's certificate expires within alerts.cert_warning."""
    tls = result.http.tls if result.http is not None else None
    earliest = tls.earliest_expiry if tls is not None else None
    if earliest is None:
        return None
    left = earliest - result.finished_at
    alerts = config.alerts
    if left < alerts.cert_critical:
        return "critical", left, earliest
    if left < alerts.cert_warning:
        return "warning", left, earliest
    return None


def expiry_phrase(left: float) -> str:
    """'expires in 4.9 days' / 'expired 2.0 hours ago' for `left` seconds until an expiry (negative: past)."""
    days = abs(left) / 86400
    span = f"{days:.1f} days" if days >= 1 else f"{abs(left) / 3600:.1f} hours"
    return f"expired {span} ago" if left < 0 else f"expires in {span}"


def certificate_expiring(alertname: str, facts: Facts) -> list[Observation]:
    """BAD for the band the certificate's earliest expiry falls in, GOOD for the other band (or both when it is
    further away); nothing when the run saw no certificate."""
    result, check, config = facts.result, facts.check, facts.config
    tls = result.http.tls if result.http is not None else None
    if tls is None or tls.earliest_expiry is None:
        return []
    found = expiring(config, result)
    out: list[Observation] = []
    for band in BANDS:
        key = alert_key(alertname, check.name, band)
        if found is None or found[0] != band:
            out.append(Observation(key, alertname, check.name, Signal.GOOD))
            continue
        _, left, earliest = found
        limit = config.alerts.cert_critical if band == "critical" else config.alerts.cert_warning
        labels = identity_labels(config, check, alertname, band, facts.extra_labels)
        notes = build_annotations(result, RUNBOOK)
        who = tls.subject or "the server's certificate"
        notes["summary"] = (f"TLS certificate {who} (issuer {tls.issuer or 'unknown'}) {expiry_phrase(left)}, at "
                            f"{iso(earliest)}: under alerts.cert_{band} ({limit / 86400:g}d)")[:ANNOTATION_LIMIT]
        notes["expires_at"] = iso(earliest)
        notes["tls_version"] = tls.version_label
        out.append(Observation(key, alertname, check.name, Signal.BAD, labels, notes))
    return out
