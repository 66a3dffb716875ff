"""Tests for monitor.page: the status page's summary, title, colours, times, history strips, held alerts, escaping."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from monitor.core.clock import iso
from monitor.core.results import Outcome
from monitor.page import HISTORY_CELLS, RUNBOOK, render_page

NOW = 1_795_000_000.0  # 2026-11-18T11:06:40Z


def _check(name: str, outcome: str | None, **extra: Any) -> dict[str, Any]:
    doc = {"name": name, "kind": "http", "outcome": outcome, "success": outcome == "ok" if outcome else None,
           "status_code": 200 if outcome else None, "duration_s": 0.05 if outcome else None,
           "message": "fine" if outcome else "not run yet", "finished_at": iso(NOW - 30) if outcome else None,
           "interval_s": 30.0, "history": []}
    return doc | extra


def _alert(name: str, severity: str, state: str = "firing", **extra: Any) -> dict[str, Any]:
    return {"alertname": name, "state": state, "labels": {"alertname": name, "check": "a", "severity": severity},
            "since": iso(NOW - 180)} | extra


def _summary(page: str) -> tuple[str, str, str]:
    """(colour class of the summary banner, its first line, the page title)."""
    banner = re.search(r'<header class="summary c-(\w+)" id="summary"><div class="line">([^<]*)</div>', page)
    title = re.search(r"<title>([^<]*)</title>", page)
    assert banner is not None
    assert title is not None
    return banner.group(1), banner.group(2), title.group(1)


SUMMARIES: list[tuple[str, dict[str, Any], tuple[str, str, str]]] = [
    ("all_ok", {"checks": [_check(f"c{i}", "ok") for i in range(6)], "alerts": []},
     ("ok", "All 6 checks OK, no alert firing", "OK - pam-monitor: svc")),
    ("five_failing_six_firing",
     {"checks": [_check("ok", "ok")] + [_check(f"f{i}", "server_error") for i in range(5)],
      "alerts": [_alert(f"A{i}", "critical") for i in range(6)]},
     ("bad", "5 of 6 checks failing, 6 alerts firing", "(5) failing - pam-monitor: svc")),
    ("one_failing_of_one", {"checks": [_check("a", "timeout")], "alerts": [_alert("EndpointDown", "critical")]},
     ("bad", "1 of 1 check failing, 1 alert firing", "(1) failing - pam-monitor: svc")),
    ("slow_and_warning", {"checks": [_check("a", "slow"), _check("b", "ok")],
                          "alerts": [_alert("VoiceDegraded", "warning")]},
     ("warn", "1 of 2 checks slow, 1 alert firing", "(1) slow - pam-monitor: svc")),
    ("failing_slow_waiting", {"checks": [_check("a", "db_error"), _check("b", "slow"), _check("c", None)],
                              "alerts": []},
     ("bad", "1 of 3 checks failing, 1 slow, 1 not run yet, no alert firing", "(1) failing - pam-monitor: svc")),
    ("not_run_yet", {"checks": [_check("a", None), _check("b", None)], "alerts": []},
     ("idle", "2 of 2 checks not run yet, no alert firing", "waiting - pam-monitor: svc")),
    ("ok_but_critical_alert", {"checks": [_check("a", "ok")], "alerts": [_alert("TableMissing", "critical")]},
     ("bad", "All 1 check OK, 1 alert firing", "OK - pam-monitor: svc")),
    ("pending_only", {"checks": [_check("a", "ok")], "alerts": [_alert("CheckFailed", "warning", "pending")]},
     ("warn", "All 1 check OK, no alert firing, 1 pending", "OK - pam-monitor: svc")),
    ("watchdog_is_not_counted", {"checks": [_check("a", "ok")], "alerts": [_alert("MonitorWatchdog", "none")]},
     ("ok", "All 1 check OK, no alert firing", "OK - pam-monitor: svc")),
    ("no_checks", {"checks": [], "alerts": []}, ("idle", "No checks configured, no alert firing",
                                                  "no checks - pam-monitor: svc")),
]


@pytest.mark.parametrize(("doc", "expected"), [(d, e) for _, d, e in SUMMARIES], ids=[n for n, _, _ in SUMMARIES])
def test_summary_line_colour_and_title(doc: dict[str, Any], expected: tuple[str, str, str]) -> None:
    """The banner answers "is it OK?": its words, its colour (state and severity) and the title's count."""
    assert expected == _summary(render_page(doc, "svc", "ok", now=NOW))


def test_failing_checks_are_named_under_the_summary() -> None:
    """The banner lists which checks fail, so the reader need not scan the table."""
    page = render_page({"checks": [_check("up", "ok"), _check("down", "server_error")], "alerts": []}, "s", "ok",
                       now=NOW)
    assert '<div class="sub">failing: down</div>' in page


def test_check_row_colours_interval_and_relative_time() -> None:
    """Each check shows its state colour, interval, and a relative time with the absolute one in the tooltip."""
    doc = {"checks": [_check("up", "ok", interval_s=300.0), _check("slowpoke", "slow"),
                      _check("down", "server_error", interval_s=0.5), _check("new", None, interval_s=7200.0)],
           "alerts": []}
    page = render_page(doc, "svc", "ok", now=NOW)
    rows = page.split('<tr class="r-')[1:]
    assert ["ok", "warn", "bad", "idle"] == [row.split('"', 1)[0] for row in rows]
    assert '<span class="badge c-bad">server_error</span>' in rows[2]
    assert '<span class="badge c-idle">not run yet</span>' in rows[3]
    assert "<td>5 min</td>" in rows[0]
    assert "<td>30 s</td>" in rows[1]
    assert "<td>500 ms</td>" in rows[2]
    assert "<td>2 h</td>" in rows[3]
    assert ('<time class="rel" datetime="2026-11-18T11:06:10.000Z" title="2026-11-18 11:06:10 UTC">30 s ago</time>'
            in rows[0])


def test_history_strip_pads_and_keeps_the_last_cells() -> None:
    """The strip always has HISTORY_CELLS cells: empty ones first, then outcomes oldest to newest, each with a
    tooltip naming the outcome and its time; a longer history shows only its newest entries."""
    short = [{"outcome": "ok", "finished_at": iso(NOW - 60)}, {"outcome": "timeout", "finished_at": iso(NOW - 30)}]
    page = render_page({"checks": [_check("a", "timeout", history=short)], "alerts": []}, "s", "ok", now=NOW)
    cells = re.findall(r'<span class="cell ([^"]*)"(?: title="([^"]*)")?></span>', page)
    assert HISTORY_CELLS == len(cells)
    assert [("none", "")] * (HISTORY_CELLS - 2) == cells[:-2]
    assert [("c-ok", "ok at 2026-11-18 11:05:40 UTC"), ("c-bad", "timeout at 2026-11-18 11:06:10 UTC")] == cells[-2:]

    long = [{"outcome": "ok" if i < 25 else "slow", "finished_at": iso(NOW - 100 + i)} for i in range(30)]
    page = render_page({"checks": [_check("a", "slow", history=long)], "alerts": []}, "s", "ok", now=NOW)
    cells = re.findall(r'<span class="cell (c-\w+)"', page)
    assert ["c-ok"] * 15 + ["c-warn"] * 5 == cells


def test_alert_severity_colours_and_order() -> None:
    """Alerts are coloured by severity, firing before pending, critical first."""
    doc = {"checks": [_check("a", "ok")], "alerts": [
        _alert("Pending", "critical", "pending"), _alert("Info", "info"), _alert("Warn", "warning"),
        _alert("Crit", "critical"), _alert("NoSeverity", "none"),
    ]}
    page = render_page(doc, "svc", "ok", now=NOW)
    found = re.findall(r'<span class="badge c-(\w+)">(\w+)</span></td><td><b>(\w+)</b>', page)
    assert [("bad", "critical", "Crit"), ("warn", "warning", "Warn"), ("info", "info", "Info"),
            ("idle", "none", "NoSeverity"), ("bad", "critical", "Pending")] == found
    assert "3 min ago" in page


HELD: list[tuple[str, dict[str, Any], str]] = [
    ("flapping_held_until", {"flapping": True, "held_until": iso(NOW + 600), "held_reason": "flapping"},
     'held (flapping) until <time class="clock" datetime="2026-11-18T11:16:40.000Z" '
     'title="2026-11-18 11:16:40 UTC">11:16 UTC</time>'),
    ("flapping_only", {"flapping": True}, "flapping"),
    ("held_reason_only", {"held_reason": "depends on backend_health"}, "held (depends on backend_health)"),
    ("flapping_until_as_epoch_seconds", {"flapping": True, "held_until": NOW + 3600},
     'held (flapping) until <time class="clock" datetime="2026-11-18T12:06:40.000Z" '
     'title="2026-11-18 12:06:40 UTC">12:06 UTC</time>'),
]


@pytest.mark.parametrize(("extra", "expected"), [(x, e) for _, x, e in HELD], ids=[n for n, _, _ in HELD])
def test_held_and_flapping_alerts_are_shown(extra: dict[str, Any], expected: str) -> None:
    """Keys the alert engine may add (flapping, held_until, held_reason) appear next to the alert's state."""
    doc = {"checks": [_check("a", "ok")], "alerts": [_alert("VoiceDegraded", "warning", **extra)]}
    page = render_page(doc, "svc", "ok", now=NOW)
    assert f'firing <span class="tag">{expected}</span>' in page


def test_plain_alert_has_no_held_tag() -> None:
    """Without those keys nothing extra is shown."""
    page = render_page({"checks": [], "alerts": [_alert("EndpointDown", "critical")]}, "svc", "ok", now=NOW)
    assert 'class="tag"' not in page


PAYLOAD = "\"'><img src=x onerror=alert(1)><script>alert(2)</script>"


def test_every_value_is_escaped() -> None:
    """A status document carrying markup in every string field renders it as text: no element, no attribute."""
    check = {"name": PAYLOAD, "kind": PAYLOAD, "outcome": PAYLOAD, "success": False, "status_code": PAYLOAD,
             "duration_s": 0.1, "message": PAYLOAD, "finished_at": PAYLOAD, "interval_s": 30.0,
             "history": [{"outcome": PAYLOAD, "finished_at": PAYLOAD}]}
    alert = {"alertname": PAYLOAD, "state": PAYLOAD, "labels": {PAYLOAD: PAYLOAD, "severity": PAYLOAD},
             "since": PAYLOAD, "flapping": True, "held_until": PAYLOAD, "held_reason": PAYLOAD}
    page = render_page({"checks": [check], "alerts": [alert]}, PAYLOAD, PAYLOAD, now=NOW)
    assert "<img" not in page
    assert 1 == page.count("<script")
    assert "&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;" in page
    assert "&quot;&#x27;&gt;" in page


def test_watchdog_is_a_heartbeat_line_not_a_firing_row() -> None:
    """MonitorWatchdog (in the alert list, or as /status's dead_mans_switch) shows as "dead man's switch: being
    sent", never as an alert row, and the headline says no alert is firing."""
    for doc in ({"checks": [_check("a", "ok")], "alerts": [_alert("MonitorWatchdog", "none")]},
                {"checks": [_check("a", "ok")], "alerts": [],
                 "dead_mans_switch": {"state": "being sent", "since": iso(NOW - 600)}}):
        page = render_page(doc, "svc", "ok", now=NOW)
        assert ("All 1 check OK, no alert firing", True, False, True) == (
            _summary(page)[1], "dead man's switch: being sent since" in page, "MonitorWatchdog</b>" in page,
            "No alert pending or firing." in page)


def test_headline_counts_match_the_alert_rows() -> None:
    """Four firing and one pending beside the watchdog: the headline says 4 firing and 1 pending, and the table
    holds exactly those five rows."""
    alerts = [_alert(f"A{i}", "critical") for i in range(4)] + [_alert("P", "warning", "pending"),
                                                                 _alert("MonitorWatchdog", "none")]
    page = render_page({"checks": [_check("a", "server_error")], "alerts": alerts}, "svc", "ok", now=NOW)
    section = page[page.index("<h2>Alerts</h2>"):page.index("<h2>Checks</h2>")]
    assert ("1 of 1 check failing, 4 alerts firing, 1 pending", 5, True) == (
        _summary(page)[1], section.count('<tr class="r-'), '<p class="count">4 firing, 1 pending</p>' in section)


def test_a_failing_row_carries_what_it_asks_and_a_runbook_hint() -> None:
    """A failing check's row shows its request (method and path, or step) and its outcome's hint; an ok row shows
    neither."""
    doc = {"checks": [_check("gone", "table_missing", request="step read: GET /api/v1/users/{sub}/settings"),
                      _check("fine", "ok", request="GET /health")], "alerts": []}
    page = render_page(doc, "svc", "ok", now=NOW)
    assert ("<div class=where>step read: GET /api/v1/users/{sub}/settings</div>" in page,
            f"<div class=hint>{RUNBOOK['table_missing']}</div>" in page, "GET /health" in page) == (True, True, False)
    assert "A required table is gone: check migrations and the database." == RUNBOOK["table_missing"]


def test_every_outcome_but_ok_has_one_runbook_sentence() -> None:
    """RUNBOOK has a hint for each outcome that is not ok, one sentence each, and nothing else."""
    assert {o.value for o in Outcome if o is not Outcome.OK} == set(RUNBOOK)
    assert all(hint.endswith(".") and "\n" not in hint for hint in RUNBOOK.values())


def test_the_readme_lists_the_runbook_as_the_code_has_it() -> None:
    """README's status page table holds every RUNBOOK sentence, word for word, so the two cannot drift apart."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [outcome for outcome, hint in RUNBOOK.items() if f"| `{outcome}` | {hint} |" not in readme]
    assert [] == missing
