"""CertificateExpiring: warning under alerts.cert_warning, critical under alerts.cert_critical, one band at a time,
resolved by a renewed certificate; silent about runs that saw no certificate; never hiding what else failed."""

from __future__ import annotations

from pathlib import Path

import prometheus_client

from alerts.judge.evaluate import evaluate, quiet
from alerts.judge.rules import rules_for
from alerts.model import CheckMemory, Observation, Signal
from monitor.core.config import Config
from monitor.core.results import HTTP_PHASES, HttpFacts, Result, TlsFacts
from probes import RULES_BY_KIND
from tests.support.alerting import make_config, make_engine, result, target_alerts
from tests.support.clock import T0, FakeClock

DAY = 86400.0
CONFIG = make_config()
GOOD_BEFORE = CheckMemory(last_good_status=200, last_good_outcome="ok")


def https(days_left: float, *, at: float = T0) -> HttpFacts:
    """What the transport saw of an answered https request whose earliest certificate expires `days_left` days
    after `at`."""
    expiry = at + days_left * DAY
    tls = TlsFacts("TLSv1.3", expiry, "CN=api.pam.test,O=PAM Backend", "CN=Test CA", earliest_expiry=expiry,
                   chain_expiry=expiry)
    return HttpFacts(phases=dict.fromkeys(HTTP_PHASES, 0.01), version=1.1, content_length=2, tls=tls)


def run(check: str, days_left: float | None, outcome: str = "ok", *, at: float = T0, status: int = 200,
        **kw: object) -> Result:
    """A run of `check` that saw a certificate expiring in `days_left` days (None: no TLS at all)."""
    http = https(days_left, at=at) if days_left is not None else None
    return result(check, outcome, status=status, at=at, http=http, **kw)  # type: ignore[arg-type]


def judge(r: Result, config: Config = CONFIG) -> list[Observation]:
    """evaluate() as the engine calls it for the result's check."""
    check = next(c for c in config.checks if c.name == r.check)
    return evaluate(config, check, r, GOOD_BEFORE, rules=rules_for(config, check, RULES_BY_KIND),
                    kind_rules=RULES_BY_KIND[check.kind])


def certs(out: list[Observation]) -> dict[str, Signal]:
    """The CertificateExpiring instances a result says something about, by key."""
    return {o.key: o.signal for o in out if o.alertname == "CertificateExpiring"}


def bad(out: list[Observation]) -> dict[str, dict[str, str]]:
    """Every BAD instance's labels, by key."""
    return {o.key: dict(o.labels) for o in out if o.signal is Signal.BAD}


def test_thirty_days_left_is_good_for_both_bands() -> None:
    """A certificate with 30 days left: both bands GOOD (a firing one would resolve), nothing BAD."""
    out = judge(run("backend_health", 30))
    assert {"CertificateExpiring/backend_health/critical": Signal.GOOD,
            "CertificateExpiring/backend_health/warning": Signal.GOOD} == certs(out)
    assert {} == bad(out)


def test_five_days_left_is_a_warning_with_its_labels_and_summary() -> None:
    """5 days < 14: the warning band is BAD with severity warning and the check's identity labels; the summary
    names the certificate, when it expires and the limit it is under; the critical band is GOOD."""
    out = judge(run("settings_get_unauth", 5, status=403))
    assert Signal.GOOD == certs(out)["CertificateExpiring/settings_get_unauth/critical"]
    [warning] = [o for o in out if o.signal is Signal.BAD]
    assert "CertificateExpiring/settings_get_unauth/warning" == warning.key
    assert {"alertname": "CertificateExpiring", "severity": "warning", "check": "settings_get_unauth",
            "kind": "auth_contract", "service": "pam-backend", "target": "backend", "env": "test",
            "team": "core"} == dict(warning.labels)
    assert ("TLS certificate CN=api.pam.test,O=PAM Backend (issuer CN=Test CA) expires in 5.0 days, at "
            "2026-01-06T00:00:00.000Z: under alerts.cert_warning (14d)") == warning.annotations["summary"]
    assert ("2026-01-06T00:00:00.000Z", "TLS 1.3") == (warning.annotations["expires_at"],
                                                      warning.annotations["tls_version"])


def test_two_days_left_is_critical_and_the_warning_band_is_good() -> None:
    """2 days < 3: the critical band is BAD with severity critical; the warning band GOOD (one band at a time)."""
    out = judge(run("backend_health", 2))
    assert {"CertificateExpiring/backend_health/critical": Signal.BAD,
            "CertificateExpiring/backend_health/warning": Signal.GOOD} == certs(out)
    assert "critical" == bad(out)["CertificateExpiring/backend_health/critical"]["severity"]


def test_the_bands_follow_the_configured_durations() -> None:
    """alerts.cert_warning: 30d, cert_critical: 10d: 20 days left is a warning, 8 days critical, 31 nothing."""
    config = make_config(alerts={"cert_warning": "30d", "cert_critical": "10d"})
    assert ["CertificateExpiring/backend_health/warning"] == list(bad(judge(run("backend_health", 20), config)))
    assert ["CertificateExpiring/backend_health/critical"] == list(bad(judge(run("backend_health", 8), config)))
    assert {} == bad(judge(run("backend_health", 31), config))


def test_a_run_without_a_certificate_says_nothing() -> None:
    """No TLS facts (plain HTTP, or a failed handshake: tls_error) neither fires nor resolves the alert; the
    tls_error itself is EndpointDown, as before."""
    assert {} == certs(judge(run("backend_health", None)))
    out = judge(result("backend_health", "tls_error", message="TLS handshake failed: certificate has expired"))
    assert ({}, ["EndpointDown/backend_health"]) == (certs(out), list(bad(out)))


def test_an_expiring_certificate_does_not_hide_another_failure() -> None:
    """An unexpected status on a check whose certificate expires in 2 days raises CheckFailed and
    CertificateExpiring: the certificate does not count as the explanation of the failure."""
    out = judge(run("backend_health", 2, "unexpected_status", status=404))
    assert {"CertificateExpiring/backend_health/critical", "CheckFailed/backend_health"} == set(bad(out))


def test_a_journey_has_one_instance_per_check_not_per_step() -> None:
    """A journey failing at a step: the certificate (of its first request) is judged once for the check."""
    steps = [{"name": "read", "outcome": "ok", "status": 200}, {"name": "write", "outcome": "server_error",
                                                                "status": 500}]
    out = judge(run("settings_journey", 5, "server_error", status=500, details={"step": "write", "steps": steps}))
    assert "CertificateExpiring/settings_journey/warning" in bad(out)
    assert "step" not in bad(out)["CertificateExpiring/settings_journey/warning"]


def test_an_ok_run_with_an_expiring_certificate_is_not_quiet() -> None:
    """The engine skips quiet results on checks without alert state, so an ok run under cert_warning must not be
    quiet; one with 30 days left, or over plain HTTP, is."""
    assert (False, True, True) == (quiet(CONFIG, run("backend_health", 13)), quiet(CONFIG, run("backend_health", 30)),
                                   quiet(CONFIG, run("backend_health", None)))


async def test_the_engine_fires_moves_to_critical_and_resolves_on_renewal(tmp_path: Path) -> None:
    """Through the engine: two runs at 5 days fire the warning; at 2 days the warning resolves and the critical
    fires; a renewed certificate (90 days) resolves it. /status lists what fires with its severity."""
    clock = FakeClock()
    config = make_config(tmp_path / "state")
    async with make_engine(config, prometheus_client.CollectorRegistry(), clock=clock) as engine:

        def feed(days: float) -> list[tuple[str, str]]:
            for _ in range(2):
                clock.advance(30)
                engine.observe(run("backend_health", days, at=clock.time()))
            return sorted((a["alertname"], a["labels"]["severity"]) for a in target_alerts(engine)
                          if a["state"] == "firing")

        assert [("CertificateExpiring", "warning")] == feed(5)
        assert [("CertificateExpiring", "critical")] == feed(2)
        assert [] == feed(90)
