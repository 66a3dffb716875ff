"""Links on alerts and the status page (alerts/links.py): templates checked at load, filled per alert with the
check's, its target's or the top-level one, and carried by every sink's payload, /status and the page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import SecretStr

from alerts.judge.evaluate import evaluate
from alerts.judge.rules import rules_for
from alerts.links import check_links, links, status_url
from alerts.model import Event, Notification, Signal, SinkContext
from alerts.sinks import alertmanager, pagerduty, slack, webhook
from monitor.core.config import AlertmanagerSink, Config, PagerDutySink, SlackSink, WebhookSink
from monitor.core.results import Outcome
from monitor.page import render_page
from probes import RULES_BY_KIND
from tests.support.alerting import make_config, make_engine, result, target_alerts
from tests.support.clock import T0, FakeClock

LINKS = {"external_url": "https://status.example.com/pam",
         "runbook_url": "https://wiki.example.com/runbooks/{alertname}?check={check}",
         "dashboard_url": "https://grafana.example.com/d/pam?var-check={check}"}


def _config(**overrides: Any) -> Config:
    return make_config(**{**LINKS, **overrides})


def _check(config: Config, name: str) -> Any:
    return next(c for c in config.checks if c.name == name)


def test_links_fill_the_templates_url_encoded_and_point_at_the_checks_row() -> None:
    """runbook_url and dashboard_url are the top-level templates with the alert's values (URL-encoded);
    status_url is external_url (a slash added) plus #check-<name>."""
    config = _config()
    found = links(config, _check(config, "backend_health"), "Endpoint Down&")
    assert {"runbook_url": "https://wiki.example.com/runbooks/Endpoint%20Down%26?check=backend_health",
            "dashboard_url": "https://grafana.example.com/d/pam?var-check=backend_health",
            "status_url": "https://status.example.com/pam/#check-backend_health"} == found


def test_the_check_wins_over_its_target_which_wins_over_the_top_level() -> None:
    """A check's runbook_url, else its target's, else the top-level one; without external_url the status link is
    the daemon's own listen address."""
    checks = [{"name": "a", "kind": "http", "target": "backend", "runbook_url": "https://rb.example.com/own/{check}"},
              {"name": "b", "kind": "http", "target": "backend"},
              {"name": "c", "kind": "db", "target": "database"}]
    config = make_config(checks=checks, runbook_url="https://rb.example.com/top/{alertname}",
                         targets={"backend": {"base_url": "http://127.0.0.1:1",
                                              "runbook_url": "https://rb.example.com/target/{target}"},
                                  "database": {"dsn": "postgresql://app@127.0.0.1:1/app"}})
    got = {name: links(config, _check(config, name), "X")["runbook_url"] for name in ("a", "b", "c")}
    assert {"a": "https://rb.example.com/own/a", "b": "https://rb.example.com/target/backend",
            "c": "https://rb.example.com/top/X"} == got
    assert "http://127.0.0.1:9108/#check-a" == status_url(config, "a")


def test_bad_alerts_carry_the_links_and_good_ones_none() -> None:
    """evaluate(): every BAD observation's annotations hold runbook_url, dashboard_url and status_url; a GOOD one
    has no annotations to carry them."""
    config = _config()
    check = _check(config, "backend_health")
    rules = rules_for(config, check, RULES_BY_KIND)
    bad = [o for o in evaluate(config, check, result("backend_health", Outcome.CONNECTION_ERROR), _memory(),
                               rules=rules) if o.signal is Signal.BAD]
    good = [o for o in evaluate(config, check, result("backend_health", Outcome.OK, status=200), _memory(),
                                rules=rules) if o.signal is Signal.GOOD]
    assert ["EndpointDown"] == [o.alertname for o in bad]
    assert "https://wiki.example.com/runbooks/EndpointDown?check=backend_health" == bad[0].annotations["runbook_url"]
    assert "https://status.example.com/pam/#check-backend_health" == bad[0].annotations["status_url"]
    assert good
    assert all("status_url" not in o.annotations for o in good)


def _memory() -> Any:
    from alerts.model import CheckMemory

    return CheckMemory()


NOTES = {"summary": "connection refused", "runbook": "check the process",
         "runbook_url": "https://wiki.example.com/rb?a=1&b=<2>",
         "dashboard_url": "https://grafana.example.com/d/pam", "status_url": "https://status.example.com/#check-api"}
NOTE = Notification(key="EndpointDown/api", event=Event.FIRING,
                    labels={"alertname": "EndpointDown", "check": "api", "severity": "critical",
                            "service": "pam-backend"},
                    annotations=NOTES, starts_at=T0, at=T0 + 30)
CTX = SinkContext(service="pam-backend", resend_interval=60.0, generator_url="https://status.example.com/")


def test_every_sink_carries_the_links() -> None:
    """Alertmanager: annotations and generatorURL = the check's row; PagerDuty: links and client_url; Slack: the
    three links in the message (Slack's &, <, > escaped); webhook: the annotations."""
    am = alertmanager.SPEC.build_payload(AlertmanagerSink(kind="alertmanager", url="http://10.0.0.1:9093"), [NOTE],
                                         ctx=CTX, now=T0 + 30)
    pd = pagerduty.SPEC.build_payload(PagerDutySink(kind="pagerduty", routing_key=SecretStr("R" * 32)), [NOTE],
                                      ctx=CTX, now=T0 + 30)
    sl = slack.SPEC.build_payload(SlackSink(kind="slack", url=SecretStr("https://hooks.slack.com/services/T/B/x")),
                                  [NOTE], ctx=CTX, now=T0 + 30)
    hook = webhook.SPEC.build_payload(WebhookSink(kind="webhook", url=SecretStr("https://hooks.example.com/x")),
                                      [NOTE], ctx=CTX, now=T0 + 30)
    assert NOTES["status_url"] == am[0]["generatorURL"]
    assert NOTES["runbook_url"] == am[0]["annotations"]["runbook_url"]
    assert [{"href": NOTES["runbook_url"], "text": "Runbook"}, {"href": NOTES["dashboard_url"], "text": "Dashboard"},
            {"href": NOTES["status_url"], "text": "Status page"}] == pd["links"]
    assert NOTES["status_url"] == pd["client_url"]
    text = sl["blocks"][0]["text"]["text"]
    assert ("<https://wiki.example.com/rb?a=1&amp;b=&lt;2&gt;|runbook> · <https://grafana.example.com/d/pam|dashboard>"
            " · <https://status.example.com/#check-api|status page>") in text
    assert {k: NOTES[k] for k in ("runbook_url", "dashboard_url", "status_url")} == {
        k: hook["alerts"][0]["annotations"][k] for k in ("runbook_url", "dashboard_url", "status_url")}


async def test_status_and_page_carry_the_links(tmp_path: Path) -> None:
    """/status gives each check its status_url (and the runbook and dashboard links whose templates do not need
    an alertname); each firing alert its own filled links. The page anchors each check's row (id check-<name>),
    links the runbook, and links an alert's check to that row."""
    config = _config(state_dir=str(tmp_path), runbook_url="https://wiki.example.com/rb/{check}")
    per_check = check_links(config)
    assert {"runbook_url": "https://wiki.example.com/rb/backend_health",
            "dashboard_url": "https://grafana.example.com/d/pam?var-check=backend_health",
            "status_url": "https://status.example.com/pam/#check-backend_health"} == per_check["backend_health"]
    assert "runbook_url" not in check_links(_config())["backend_health"]  # {alertname}: an alert's link, not a check's
    clock = FakeClock()
    async with make_engine(config, clock=clock) as engine:
        for _ in range(2):
            engine.observe(result("backend_health", Outcome.CONNECTION_ERROR, at=clock.now))
            clock.advance(1.0)
        alerts = target_alerts(engine)
    assert [("EndpointDown", "https://wiki.example.com/rb/backend_health")] == [
        (a["alertname"], a.get("runbook_url")) for a in alerts]
    doc = {"checks": [{"name": "backend_health", "kind": "http", "outcome": "connection_error",
                       **per_check["backend_health"]}], "alerts": alerts}
    page = render_page(doc, "pam-backend", "ready", now=T0)
    assert '<tr class="r-bad" id="check-backend_health">' in page
    assert '<a href="https://wiki.example.com/rb/backend_health">runbook</a>' in page
    assert '<a href="#check-backend_health">backend_health</a>' in page
