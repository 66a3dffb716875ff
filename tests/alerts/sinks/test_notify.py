"""`pam-monitor notify --test` (the real CLI in a subprocess) against real local sinks: a webhook recorder, a real
Alertmanager, PagerDuty and Slack stand-ins, a sink answering 400, a refused port. It says per sink what it
answered, never a URL or a secret, and exits 0 / 1 / 2."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerts.sinks.notify import CLEARS_AFTER, build_test_notification
from tests.support.alerting import Recorder, make_config
from tests.support.alertmanager import Alertmanager
from tests.support.daemon import command
from tests.support.servers import free_port, serve_asgi

pytestmark = pytest.mark.process  # runs the CLI, the daemon or a stand-in as a process

SECRET = "s3cret-token-in-the-path"
HEADER_SECRET = "Bearer header-secret-value"
SUMMARY = "Test notification from pam-monitor (service pam-backend): if you see this, the {} sink works"


def write(tmp_path: Path, sinks: list[dict[str, Any]]) -> Path:
    """A valid config file with these sinks (and an external label)."""
    path = tmp_path / "pam-monitor.yaml"
    path.write_text(yaml.safe_dump({
        "service": "pam-backend", "state_dir": str(tmp_path / "state"),
        "targets": {"backend": {"base_url": "http://127.0.0.1:1"}},
        "checks": [{"name": "backend_health", "kind": "http", "target": "backend", "path": "/health"}],
        "alerts": {"external_labels": {"env": "test"}, "sinks": sinks},
    }), encoding="utf-8")
    return path


def notify(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run `pam-monitor notify --test --config F ...`."""
    return subprocess.run(command("notify", "--test", "--config", str(config), *extra), capture_output=True,
                          text=True, timeout=60)


def parse(stamp: str) -> float:
    """An RFC 3339 UTC time as epoch seconds."""
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_every_sink_kind_accepts_and_gets_a_marked_test(recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """Webhook, Slack and PagerDuty stand-ins on a real server: each accepts; each body is the marked test
    (PamMonitorTest, severity none, test="true", the summary naming the sink); exit 0, one line per sink."""
    rec, url = recorder
    config = write(tmp_path, [
        {"kind": "webhook", "name": "hook", "url": f"{url}/hook/{SECRET}", "headers": {"Authorization": HEADER_SECRET}},
        {"kind": "slack", "url": f"{url}/slack/{SECRET}"},
        {"kind": "pagerduty", "routing_key": SECRET, "url": f"{url}/v2/enqueue"},
    ])
    done = notify(config)
    host = url.removeprefix("http://")
    assert (0, [f"hook ({host}): accepted (HTTP 200)", f"slack ({host}): accepted (HTTP 200)",
                f"pagerduty ({host}): accepted (HTTP 202)", "3 of 3 accepted the test notification"]) \
        == (done.returncode, done.stdout.splitlines())
    hook = rec.bodies(f"/hook/{SECRET}")[0]
    alert = hook["alerts"][0]
    assert ({"env": "test", "alertname": "PamMonitorTest", "severity": "none", "service": "pam-backend",
             "test": "true"}, SUMMARY.format("hook"), "firing") == (alert["labels"], alert["annotations"]["summary"],
                                                                   hook["status"])
    assert CLEARS_AFTER == parse(alert["endsAt"]) - parse(alert["startsAt"])
    assert SUMMARY.format("slack") in rec.bodies(f"/slack/{SECRET}")[0]["text"]
    event = rec.bodies("/v2/enqueue")[0]
    assert ("trigger", "info", "PamMonitorTest") == (event["event_action"], event["payload"]["severity"],
                                                     event["payload"]["class"])
    assert HEADER_SECRET == next(r for r in rec.requests if r["path"] == f"/hook/{SECRET}")["headers"]["authorization"]
    assert SECRET not in done.stdout + done.stderr
    assert "header-secret" not in done.stdout + done.stderr


def test_a_real_alertmanager_holds_the_test_until_it_clears(alertmanager: Alertmanager, tmp_path: Path) -> None:
    """A real Alertmanager accepts it and lists PamMonitorTest{test="true"} with endsAt five minutes after startsAt,
    so it clears itself."""
    done = notify(write(tmp_path, [{"kind": "alertmanager", "url": alertmanager.url}]))
    assert (0, f"alertmanager (127.0.0.1:{alertmanager.port}): accepted (HTTP 200)") \
        == (done.returncode, done.stdout.splitlines()[0])
    [held] = alertmanager.alerts_named("PamMonitorTest")
    assert ("true", "none", "active") == (held["labels"]["test"], held["labels"]["severity"], held["status"]["state"])
    assert CLEARS_AFTER == pytest.approx(parse(held["endsAt"]) - parse(held["startsAt"]), abs=0.01)


def test_rejected_and_unreachable_sinks_fail_with_their_answer(tmp_path: Path) -> None:
    """A sink answering 400 is `rejected (HTTP 400)`, a 503 `rejected (HTTP 503)` (one the daemon would retry), a
    refused port `unreachable (ConnectError)`; a good one beside them still accepts; exit 1; no URL path or secret
    in the output."""
    bad, busy, good = Recorder(script=[400]), Recorder(script=[503]), Recorder()
    refused = free_port()
    with serve_asgi(bad.app()) as bad_url, serve_asgi(busy.app()) as busy_url, serve_asgi(good.app()) as good_url:
        config = write(tmp_path, [
            {"kind": "webhook", "name": "bad", "url": f"{bad_url}/hook/{SECRET}"},
            {"kind": "webhook", "name": "busy", "url": f"{busy_url}/hook/{SECRET}"},
            {"kind": "webhook", "name": "gone", "url": f"http://127.0.0.1:{refused}/hook/{SECRET}"},
            {"kind": "webhook", "name": "good", "url": f"{good_url}/hook"},
        ])
        done = notify(config)
    lines = done.stdout.splitlines()
    assert 1 == done.returncode, done.stderr
    assert [f"bad ({bad_url.removeprefix('http://')}): rejected (HTTP 400): a configuration error (URL, key or "
            "payload); the daemon would not retry it",
            f"busy ({busy_url.removeprefix('http://')}): rejected (HTTP 503): the sink is failing or busy; the daemon "
            "would retry it",
            f"gone (127.0.0.1:{refused}): unreachable (ConnectError): check the URL, the network and that the sink is "
            "up",
            f"good ({good_url.removeprefix('http://')}): accepted (HTTP 200)",
            "1 of 4 accepted the test notification"] == lines
    assert (1, 1, 1) == (len(bad.requests), len(busy.requests), len(good.requests))
    assert SECRET not in done.stdout + done.stderr


def test_sink_picks_one_sink(recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """--sink NAME tests that sink alone (the broken one beside it is not tried): exit 0; --sink with a kind works
    for an unnamed sink."""
    rec, url = recorder
    config = write(tmp_path, [{"kind": "webhook", "name": "gone", "url": f"http://127.0.0.1:{free_port()}/x"},
                              {"kind": "slack", "url": f"{url}/slack"}])
    done = notify(config, "--sink", "slack")
    assert (0, ["slack (" + url.removeprefix("http://") + "): accepted (HTTP 200)",
                "1 of 1 accepted the test notification"]) == (done.returncode, done.stdout.splitlines())
    assert ["/slack"] == rec.paths()


@pytest.mark.parametrize(("sinks", "extra", "message"), [
    ([{"kind": "slack", "url": "http://127.0.0.1:1/slack"}], ["--sink", "pager"],
     "pam-monitor: --sink 'pager' names no configured sink (configured: slack)"),
    ([], [], "pam-monitor: no sink in alerts.sinks: nothing to test"),
    ([{"kind": "webhook"}], [], "pam-monitor: 1 problem(s) in the configuration; nothing was started"),
], ids=["unknown_sink", "no_sinks", "bad_config"])
def test_usage_and_config_errors_exit_two(tmp_path: Path, sinks: list[dict[str, Any]], extra: list[str],
                                          message: str) -> None:
    """An unknown --sink, no sink at all and a bad config: exit 2, one closing line on stderr, nothing sent."""
    done = notify(write(tmp_path, sinks), *extra)
    assert (2, "", message) == (done.returncode, done.stdout, done.stderr.splitlines()[-1])


def test_notify_needs_test(tmp_path: Path) -> None:
    """`notify` without --test is a usage error (exit 2) that says --test is required."""
    done = subprocess.run(command("notify", "--config", str(write(tmp_path, []))), capture_output=True, text=True,
                          timeout=60)
    assert (2, True) == (done.returncode, "the following arguments are required: --test" in done.stderr)


def test_the_test_notification_carries_the_external_labels() -> None:
    """The notification itself: external labels (as label names), then the test's own labels, ending after
    CLEARS_AFTER."""
    config = make_config(alerts={"external_labels": {"env": "prod", "team-x": "core"}})
    note = build_test_notification(config, "oncall", 1000.0)
    assert ({"env": "prod", "team_x": "core", "alertname": "PamMonitorTest", "severity": "none",
             "service": "pam-backend", "test": "true"}, SUMMARY.format("oncall"), 1000.0 + CLEARS_AFTER) \
        == (dict(note.labels), note.annotations["summary"], note.ends_at)
