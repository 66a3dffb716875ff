"""MonitorCredentialExpiring and pam_monitor_credential_expiry_timestamp_seconds: a JWT pam-monitor sends in a
static header is read for its `exp`; under alerts.credential_critical it pages critical through the engine, 30 days
out it is silent, a non-JWT has no series; the token itself never reaches labels, annotations, logs, /status or
the metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt
import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from alerts.judge import credentials
from alerts.judge.evaluate import evaluate, quiet
from alerts.judge.rules import rules_for
from alerts.model import CheckMemory, Signal
from monitor.core.config import Config
from monitor.core.errors import ConfigError
from monitor.metrics import Metrics
from probes import RULES_BY_KIND
from tests.support.alerting import make_config, make_engine, result, target_alerts
from tests.support.clock import T0, FakeClock

DAY = 86400.0


def token(days_left: float, *, at: float = T0) -> str:
    """An HS256 JWT (a Supabase-style service key) expiring `days_left` days after `at`."""
    return jwt.encode({"role": "service_role", "iss": "supabase", "exp": int(at + days_left * DAY)},
                      "k" * 32, algorithm="HS256")


def config_with(value: str, state_dir: Path | None = None, **alerts: Any) -> Config:
    """The test config whose `backend` target sends `Authorization: Bearer <value>` and `apikey: <value>`."""
    targets = {"backend": {"base_url": "http://127.0.0.1:1",
                           "headers": {"Authorization": f"Bearer {value}", "apikey": value}},
               "database": {"dsn": "postgresql://app:hunter2@127.0.0.1:1/app"}}
    return make_config(state_dir, alerts=alerts, targets=targets)


def judge(config: Config, check_name: str = "backend_health", outcome: str = "ok", at: float = T0) -> dict[str, Any]:
    """The MonitorCredentialExpiring observations of one run of the check, by key."""
    check = next(c for c in config.checks if c.name == check_name)
    out = evaluate(config, check, result(check_name, outcome, status=200, at=at),
                   CheckMemory(last_good_status=200, last_good_outcome="ok"),
                   rules=rules_for(config, check, RULES_BY_KIND), kind_rules=RULES_BY_KIND[check.kind])
    return {o.key: o for o in out if o.alertname == "MonitorCredentialExpiring"}


def test_jwt_expiry_reads_exp_and_nothing_else() -> None:
    """`Bearer <jwt>` and a bare JWT give its exp; an opaque token, Basic auth, a JWT without exp give None."""
    good = token(2)
    assert T0 + 2 * DAY == credentials.jwt_expiry(f"Bearer {good}") == credentials.jwt_expiry(good)
    assert credentials.jwt_expiry("sk_live_0123456789abcdef") is None
    assert credentials.jwt_expiry("Basic dXNlcjpwYXNz") is None
    assert credentials.jwt_expiry(jwt.encode({"role": "anon"}, "k" * 32, algorithm="HS256")) is None
    assert credentials.jwt_expiry("a.!!!.c") is None


def test_two_days_is_critical_thirty_days_is_good_opaque_says_nothing() -> None:
    """2 days < 3d: the critical band is BAD, labelled with the credential's name (never its value); 30 days: both
    bands GOOD; a non-JWT token: no instance at all, and the ok run is quiet."""
    secret = token(2)
    soon = judge(config_with(secret))
    critical = soon["MonitorCredentialExpiring/backend_health/critical"]
    assert Signal.BAD == critical.signal
    assert Signal.GOOD == soon["MonitorCredentialExpiring/backend_health/warning"].signal
    assert "critical" == critical.labels["severity"]
    assert critical.labels["credential"] in {"backend/Authorization", "backend/apikey"}
    assert "expires in 2.0 days" in critical.annotations["summary"]
    assert secret not in json.dumps([dict(critical.labels), dict(critical.annotations)])
    far = judge(config_with(token(30)))
    assert {Signal.GOOD} == {o.signal for o in far.values()}
    assert 2 == len(far)
    opaque = config_with("sk_live_0123456789abcdef")
    assert {} == judge(opaque)
    assert quiet(opaque, result("backend_health", "ok", status=200))
    assert not quiet(config_with(secret), result("backend_health", "ok", status=200))


def test_the_bands_follow_the_configured_durations() -> None:
    """With credential_warning 40d and credential_critical 10d, 20 days left is a warning."""
    found = judge(config_with(token(20), credential_warning="40d", credential_critical="10d"))
    assert Signal.BAD == found["MonitorCredentialExpiring/backend_health/warning"].signal


def test_bands_must_be_ordered() -> None:
    """credential_critical above credential_warning is refused at load, naming both keys."""
    with pytest.raises((ConfigError, ValueError), match="credential_critical"):
        make_config(alerts={"credential_warning": "2d", "credential_critical": "3d"})


async def test_the_engine_fires_critical_without_leaking_the_token(tmp_path: Path) -> None:
    """Through the engine with an injected clock: two ok runs of a check whose target sends a JWT expiring in
    2 days fire MonitorCredentialExpiring critical; neither /status's alert list nor the engine's logs nor the
    metrics hold the token."""
    secret = token(2)
    config = config_with(secret, tmp_path / "state")
    clock = FakeClock()
    with capture_logs() as logs:
        async with make_engine(config, prometheus_client.CollectorRegistry(), clock=clock) as engine:
            for _ in range(2):
                clock.advance(30)
                engine.observe(result("backend_health", "ok", status=200, at=clock.time()))
            firing = [a for a in target_alerts(engine) if a["state"] == "firing"]
    assert [("MonitorCredentialExpiring", "critical")] == [(a["alertname"], a["labels"]["severity"])
                                                            for a in firing]
    metrics = Metrics(process_metrics=False)
    held = credentials.configured(config)
    metrics.credentials = lambda: held
    scrape = metrics.render().decode()
    series = {s.labels["credential"]: s.value for f in text_string_to_metric_families(scrape)
              if f.name == "pam_monitor_credential_expiry_timestamp_seconds" for s in f.samples}
    assert {"backend/Authorization": T0 + 2 * DAY, "backend/apikey": T0 + 2 * DAY} == series
    for text in (json.dumps(firing, default=str), json.dumps(logs, default=str), scrape):
        assert secret not in text
        assert secret.split(".")[1] not in text


def test_non_jwt_credentials_have_no_series() -> None:
    """An opaque token in headers and sign_in identities with non-JWT keys: no series at all."""
    held = credentials.configured(config_with("sk_live_0123456789abcdef"))
    assert {} == held
