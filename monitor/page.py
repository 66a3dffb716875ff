"""The status page at `/`: one self-contained HTML document answering "is it OK?" at a glance.

Everything is rendered on the server, so the page reads correctly without JavaScript; a few lines of inline
script only keep the relative times ("3 min ago") current between the 5 s refreshes. Every value is escaped.
"""

from __future__ import annotations

import datetime as dt
import html
import time
from collections.abc import Mapping, Sequence
from typing import Any

from monitor import __version__
from monitor.core.clock import iso
from monitor.core.durations import format_duration

HISTORY_CELLS = 20
PALETTE = {"ok": "#1a7f37", "warn": "#9a6700", "bad": "#cf222e", "idle": "#6e7781", "info": "#0969da"}
"""Green ok, amber slow/warning, red failing/critical, grey not yet run (and severity none), blue info."""
_SEVERITY_LEVEL = {"critical": "bad", "warning": "warn", "info": "info"}
_SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}
HEARTBEAT_ALERTS = frozenset({"MonitorWatchdog"})
"""Alerts that fire all the time by design (the dead man's switch): shown as a heartbeat, never counted or listed."""

RUNBOOK: dict[str, str] = {
    "slow": "It answered, but slower than the check's slow threshold: look at the target's latency, load and what "
            "it waits on.",
    "unexpected_status": "The status code is not the one expected: compare the route with the last deploy and the "
                         "check's expect.",
    "server_error": "The target answered 5xx: read the backend's logs for this request at that time.",
    "auth_bypass": "A request without a valid token was let in: check this route's auth dependency and token "
                   "verification now (security).",
    "rate_limited": "The target answered 429: check its rate limits for the monitor's address, or the check's "
                    "interval.",
    "timeout": "No answer within the timeout: check the target is up, its load, and the network in between.",
    "connection_error": "The connection was refused or reset: check the process runs and listens on that address.",
    "tls_error": "The TLS handshake failed: check the certificate (expiry, name, chain) and the TLS settings.",
    "dns_error": "The host name did not resolve: check the DNS record and the resolver.",
    "invalid_response": "The body is not what the check expects: compare the answer with the check's expect "
                        "(a write that was lost, a changed field, an error page with 200).",
    "table_missing": "A required table is gone: check migrations and the database.",
    "column_missing": "A required column is gone: check the last migration against the code that reads it.",
    "rls_disabled": "Row-level security is off on a table: turn it back on (ALTER TABLE ... ENABLE ROW LEVEL "
                    "SECURITY) and find what turned it off.",
    "permission_denied": "The role was refused: check the GRANTs on the table for that role.",
    "policy_error": "A row-level security policy fails (such as one that reads its own table): check the table's "
                    "policies.",
    "db_error": "The database query failed: read the message, then the database's logs.",
    "internal_error": "pam-monitor itself failed on this check: read its logs and report the error.",
    "identity_failed": "The monitor could not act as its user (sign-in refused, its token rejected, its own data "
                       "unreadable): check the identity's secret or password and the user, not the backend.",
    "heartbeat_missed": "The job did not call in time, or called /fail: check that it ran, its logs and its exit "
                        "status.",
    "schema_cache_stale": "PostgREST's schema cache lacks a table the database has: run NOTIFY pgrst, 'reload schema' "
                          "(Supabase: in the SQL editor).",
    "migration_pending": "A migration in the repository was never applied here: run supabase db push (or apply it and "
                         "record its version).",
    "cors_refused": "A browser on the frontend's origin cannot read this endpoint: check the backend's CORS settings "
                    "(allowed origins, credentials, headers, methods) and any proxy in front.",
}
"""What to look at first for each outcome that is not ok: one sentence each (the page's and /status's `hint`)."""


def runbook_hint(outcome: str | None) -> str:
    """The RUNBOOK sentence for an outcome ('' for ok and not-run-yet; a general one for an outcome not listed)."""
    if outcome in (None, "ok"):
        return ""
    return RUNBOOK.get(str(outcome), "Read the check's message, then the target's logs at that time.")


def split_alerts(alerts: Sequence[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """(the alerts to list and count, the heartbeat alerts) of an alert list."""
    shown = [a for a in alerts if a.get("alertname") not in HEARTBEAT_ALERTS]
    beat = [a for a in alerts if a.get("alertname") in HEARTBEAT_ALERTS]
    return shown, beat


def esc(value: object) -> str:
    """HTML-escape any value for text and attribute positions."""
    return html.escape("" if value is None else str(value), quote=True)


def outcome_level(outcome: str | None) -> str:
    """The colour class of an outcome: ok, warn (slow), bad (any failure) or idle (not run yet)."""
    if outcome is None:
        return "idle"
    return {"ok": "ok", "slow": "warn"}.get(outcome, "bad")


def _severity(alert: Mapping[str, Any]) -> str:
    labels = alert.get("labels") or {}
    return str(labels.get("severity") or alert.get("severity") or "none")


def _timestamp(value: object) -> float | None:
    """Seconds since the epoch from an ISO string (`...Z`) or a number; None when absent or unreadable."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def _absolute(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def relative(seconds: float) -> str:
    """`just now`, `12 s ago`, `3 min ago`, `2 h ago`, `4 d ago` (or `in 3 min` for the future)."""
    gone = round(seconds)
    span = abs(gone)
    if span < 5:
        return "just now"
    if span < 60:
        text = f"{span} s"
    elif span < 3600:
        text = f"{round(span / 60)} min"
    elif span < 86400:
        text = f"{round(span / 3600)} h"
    else:
        text = f"{round(span / 86400)} d"
    return f"{text} ago" if gone >= 0 else f"in {text}"


def _time(value: object, now: float, *, clock: bool = False) -> str:
    """A <time> element: relative (or HH:MM for `clock`) text, the ISO instant for the script, the absolute
    time in the tooltip. Unreadable values are shown as they are, escaped."""
    ts = _timestamp(value)
    if ts is None:
        return esc(value or "-")
    text = dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%H:%M UTC") if clock else relative(now - ts)
    cls = "clock" if clock else "rel"
    return f'<time class="{cls}" datetime="{esc(iso(ts))}" title="{esc(_absolute(ts))}">{esc(text)}</time>'


def summarize(doc: Mapping[str, Any]) -> tuple[str, str, str]:
    """(level, summary line, title prefix) for a /status document."""
    checks: Sequence[Mapping[str, Any]] = doc.get("checks") or []
    levels = [outcome_level(c.get("outcome")) for c in checks]
    n, failing, slow, waiting = len(checks), levels.count("bad"), levels.count("warn"), levels.count("idle")
    alerts, _ = split_alerts(doc.get("alerts") or [])
    firing = [a for a in alerts if a.get("state") == "firing"]
    pending = sum(1 for a in alerts if a.get("state") != "firing")
    noun = "check" if n == 1 else "checks"
    if failing:
        line, title = f"{failing} of {n} {noun} failing", f"({failing}) failing"
    elif slow:
        line, title = f"{slow} of {n} {noun} slow", f"({slow}) slow"
    elif waiting:
        line, title = f"{waiting} of {n} {noun} not run yet", "waiting"
    elif n:
        line, title = f"All {n} {noun} OK", "OK"
    else:
        line, title = "No checks configured", "no checks"
    if slow and failing:
        line += f", {slow} slow"
    if waiting and (failing or slow):
        line += f", {waiting} not run yet"
    line += f", {len(firing)} alert{'s' if len(firing) != 1 else ''} firing" if firing else ", no alert firing"
    if pending:
        line += f", {pending} pending"
    severities = {_severity(a) for a in firing}
    if failing or "critical" in severities:
        level = "bad"
    elif slow or firing or pending:
        level = "warn"
    elif waiting or not n:
        level = "idle"
    else:
        level = "ok"
    return level, line, title


def _strip(history: Sequence[Mapping[str, Any]]) -> str:
    cells = []
    recent = list(history)[-HISTORY_CELLS:]
    for _ in range(HISTORY_CELLS - len(recent)):
        cells.append('<span class="cell none"></span>')
    for entry in recent:
        outcome = entry.get("outcome")
        ts = _timestamp(entry.get("finished_at"))
        when = _absolute(ts) if ts is not None else str(entry.get("finished_at") or "")
        cells.append(f'<span class="cell c-{outcome_level(outcome)}" title="{esc(outcome)} at {esc(when)}"></span>')
    return f'<div class="strip" aria-label="last results, oldest first">{"".join(cells)}</div>'


def _every(seconds: float) -> str:
    """An interval as people say it: `500 ms`, `30 s`, `5 min`, `2 h`, `90 s`."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def _check_row(check: Mapping[str, Any], now: float) -> str:
    outcome = check.get("outcome")
    level = outcome_level(outcome)
    duration = check.get("duration_s")
    took = ""
    if isinstance(duration, int | float):
        took = f"in {duration * 1000:.0f} ms" if duration < 1 else f"in {format_duration(duration)}"
    interval = check.get("interval_s")
    every = _every(float(interval)) if isinstance(interval, int | float) else "-"
    status = check.get("status_code")
    request, hint = check.get("request"), check.get("hint") or runbook_hint(outcome)
    failing = level in ("bad", "warn")
    return (
        f'<tr class="r-{level}" id="check-{esc(check.get("name"))}"><td class="nw"><span class="dot c-{level}"></span>'
        f'<b>{esc(check.get("name"))}</b><div class="sub">{esc(check.get("kind"))}{_links(check)}</div></td>'
        f'<td><span class="badge c-{level}">{esc(outcome or "not run yet")}</span>'
        f'{f"<div class=sub>HTTP {esc(status)}</div>" if status else ""}</td>'
        f'<td class="nw">{_time(check.get("finished_at"), now) if check.get("finished_at") else "-"}'
        f'<div class="sub">{esc(took)}</div></td>'
        f"<td>{esc(every)}</td><td>{_strip(check.get('history') or [])}</td>"
        f'<td class="msg">{esc(check.get("message"))}{_over_time(check.get("over_time"))}'
        f'{f"<div class=where>{esc(request)}</div>" if failing and request else ""}'
        f'{f"<div class=hint>{esc(hint)}</div>" if failing and hint else ""}</td></tr>'
    )


def _percent(value: object) -> str:
    return f"{float(value) * 100:.2f}".rstrip("0").rstrip(".") + "%" if isinstance(value, int | float) else "-"


def _over_time(over: object) -> str:
    """Availability per window, p95 over 24 h and the 30-day strip (monitor/history.py), when there is history."""
    if not isinstance(over, Mapping):
        return ""
    parts = [f"{label} {_percent((over.get(label) or {}).get('availability'))}" for label in ("1h", "24h", "7d", "30d")]
    p95 = (over.get("24h") or {}).get("p95_s")
    if isinstance(p95, int | float):
        parts.append(f"p95 {p95 * 1000:.0f} ms")
    cells = []
    for i, day in enumerate(over.get("days") or []):
        level = "none" if day is None else "c-ok" if day >= 0.999 else "c-warn" if day >= 0.99 else "c-bad"
        cells.append(f'<span class="cell {level}" title="day {i + 1} of 30: {esc(_percent(day))}"></span>')
    strip = "".join(cells)
    return (f'<div class="sub">{esc(" · ".join(parts))}</div>'
            f'<div class="strip days" aria-label="availability per day, last 30 days, oldest first">{strip}</div>')


def _links(item: Mapping[str, Any]) -> str:
    """` · runbook · dashboard` links of a check or an alert, where configured (alerts/links.py)."""
    return "".join(f' · <a href="{esc(item[key])}">{text}</a>' for key, text in
                   (("runbook_url", "runbook"), ("dashboard_url", "dashboard")) if item.get(key))


def _budgets(slos: Sequence[Mapping[str, Any]]) -> str:
    """The SLO table: objective, window, availability and the error budget left (monitor/slo.py)."""
    if not slos:
        return ""
    rows = []
    for slo in slos:
        left = slo.get("budget_left")
        level = "idle" if not isinstance(left, int | float) else "ok" if left > 0.25 else "warn" if left > 0 else "bad"
        rows.append(f'<tr class="r-{level}"><td><b>{esc(slo.get("slo"))}</b><div class="sub">'
                    f'{esc(", ".join(slo.get("checks") or []))}</div></td>'
                    f'<td>{esc(_percent(slo.get("objective")))} over {esc(slo.get("window"))}</td>'
                    f'<td>{esc(_percent(slo.get("availability")))}</td>'
                    f'<td><span class="badge c-{level}">{esc(_percent(left))} left</span></td></tr>')
    return ("<h2>Error budgets</h2><table><tr><th>SLO</th><th>objective</th><th>availability</th>"
            f"<th>budget</th></tr>{''.join(rows)}</table>")


def _held(alert: Mapping[str, Any], now: float) -> str:
    """`held (flapping) until 14:05`, `held (reason)`, or `flapping`, from keys the alert engine may supply."""
    flapping = bool(alert.get("flapping"))
    until, reason = alert.get("held_until"), alert.get("held_reason")
    if until is None and reason is None:
        return '<span class="tag">flapping</span>' if flapping else ""
    reason = reason or ("flapping" if flapping else None)
    text = "held" + (f" ({esc(reason)})" if reason else "")
    if until is not None:
        text += f" until {_time(until, now, clock=True)}"
    return f'<span class="tag">{text}</span>'


def _check_link(labels: Mapping[str, Any]) -> str:
    """A link to the alert's check's row on this page (its anchor `#check-<name>`), when it has a check."""
    check = labels.get("check")
    return f'<a href="#check-{esc(check)}">{esc(check)}</a> · ' if check else ""


def _alert_row(alert: Mapping[str, Any], now: float) -> str:
    severity = _severity(alert)
    level = _SEVERITY_LEVEL.get(severity, "idle")
    state = str(alert.get("state") or "")
    labels = alert.get("labels") or {}
    shown = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in ("alertname", "severity", "service"))
    return (
        f'<tr class="r-{level if state == "firing" else "idle"}">'
        f'<td><span class="badge c-{level}">{esc(severity)}</span></td>'
        f'<td><b>{esc(alert.get("alertname"))}</b><div class="sub">{_check_link(labels)}{esc(shown)}{_links(alert)}'
        f"</div></td>"
        f'<td>{esc(state)} {_held(alert, now)}</td>'
        f'<td>{_time(alert.get("since"), now) if alert.get("since") else "-"}</td></tr>'
    )


def render_page(doc: Mapping[str, Any], service: str, readiness: str, now: float | None = None) -> str:
    """The whole page for a /status document; `now` (epoch seconds) is when relative times are counted from."""
    now = time.time() if now is None else now
    level, line, title = summarize(doc)
    checks = doc.get("checks") or []
    failing = [c.get("name") for c in checks if outcome_level(c.get("outcome")) == "bad"]
    names = ", ".join(str(n) for n in failing[:12]) + (f" and {len(failing) - 12} more" if len(failing) > 12 else "")
    listed, beat = split_alerts(doc.get("alerts") or [])
    alerts = sorted(listed, key=lambda a: (a.get("state") != "firing", _SEVERITY_RANK.get(_severity(a), 3)))
    firing = sum(1 for a in alerts if a.get("state") == "firing")
    alerts_html = (
        f'<p class="count">{firing} firing, {len(alerts) - firing} pending</p>'
        "<table><tr><th>severity</th><th>alert</th><th>state</th><th>since</th></tr>"
        + "".join(_alert_row(a, now) for a in alerts) + "</table>"
        if alerts else '<p class="none">No alert pending or firing.</p>'
    )
    switch = doc.get("dead_mans_switch") or {}
    if beat or switch.get("state") == "being sent":
        since = beat[0].get("since") if beat else switch.get("since")
        alerts_html = (f'<p class="beat">dead man\'s switch: being sent'
                       f'{f" since {_time(since, now)}" if since else ""} (MonitorWatchdog, always on while '
                       "pam-monitor runs: Alertmanager should page when it stops)</p>" + alerts_html)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)} - pam-monitor: {esc(service)}</title>
<style>{_CSS}</style></head>
<body data-now="{esc(iso(now))}">
<header class="summary c-{level}" id="summary"><div class="line">{esc(line)}</div>
{f'<div class="sub">failing: {esc(names)}</div>' if failing else ""}</header>
<main>
<p class="meta">pam-monitor: <b>{esc(service)}</b> · readiness: {esc(readiness)} · version {esc(__version__)} ·
as of <time datetime="{esc(iso(now))}">{esc(_absolute(now))}</time>
(refreshes every 5 s) · <a href="/status">/status</a> · <a href="/metrics">/metrics</a> ·
<a href="/healthz">/healthz</a> · <a href="/readyz">/readyz</a></p>
<h2>Alerts</h2>
{alerts_html}
<h2>Checks</h2>
<table><tr><th>check</th><th>outcome</th><th>last run</th><th>every</th>
<th>last {HISTORY_CELLS} results (oldest first)</th><th>message</th></tr>
{"".join(_check_row(c, now) for c in checks)}</table>
{_budgets(doc.get("slos") or [])}
</main>
<script>{_JS}</script>
</body></html>
"""


_CSS = (
    "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1f2328;background:#fff}"
    "main{padding:0 24px 24px}h2{font-size:16px;margin:20px 0 8px}"
    ".summary{padding:16px 24px;color:#fff}.summary .line{font-size:22px;font-weight:600}"
    ".summary .sub{color:#fff;opacity:.92;font-size:13px}"
    ".meta{color:#59636e;margin:10px 0 0;font-size:13px}a{color:#0969da}"
    "table{border-collapse:collapse;width:100%}"
    "th,td{padding:6px 10px;text-align:left;vertical-align:top;border-bottom:1px solid #d1d9e0}"
    "th{font-size:12px;font-weight:600;color:#59636e}"
    ".nw{white-space:nowrap}.sub{color:#59636e;font-size:12px}.none{color:#59636e}"
    ".msg{max-width:42em;overflow-wrap:anywhere}.where{font-family:ui-monospace,monospace;font-size:12px;"
    "margin-top:4px}.hint{color:#59636e;font-size:12px;margin-top:2px}.beat,.count{color:#59636e;margin:4px 0}"
    ".badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-size:12px;font-weight:600}"
    ".dot{display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:6px}"
    ".strip{display:flex;gap:2px}.cell{display:inline-block;width:8px;height:18px;border-radius:2px}"
    ".cell.none{background:#eef1f4}.days .cell{width:5px;height:10px}"
    ".tag{display:inline-block;margin-left:4px;padding:0 6px;border:1px solid #d1d9e0;border-radius:6px;"
    "font-size:12px;color:#59636e}"
    + "".join(f".c-{name}{{background:{colour}}}" for name, colour in PALETTE.items())
    + "".join(f"tr.r-{name} td:first-child{{box-shadow:inset 3px 0 {colour}}}" for name, colour in PALETTE.items())
)

# Relative times in the browser, counted on the server's clock (data-now) so a skewed desktop clock does not lie.
_JS = """(function(){
var skew=Date.now()-Date.parse(document.body.getAttribute('data-now'));
function rel(ms){var s=Math.round(ms/1000),a=Math.abs(s),t;if(a<5)return 'just now';
if(a<60)t=a+' s';else if(a<3600)t=Math.round(a/60)+' min';else if(a<86400)t=Math.round(a/3600)+' h';
else t=Math.round(a/86400)+' d';return s>=0?t+' ago':'in '+t;}
function tick(){var now=Date.now()-skew;document.querySelectorAll('time.rel').forEach(function(e){
e.textContent=rel(now-Date.parse(e.getAttribute('datetime')));});}
document.querySelectorAll('time.clock').forEach(function(e){var d=new Date(e.getAttribute('datetime'));
e.textContent=d.toLocaleTimeString([],{hour:'2-digit',minute:'2-digit'});});
tick();setInterval(tick,1000);})();"""
