"""Rules: which results are bad for which alert, and the labels each alert carries."""

from __future__ import annotations

import typing
from collections.abc import Collection
from typing import Any

from alerts.judge.evaluate import evaluate, quiet, remember
from alerts.judge.rules import RULES, rules_for
from alerts.model import CheckMemory, Observation, Signal
from monitor.core.config import AlertName, Config
from monitor.core.results import Outcome, Result
from probes import RULES_BY_KIND
from tests.support.alerting import make_config, result

CONFIG = make_config()
CHECKS = {c.name: c for c in CONFIG.checks}


def judge(config: Config, check: Any, r: Result, memory: CheckMemory | None = None,
          known: Collection[str] = ()) -> list[Observation]:
    """Every observation the check's rules make of a result (the rules its kind raises, as the engine plans them)."""
    return evaluate(config, check, r, memory or CheckMemory(), known,
                    rules=rules_for(config, check, RULES_BY_KIND), kind_rules=RULES_BY_KIND[check.kind])


def bad(r: Result, memory: CheckMemory | None = None) -> dict[str, Observation]:
    """The BAD observations of a result of one of the factory's checks, by key."""
    return {o.key: o for o in judge(CONFIG, CHECKS[r.check], r, memory) if o.signal is Signal.BAD}


def test_rule_map_and_alertname_literal_name_the_same_alerts() -> None:
    """RULES holds one record per AlertName, keyed by its own name, and the probes only name known rules."""
    assert set(typing.get_args(AlertName)) == set(RULES)
    assert list(RULES) == [rule.name for rule in RULES.values()]
    assert set() == {name for names in RULES_BY_KIND.values() for name in names} - set(RULES)


def test_403_to_500_is_contract_regression_with_http_codes() -> None:
    """An auth_contract check that answered 403 and now 500: ContractRegression from=403 to=500 + all labels."""
    memory = remember(CheckMemory(), result("settings_get_unauth", "ok", status=403))
    found = bad(result("settings_get_unauth", "server_error", status=500), memory)
    assert ["ContractRegression/settings_get_unauth"] == list(found)
    labels = dict(found["ContractRegression/settings_get_unauth"].labels)
    assert {
        "alertname": "ContractRegression", "check": "settings_get_unauth", "kind": "auth_contract",
        "severity": "critical", "service": "pam-backend", "target": "backend", "from": "403", "to": "500",
        "env": "test", "team": "core",
    } == labels


def test_regression_annotations_carry_the_sentence_and_runbook() -> None:
    """summary is the result sentence, after the check's method and path; observed values and a runbook hint are
    there."""
    r = result("settings_get_unauth", "server_error", status=500, message="expected 401|403, got 500 after 0.12 s",
               details={"body": "Internal Server Error"})
    memory = remember(CheckMemory(), result("settings_get_unauth", "ok", status=403))
    notes = dict(bad(r, memory)["ContractRegression/settings_get_unauth"].annotations)
    assert "GET /api/v1/users/{user_id}/settings: expected 401|403, got 500 after 0.12 s" == notes["summary"]
    assert ("500", "server_error") == (notes["status_code"], notes["outcome"])
    assert '{"body":"Internal Server Error"}' == notes["observed"]
    assert notes["runbook"].startswith("The endpoint used to answer")


def test_never_good_is_no_regression() -> None:
    """Never seen good: no ContractRegression with an invented `from`; an auth_contract 500 is CheckFailed, an http
    503 is EndpointDown (a readiness endpoint that never came up)."""
    assert ["CheckFailed/settings_get_unauth"] == list(bad(result("settings_get_unauth", "server_error", status=500)))
    assert ["EndpointDown/backend_health"] == list(bad(result("backend_health", "server_error", status=503)))


def test_regression_from_is_the_last_good_status() -> None:
    """`from` is the last good answer, whatever the check expects: 200, then 204, then a 500 is from=204."""
    memory = CheckMemory()
    for status in (200, 204):
        memory = remember(memory, result("backend_health", "ok", status=status))
    found = bad(result("backend_health", "server_error", status=500), memory)
    labels = found["ContractRegression/backend_health"].labels
    assert ("204", "500") == (labels["from"], labels["to"])


def test_500_naming_a_table_is_regression_and_table_missing() -> None:
    """The seed incident: 403 -> 500 whose body names user_settings -> ContractRegression and TableMissing."""
    memory = remember(CheckMemory(), result("settings_get_unauth", "ok", status=403))
    r = result("settings_get_unauth", "table_missing", status=500, details={"tables_missing": ["user_settings"]})
    found = bad(r, memory)
    assert {"ContractRegression/settings_get_unauth", "TableMissing/settings_get_unauth/user_settings"} == set(found)
    assert "user_settings" == found["TableMissing/settings_get_unauth/user_settings"].labels["table"]


def test_auth_bypass() -> None:
    """auth_contract answering 2xx: AuthBypass (critical), and no regression."""
    found = bad(result("settings_get_unauth", "auth_bypass", status=200))
    assert ["AuthBypass/settings_get_unauth"] == list(found)
    assert "critical" == found["AuthBypass/settings_get_unauth"].labels["severity"]


def test_db_missing_tables_one_alert_each() -> None:
    """A db result with two False tables gives one TableMissing per table; the present one is GOOD."""
    r = result("db_roundtrip", "table_missing", tables={"user_settings": False, "wishlists": False})
    assert {"TableMissing/db_roundtrip/user_settings", "TableMissing/db_roundtrip/wishlists"} == set(bad(r))
    r = result("db_roundtrip", "table_missing", tables={"user_settings": True, "wishlists": False})
    out = judge(CONFIG, CHECKS["db_roundtrip"], r)
    assert Signal.GOOD == {o.key: o.signal for o in out}["TableMissing/db_roundtrip/user_settings"]


def test_known_table_alert_is_good_on_passing_run() -> None:
    """A table alert raised from a 5xx body is GOOD once the check passes again, though `tables` is empty."""
    key = "TableMissing/settings_get_unauth/user_settings"
    out = judge(CONFIG, CHECKS["settings_get_unauth"], result("settings_get_unauth", "ok", status=403), known=[key])
    assert Signal.GOOD == {o.key: o.signal for o in out}[key]


def test_schema_drift_and_database_down() -> None:
    """column_missing/rls_disabled -> SchemaDrift (warning); connection/auth failures -> DatabaseDown."""
    for outcome in ("column_missing", "rls_disabled"):
        found = bad(result("db_roundtrip", outcome))
        severity = found["SchemaDrift/db_roundtrip"].labels["severity"]
        assert (["SchemaDrift/db_roundtrip"], "warning") == (list(found), severity)
    for outcome in ("connection_error", "timeout", "dns_error", "db_error"):
        assert ["DatabaseDown/db_roundtrip"] == list(bad(result("db_roundtrip", outcome)))


def test_endpoint_down() -> None:
    """Unreachable on any HTTP kind, and 5xx on an http check, are EndpointDown."""
    memory = remember(CheckMemory(), result("backend_health", "ok", status=200))
    assert {"EndpointDown/backend_health", "ContractRegression/backend_health"} == set(
        bad(result("backend_health", "server_error", status=503), memory))
    assert ["EndpointDown/settings_get_unauth"] == list(bad(result("settings_get_unauth", "connection_error")))
    assert ["EndpointDown/rest_tables"] == list(bad(result("rest_tables", "timeout")))


def test_voice_degraded_on_any_non_ok() -> None:
    """Voice: slow and invalid_response are VoiceDegraded (warning); ok is GOOD."""
    assert ["VoiceDegraded/voice_health"] == list(bad(result("voice_health", "slow", status=200)))
    assert ["VoiceDegraded/voice_health"] == list(bad(result("voice_health", "invalid_response", status=200)))
    assert {} == bad(result("voice_health", "ok", status=200))


def test_rules_can_be_disabled_and_given_another_severity() -> None:
    """alerts.rules turns a rule off or changes its severity; check.disable_alerts turns it off per check."""
    config = make_config(alerts={"rules": {"EndpointDown": {"enabled": False},
                                           "VoiceDegraded": {"severity": "critical"}}})
    checks = {c.name: c for c in config.checks}
    out = judge(config, checks["backend_health"], result("backend_health", "timeout"))
    # Nothing fires, and the failure the disabled rule covers does not turn into a CheckFailed.
    assert [("CheckFailed", Signal.GOOD)] == [(o.alertname, o.signal) for o in out]
    out = judge(config, checks["voice_health"], result("voice_health", "slow", status=200))
    assert "critical" == {o.alertname: o for o in out}["VoiceDegraded"].labels["severity"]
    config = make_config(checks=[{"name": "settings_get_unauth", "kind": "auth_contract", "target": "backend",
                                  "path": "/x", "disable_alerts": ["AuthBypass"]}])
    out = judge(config, config.checks[0], result("settings_get_unauth", "auth_bypass", status=200))
    assert [] == [o for o in out if o.signal is Signal.BAD]


def test_unreachable_says_nothing_about_regression() -> None:
    """A timeout neither fires nor heals a ContractRegression (the server did not answer)."""
    out = judge(CONFIG, CHECKS["settings_get_unauth"], result("settings_get_unauth", "timeout"))
    assert "ContractRegression/settings_get_unauth" not in {o.key for o in out}
    assert Outcome.TIMEOUT.unreachable


def test_quiet_results_are_those_that_can_raise_nothing() -> None:
    """The engine skips evaluating a quiet result on a check without alert state: every quiet result of every
    factory check turns nothing BAD; an ok that still lists a missing table, and any failure, are not quiet."""
    for name in CHECKS:
        r = result(name, "ok", status=200, tables={"user_settings": True})
        assert (True, {}) == (quiet(CONFIG, r), bad(r)), name
    assert False is quiet(CONFIG, result("db_roundtrip", "ok", tables={"user_settings": False}))
    assert False is quiet(CONFIG, result("db_roundtrip", "ok", details={"tables_missing": ["wishlists"]}))
    assert {"TableMissing/db_roundtrip/wishlists"} == set(bad(result("db_roundtrip", "ok",
                                                                     details={"tables_missing": ["wishlists"]})))
    assert [] == [o.value for o in Outcome if o is not Outcome.OK and quiet(CONFIG, result("backend_health", o))]
