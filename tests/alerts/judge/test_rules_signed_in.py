"""Rules for signed-in checks: a journey's alerts are per step (label `step`), judged with that step's memory;
AccessDenied names the table the application's role cannot read; a failed sign-in says nothing about the target."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

import prometheus_client

from alerts.judge.evaluate import evaluate, remember
from alerts.judge.rules import RULES, rules_for
from alerts.model import CheckMemory, Observation, Signal
from alerts.persist.database import Store
from monitor.core.config import Config
from monitor.core.results import Result
from probes import RULES_BY_KIND
from tests.support.alerting import CHECKS, make_config, make_engine, result, target_alerts
from tests.support.clock import FakeClock

IDENTITIES = {"monitor_user": {"mint": {"secret": "jwt-Secret-never-in-alerts", "sub": "u-1"}}}
SIGNED_IN: list[dict[str, Any]] = [
    {"name": "settings_journey", "kind": "journey", "target": "backend", "identity": "monitor_user",
     "steps": [{"name": n, "path": "/x"} for n in ("csrf", "read", "write", "read_back")]},
    {"name": "settings_isolation", "kind": "tenant_isolation", "target": "backend", "identity": "monitor_user",
     "path": "/x"},
    {"name": "db_as_user", "kind": "db", "target": "database", "as_role": "authenticated",
     "identity": "monitor_user", "required_tables": ["user_settings", "affiliate_sales"]},
]
STEPS = ("csrf", "read", "write", "read_back")
JOURNEY = "settings_journey"


def config(state_dir: Path | None = None) -> Config:
    return make_config(state_dir, checks=[*CHECKS, *SIGNED_IN], identities=IDENTITIES)


CONFIG = config()
CHECK = {c.name: c for c in CONFIG.checks}


def judge(r: Result, memory: CheckMemory | None = None, known: Collection[str] = ()) -> list[Observation]:
    check = CHECK[r.check]
    return evaluate(CONFIG, check, r, memory or CheckMemory(), known, rules=rules_for(CONFIG, check, RULES_BY_KIND))


def walk(failing: str | None, outcome: str = "ok", status: int | None = 200, **details: Any) -> Result:
    """A journey result: the steps before `failing` passed with 200, `failing` ended with `outcome`/`status`."""
    ran = STEPS if failing is None else STEPS[: STEPS.index(failing) + 1]
    steps = [{"name": n, "status": 200, "outcome": "ok", "elapsed_s": 0.01} for n in ran]
    extra: dict[str, Any] = {"steps": steps, "run_id": "abc", **details}
    if failing is not None:
        steps[-1].update(status=status, outcome=outcome)
        extra["step"] = failing
    return result(JOURNEY, outcome if failing else "ok", status=status, kind="journey", details=extra)


def signals(observations: list[Observation]) -> dict[str, Signal]:
    return {o.key: o.signal for o in observations}


GOOD_RUN = remember(CheckMemory(), walk(None))


def test_journey_and_tenant_isolation_rules() -> None:
    """The kinds' rule lists (CheckFailed on every kind: no failure is silent, CertificateExpiring on every HTTP
    kind) and AccessDenied for db."""
    assert ("ContractRegression", "TableMissing", "CertificateExpiring", "CorsBroken", "MonitorCredentialExpiring",
            "CheckFailed") == RULES_BY_KIND["journey"]
    assert ("AuthBypass", "ContractRegression", "TableMissing", "CertificateExpiring", "CheckFailed") == (
        RULES_BY_KIND["tenant_isolation"])
    assert "AccessDenied" in RULES_BY_KIND["db"]
    assert "critical" == RULES["AccessDenied"].severity


def test_a_step_that_answered_2xx_and_now_5xx_is_contract_regression_with_its_step() -> None:
    """write answered 200 on the last good run and now 500: ContractRegression{step=write, from=200, to=500};
    csrf and read passed this run (GOOD for their instances); read_back did not run (no observation)."""
    out = judge(walk("write", "server_error", 500), GOOD_RUN)
    bad = {o.key: o for o in out if o.signal is Signal.BAD}
    assert ["ContractRegression/settings_journey/step=write"] == list(bad)
    labels = bad["ContractRegression/settings_journey/step=write"].labels
    assert ("write", "200", "500", "critical") == (labels["step"], labels["from"], labels["to"], labels["severity"])
    annotations = bad["ContractRegression/settings_journey/step=write"].annotations
    assert "step write, outcome server_error" in annotations["description"]
    good = {k for k, s in signals(out).items() if s is Signal.GOOD}
    assert {f"{a}/settings_journey/step={s}" for a in ("ContractRegression", "TableMissing")
            for s in ("csrf", "read")} <= good
    assert not any("step=read_back" in o.key for o in out)


def test_a_step_never_good_is_not_a_regression() -> None:
    """No good answer remembered for the step: a 500 there raises no ContractRegression (no invented `from`), only
    CheckFailed for that step."""
    out = judge(walk("write", "server_error", 500))
    assert [("CheckFailed/settings_journey/step=write", "write")] == [
        (o.key, o.labels["step"]) for o in out if o.signal is Signal.BAD]


def test_each_steps_good_status_is_remembered_even_when_a_later_step_fails() -> None:
    """A run failing at write remembers csrf's and read's statuses; a later 500 at read is then a regression
    from 200, although the journey as a whole was never good."""
    memory = remember(CheckMemory(), walk("write", "unexpected_status", 403))
    assert {"csrf": 200, "read": 200} == dict(memory.steps)
    assert memory.last_good_status is None
    bad = [o for o in judge(walk("read", "server_error", 502), memory) if o.signal is Signal.BAD]
    assert [("ContractRegression/settings_journey/step=read", "200", "502")] == [
        (o.key, o.labels["from"], o.labels["to"]) for o in bad]


def test_a_missing_relation_at_a_step_is_table_missing_with_table_and_step() -> None:
    """A 500 naming user_settings at read: TableMissing{table=user_settings, step=read} (and the regression)."""
    r = walk("read", "table_missing", 500, tables_missing=["user_settings"], table="user_settings")
    bad = {o.key: o for o in judge(r, GOOD_RUN) if o.signal is Signal.BAD}
    assert {"TableMissing/settings_journey/step=read/user_settings",
            "ContractRegression/settings_journey/step=read"} == set(bad)
    labels = bad["TableMissing/settings_journey/step=read/user_settings"].labels
    assert ("user_settings", "read") == (labels["table"], labels["step"])


def test_a_passing_run_is_good_for_every_known_step_instance() -> None:
    """Active instances of several steps (one with a table) are all GOOD on a passing run."""
    known = ["ContractRegression/settings_journey/step=write",
             "TableMissing/settings_journey/step=read/user_settings"]
    out = signals(judge(walk(None), GOOD_RUN, known))
    assert all(Signal.GOOD == out[k] for k in known)


def test_a_failed_sign_in_says_nothing_about_the_target() -> None:
    """The auth server failing (step sign_in) raises no ContractRegression, EndpointDown or DatabaseDown on the
    checks that could not sign in: CheckFailed pages it (a warning: the monitoring user cannot sign in)."""
    signed_out = {"step": "sign_in", "identity": "monitor_user", "sign_in_status": 500}
    for name, kind, outcome in (("settings_journey", "journey", "server_error"),
                                ("settings_isolation", "tenant_isolation", "server_error"),
                                ("db_as_user", "db", "connection_error")):
        r = result(name, outcome, kind=kind, details=signed_out)
        assert ["CheckFailed"] == [o.alertname for o in judge(r, GOOD_RUN) if o.signal is Signal.BAD], name


def test_access_denied_per_table() -> None:
    """permission_denied / policy_error of a db check: AccessDenied{table} (critical) per refused table; GOOD
    for known tables on a run that reads them again; a run that never got to read says nothing."""
    r = result("db_as_user", "permission_denied", kind="db",
               details={"table": "user_settings", "denied": {"user_settings": "42501", "affiliate_sales": "42P17"}})
    bad = {o.key: o for o in judge(r) if o.signal is Signal.BAD}
    assert {"AccessDenied/db_as_user/user_settings", "AccessDenied/db_as_user/affiliate_sales"} == set(bad)
    assert ("user_settings", "critical") == (bad["AccessDenied/db_as_user/user_settings"].labels["table"],
                                            bad["AccessDenied/db_as_user/user_settings"].labels["severity"])
    known = list(bad)
    healed = signals(judge(result("db_as_user", "ok", kind="db"), known=known))
    assert dict.fromkeys(known, Signal.GOOD) == {k: healed[k] for k in known}
    assert [] == [o for o in judge(result("db_as_user", "timeout", kind="db"), known=known)
                  if o.alertname == "AccessDenied"]


def test_tenant_isolation_bypass_is_auth_bypass() -> None:
    """A 2xx for another user's resource pages AuthBypass."""
    bad = [o.key for o in judge(result("settings_isolation", "auth_bypass", status=200, kind="tenant_isolation"))
           if o.signal is Signal.BAD]
    assert ["AuthBypass/settings_isolation"] == bad


def test_step_memory_survives_a_restart(tmp_path: Path) -> None:
    """CheckMemory.steps is written to and read back from the state database."""
    store = Store.open(tmp_path)
    try:
        remembered = CheckMemory(last_good_status=200, last_good_outcome="ok", steps={"csrf": 200, "write": 204})
        store.write(memory={JOURNEY: remembered})
    finally:
        store.close()
    store = Store.open(tmp_path)
    try:
        assert {"csrf": 200, "write": 204} == dict(store.load().memory[JOURNEY].steps)
    finally:
        store.close()


async def test_engine_fires_per_step_and_resolves_when_a_later_step_fails(tmp_path: Path) -> None:
    """Through the real engine: write 500 twice fires ContractRegression{step=write}; then the journey fails at
    read_back (write passed), twice: write's instance resolves while read_back's own alert starts."""
    clock = FakeClock()
    async with make_engine(config(tmp_path), prometheus_client.CollectorRegistry(), clock) as engine:
        engine.observe(walk(None))
        for _ in range(2):
            clock.advance(30)
            engine.observe(walk("write", "server_error", 500))
        firing = [(a["alertname"], a["labels"].get("step"), a["state"]) for a in target_alerts(engine)]
        assert [("ContractRegression", "write", "firing")] == firing
        for _ in range(2):
            clock.advance(30)
            engine.observe(walk("read_back", "server_error", 503))
        firing = [(a["alertname"], a["labels"].get("step"), a["state"]) for a in target_alerts(engine)]
        assert [("ContractRegression", "read_back", "firing")] == firing
