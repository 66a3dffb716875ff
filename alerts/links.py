"""The links an alert carries (annotations `runbook_url`, `dashboard_url`, `status_url`), from the config's
`external_url` and `runbook_url` / `dashboard_url` templates (monitor/core/config/links.py).

`runbook_url` is the check's own template, else its target's, else the top-level one; `dashboard_url` the check's
or the top-level one; `status_url` is the check's row on the status page (`<external_url>/#check-<name>`). Every
sink shows them: Alertmanager as annotations (and `generatorURL`), PagerDuty as `links` and `client_url`, Slack in
the message, the webhook as annotations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from alerts.model import Observation, Signal
from monitor.core.config import Config
from monitor.core.config.links import check_anchor, fill

LINK_ANNOTATIONS = ("runbook_url", "dashboard_url", "status_url")


def status_base(config: Config) -> str:
    """Where the status page is reached, ending in `/`: `external_url`, else `http://<listen>/`."""
    base = config.external_url or f"http://{config.listen}/"
    return base if base.endswith("/") else base + "/"


def status_url(config: Config, check: str) -> str:
    """The check's row on the status page."""
    return f"{status_base(config)}#{quote(check_anchor(check), safe='')}"


def links(config: Config, check: Any, alertname: str) -> dict[str, str]:
    """The link annotations of one alert of one check (only those configured, and always status_url)."""
    target = str(check.target or "")
    target_model = config.targets.get(target)
    runbook = check.runbook_url or (target_model.runbook_url if target_model is not None else None) \
        or config.runbook_url
    dashboard = check.dashboard_url or config.dashboard_url
    out = {}
    if runbook:
        out["runbook_url"] = fill(runbook, check=check.name, target=target, alertname=alertname)
    if dashboard:
        out["dashboard_url"] = fill(dashboard, check=check.name, target=target, alertname=alertname)
    out["status_url"] = status_url(config, check.name)
    return out


def with_links(config: Config, check: Any, observations: list[Observation]) -> list[Observation]:
    """The observations, each BAD one with its links added to its annotations (GOOD ones carry none)."""
    return [o._replace(annotations={**o.annotations, **links(config, check, o.alertname)})
            if o.signal is Signal.BAD else o for o in observations]


def check_links(config: Config) -> Mapping[str, dict[str, str]]:
    """Per enabled check, its links for /status and the page. A template that names `{alertname}` belongs to an
    alert, not a check: it is left out here (the page links it from the alert's own row)."""
    out = {}
    for c in config.checks:
        if not c.enabled:
            continue
        found = links(config, c, "")
        target = config.targets.get(str(c.target or ""))
        runbook = c.runbook_url or (target.runbook_url if target is not None else None) or config.runbook_url
        if runbook and "{alertname}" in runbook:
            found.pop("runbook_url", None)
        if "{alertname}" in (c.dashboard_url or config.dashboard_url or ""):
            found.pop("dashboard_url", None)
        out[c.name] = found
    return out
