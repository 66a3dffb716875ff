"""End to end on one machine, the StatefulSet's shape: 3 shards x 2 replicas of `pam-monitor run --shards N` (pod
names pam-monitor-<k>, each its own state_dir and port), one real Alertmanager whose webhook receiver records
every notification, one target with 9 checks. A fault pages once; kill -9 of a replica loses and repeats nothing;
N goes 3 -> 4 -> 3 in rolling-update order while the alert fires: it stays one alert, with its first startsAt, on
the right shard's pods; the fix resolves it once."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from monitor.core.config import shard_of
from tests.support.alertmanager import BINARY, Alertmanager
from tests.support.daemon import DaemonProcess, command
from tests.support.poll import until
from tests.support.servers import free_port, serve_asgi

pytestmark = pytest.mark.e2e

NAMES = [f"endpoint_{i}" for i in range(9)]
ALERT = "EndpointDown"
REPLICAS = 2
RESEND_S = 4.0  # Alertmanager holds a firing alert 4 x this after the last post: longer than a rollout here
WAIT_S = 30.0  # bound of every single wait (a 2-core machine shared with other suites)


class Target:
    """One backend with an endpoint per check: 200 until the check's name is in `broken`, then 500."""

    def __init__(self) -> None:
        self.broken: set[str] = set()

    async def endpoint(self, request: Request) -> Response:
        if request.path_params["name"] in self.broken:
            return JSONResponse({"detail": "boom"}, status_code=500)
        return JSONResponse({"status": "healthy"})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/e/{name}", self.endpoint)])


class Receiver:
    """Alertmanager's webhook receiver: every notification's (status, alertname, check), in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []
        self.lock = threading.Lock()

    async def hook(self, request: Request) -> Response:
        body = await request.json()
        with self.lock:
            for alert in body["alerts"]:
                labels = alert["labels"]
                self.seen.append((alert["status"], labels.get("alertname", ""), labels.get("check", "")))
        return JSONResponse({})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/am", self.hook, methods=["POST"])])

    def of(self, check: str) -> list[str]:
        """The statuses Alertmanager notified for the check's EndpointDown, in order."""
        with self.lock:
            return [status for status, name, c in self.seen if name == ALERT and c == check]


class Pod:
    """One StatefulSet pod: pam-monitor-<ordinal>, its own port and state volume, kept across restarts."""

    def __init__(self, ordinal: int, config: Path, workdir: Path) -> None:
        self.name = f"pam-monitor-{ordinal}"
        self.config = config
        self.port = free_port()
        self.state = workdir / "volumes" / self.name
        self.log = workdir / f"{self.name}.log"
        self.shards = 0
        self.daemon: DaemonProcess | None = None

    def start(self, shards: int) -> None:
        """Start `pam-monitor run --shards N` as the pod would (POD_NAME from metadata.name)."""
        self.shards = shards
        env = {k: v for k, v in os.environ.items() if not k.startswith("PAM_MONITOR_")}
        env |= {"POD_NAME": self.name, "PAM_MONITOR_STATE_DIR": str(self.state), "PYTHONUNBUFFERED": "1"}
        with self.log.open("ab") as out:
            proc = subprocess.Popen(
                command("run", "--config", str(self.config), "--shards", str(shards),
                        "--listen", f"127.0.0.1:{self.port}"),
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(self.log.parent),
            )
        self.daemon = DaemonProcess(proc, f"http://127.0.0.1:{self.port}", self.log)

    def ready(self) -> None:
        """Wait as the kubelet would: /readyz 200 (every check of its shard has run once)."""
        self.up().wait_for(lambda: self.up().get("/readyz").status_code == 200, timeout=WAIT_S,
                           what=f"{self.name} ready")

    def up(self) -> DaemonProcess:
        assert self.daemon is not None, f"{self.name} is not running"
        return self.daemon

    def stop(self) -> None:
        """SIGTERM, as a rolling update or a scale-down does."""
        if self.daemon is not None:
            assert 0 == self.daemon.stop(), self.log.read_text()[-2000:]
            self.daemon = None

    def kill9(self) -> None:
        """SIGKILL: no drain, no flush."""
        daemon = self.up()
        daemon.signal(signal.SIGKILL)
        daemon.proc.wait(timeout=10)
        self.daemon = None

    def listed(self) -> set[str]:
        """The checks its /status lists."""
        return {c["name"] for c in self.up().status()["checks"]}

    def ran(self) -> set[str]:
        """The checks it has run (an outcome in /status)."""
        return {c["name"] for c in self.up().status()["checks"] if c["outcome"] is not None}

    def firing(self) -> set[str]:
        """The checks whose EndpointDown it lists as firing in /status."""
        return {a["labels"]["check"] for a in self.up().status()["alerts"]
                if a["alertname"] == ALERT and a["state"] == "firing"}

    def handed_over(self) -> set[str]:
        """The checks it logged `alert.handed_over` for."""
        return {line["check"] for line in self.up().logs() if line.get("event") == "alert.handed_over"}


def owners_of(check: str, pods: list[Pod], shards: int) -> list[Pod]:
    """The pods that run the check with N shards: ordinals R*s .. R*s+R-1 for its shard s."""
    s = shard_of(check, shards)
    return pods[REPLICAS * s:REPLICAS * (s + 1)]


def assert_each_check_runs_on_exactly_its_two_pods(pods: list[Pod], shards: int) -> None:
    """Every pod lists exactly its shard's checks and has run them; every check runs on two pods, its shard's."""
    running = pods[:REPLICAS * shards]
    for pod in running:
        pod.ready()
    ran: dict[str, list[str]] = {name: [] for name in NAMES}
    for pod in running:
        mine = {n for n in NAMES if pod in owners_of(n, pods, shards)}
        assert (mine, mine) == (pod.listed(), pod.ran()), pod.name
        for name in mine:
            ran[name].append(pod.name)
    assert {n: [p.name for p in owners_of(n, pods, shards)] for n in NAMES} == ran


def endpoint_down(am: Alertmanager) -> list[dict[str, Any]]:
    """Alertmanager's active EndpointDown alerts."""
    return [a for a in am.alerts_named(ALERT) if a["status"]["state"] == "active"]


def at(stamp: str) -> float:
    """An Alertmanager timestamp in Unix seconds."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def roll(pods: list[Pod], shards: int) -> None:
    """A StatefulSet rolling update: highest ordinal first, one pod at a time, each Ready before the next."""
    for pod in reversed(pods):
        pod.stop()
        pod.start(shards)
        pod.ready()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[Target, Receiver, Alertmanager, list[Pod]]]:
    """The target, the receiver, Alertmanager routing to it, and 8 pods (none started); all stopped after."""
    if not Path(BINARY).exists():
        pytest.skip(f"{BINARY} is not installed (Debian package prometheus-alertmanager)")
    target, receiver = Target(), Receiver()
    with serve_asgi(target.app()) as target_url, serve_asgi(receiver.app()) as receiver_url:
        am = Alertmanager(tmp_path / "alertmanager", config=f"""\
route:
  receiver: hook
  group_by: [alertname, check]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - {{url: "{receiver_url}/am", send_resolved: true}}
""")
        am.start()
        config = tmp_path / "pam-monitor.yaml"
        config.write_text(f"""\
service: pam-backend
shutdown_timeout: 2s
defaults: {{interval: 1s, timeout: 500ms, failure_threshold: 2, success_threshold: 2}}
targets:
  backend: {{base_url: "{target_url}"}}
checks:
""" + "".join(f"  - {{name: {n}, kind: http, target: backend, path: /e/{n}}}\n" for n in NAMES) + f"""\
alerts:
  resend_interval: {RESEND_S}s
  confirm_delay: 200ms
  sinks:
    - {{kind: alertmanager, url: "{am.url}"}}
""", encoding="utf-8")
        pods = [Pod(k, config, tmp_path) for k in range(4 * REPLICAS)]
        try:
            yield target, receiver, am, pods
        finally:
            for pod in pods:
                if pod.daemon is not None:
                    pod.daemon.stop()
            am.stop()


def test_three_shards_two_replicas_one_alertmanager(rig: tuple[Target, Receiver, Alertmanager, list[Pod]]) -> None:
    """The whole life of one fault across replicas, a kill -9 and a reshard 3 -> 4 -> 3 (see the module docstring).

    Alertmanager's receiver must see exactly one `firing` and then one `resolved` for the broken check, and
    nothing for any other check, although 2 pods post it at any time, one is killed, and it changes owner twice.
    """
    target, receiver, am, pods = rig
    moved = [n for n in NAMES if shard_of(n, 3) != shard_of(n, 4)]
    assert moved, "one of the names must move from N=3 to N=4"
    assert {0, 1, 2} == {shard_of(n, 3) for n in NAMES}, "the names must cover every shard"
    broken = moved[0]

    # 3 shards x 2 replicas: each check on exactly its shard's two pods.
    for pod in pods[:6]:
        pod.start(3)
    assert_each_check_runs_on_exactly_its_two_pods(pods, 3)

    # One fault: one alert in Alertmanager, listed by both replicas of its shard and by no other pod.
    target.broken.add(broken)
    (alert,) = until(lambda: endpoint_down(am), timeout=WAIT_S, what="EndpointDown in Alertmanager")
    assert broken == alert["labels"]["check"]
    assert set() == {"pod", "instance", "shard", "replica"} & set(alert["labels"])
    first_start = alert["startsAt"]
    owners = owners_of(broken, pods, 3)
    until(lambda: all(broken in p.firing() for p in owners), timeout=WAIT_S, what="both replicas firing")
    assert [set()] * 4 == [p.firing() for p in pods[:6] if p not in owners]
    until(lambda: receiver.of(broken) == ["firing"], timeout=WAIT_S, what="Alertmanager's firing notification")

    # kill -9 one replica during the fault: the other keeps renewing the alert; the killed one comes back on its
    # own state and neither repeats the page nor loses the alert.
    victim = owners[0]
    killed_at = time.time()
    victim.kill9()
    until(lambda: [a for a in endpoint_down(am) if at(a["updatedAt"]) > killed_at], timeout=WAIT_S,
          what="the surviving replica renewing the alert")
    victim.start(3)
    victim.ready()
    assert broken in victim.firing()  # from its state_dir: nothing lost
    assert [first_start] == [a["startsAt"] for a in endpoint_down(am)]

    # N 3 -> 4: the StatefulSet creates pods 6 and 7, then rolls 5..0. The check moves to shard 3: its old pods
    # hand the alert over (no resolve), the new ones fire it under the same labels: still one alert.
    for pod in pods[6:]:
        pod.start(4)
    roll(pods[:6], 4)
    assert_each_check_runs_on_exactly_its_two_pods(pods, 4)
    new_owners = owners_of(broken, pods, 4)
    until(lambda: all(broken in p.firing() for p in new_owners), timeout=WAIT_S, what="the new shard firing")
    assert [set()] * 6 == [p.firing() for p in pods if p not in new_owners]
    assert [{broken}] * 2 == [p.handed_over() & {broken} for p in owners]
    assert [first_start] == [a["startsAt"] for a in endpoint_down(am)]

    # N 4 -> 3: pods 7 and 6 go first (scale-down), then 5..0 roll back. The old owners take it back.
    for pod in reversed(pods[6:]):
        pod.stop()
    roll(pods[:6], 3)
    assert_each_check_runs_on_exactly_its_two_pods(pods, 3)
    until(lambda: all(broken in p.firing() for p in owners), timeout=WAIT_S, what="the first shard firing again")
    assert [set()] * 4 == [p.firing() for p in pods[:6] if p not in owners]
    assert [first_start] == [a["startsAt"] for a in endpoint_down(am)]

    # The fix: resolved once. Over the whole test Alertmanager notified this check exactly twice, and no other.
    target.broken.clear()
    until(lambda: not endpoint_down(am), timeout=WAIT_S, what="the alert resolved in Alertmanager")
    until(lambda: receiver.of(broken) == ["firing", "resolved"], timeout=WAIT_S, what="one resolved notification")
    until(lambda: not any(p.firing() for p in owners), timeout=WAIT_S, what="both replicas resolved")
    assert [set()] * 6 == [p.firing() for p in pods[:6]]
    assert [] == [c for _, name, c in receiver.seen if name == ALERT and c != broken]
    with httpx.Client(timeout=5) as client:  # Alertmanager kept the replicas' copies as one alert all along
        assert [] == [a for a in client.get(f"{am.url}/api/v2/alerts").json()
                      if a["labels"].get("alertname") == ALERT and a["status"]["state"] == "active"]
