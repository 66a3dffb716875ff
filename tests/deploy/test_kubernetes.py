"""deploy/kubernetes: the manifests parse, the sidecar's config loads as the container would load it, its probes
and scrape point at the daemon's real endpoints on its listen port, secrets come from the Secret, the pod is
locked down, and the real daemon run that way answers the kubelet and Prometheus."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from monitor.core.config import Config
from monitor.core.secrets import Redactor, collect_secrets
from tests.deploy.helpers import (
    arg_after,
    by_kind,
    dashboard_exprs,
    installed_binary,
    k8s_docs,
    listen_port,
    load_as_deployed,
    metric_families,
    metric_names,
    monitor_container,
    pod_spec,
    recorded_names,
    rules,
)
from tests.support.poll import until
from tests.support.servers import free_port, serve_asgi

TARGET_RSS_MB = 60  # the memory goal for one daemon; the request must cover it


def mebibytes(quantity: str) -> float:
    """A Kubernetes memory quantity in MiB."""
    units = {"Ki": 1 / 1024, "Mi": 1.0, "Gi": 1024.0, "K": 1e3 / 2**20, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]i?)?", quantity)
    assert match is not None, quantity
    return float(match.group(1)) * units.get(match.group(2) or "", 1 / 2**20)


def container_environ() -> dict[str, str]:
    """The pam-monitor container's environment, secretKeyRefs resolved from the Secret in the same file."""
    secret = by_kind("Secret")
    environ: dict[str, str] = {}
    for var in monitor_container()["env"]:
        if "value" in var:
            environ[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            assert secret["metadata"]["name"] == ref["name"]
            environ[var["name"]] = secret["stringData"][ref["key"]]
    return environ


def sidecar_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    """The ConfigMap's config.yaml loaded by the real loader with the container's env and args."""
    path = tmp_path / "config.yaml"
    path.write_text(by_kind("ConfigMap")["data"]["config.yaml"])
    return load_as_deployed(path, arg_after(monitor_container()["args"], "--listen"), container_environ(),
                            monkeypatch)


def _named_port(container: dict[str, Any], port: int | str) -> int:
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    return int(ports.get(str(port), port))


def test_kubernetes_files_parse_into_named_objects() -> None:
    """sidecar.yaml and servicemonitor.yaml parse; every document has apiVersion, kind and a name; the objects a
    sidecar needs are there."""
    docs = k8s_docs() + k8s_docs("servicemonitor.yaml")
    for doc in docs:
        assert doc["apiVersion"], doc
        assert doc["metadata"]["name"], doc
    assert {"ConfigMap", "Secret", "Deployment", "Service", "ServiceMonitor"} <= {d["kind"] for d in docs}


def test_sidecar_probes_and_scrape_hit_the_daemons_endpoints_on_its_listen_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Liveness is /healthz and the scrape annotation /metrics, both on the port the loaded config listens on (which
    the container declares). The monitor has no readinessProbe and no startupProbe: a pod is Ready only when all
    its containers are, so either would let the monitor (a 503 from /readyz while state writes fail, a slow
    start) take the backend's pods out of its Service."""
    container = monitor_container()
    port = listen_port(sidecar_config(tmp_path, monkeypatch).listen)
    assert port in {p["containerPort"] for p in container["ports"]}
    assert "/healthz" == container["livenessProbe"]["httpGet"]["path"]
    assert port == _named_port(container, container["livenessProbe"]["httpGet"]["port"])
    assert set() == {"readinessProbe", "startupProbe"} & set(container)
    annotations = by_kind("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert ("true", str(port), "/metrics") == (
        annotations["prometheus.io/scrape"], annotations["prometheus.io/port"], annotations["prometheus.io/path"])


def test_sidecar_config_validates_and_fits_the_pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ConfigMap config loads; state_dir is a writable emptyDir; the config file is the mounted ConfigMap;
    the grace period exceeds shutdown_timeout, so the kubelet never kills a drain."""
    config = sidecar_config(tmp_path, monkeypatch)
    pod = pod_spec()
    container = monitor_container()
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    state = mounts[str(config.state_dir)]
    assert "emptyDir" in volumes[state["name"]]
    assert not state.get("readOnly", False)
    config_mount = mounts[str(Path(arg_after(container["args"], "--config")).parent)]
    assert by_kind("ConfigMap")["metadata"]["name"] == volumes[config_mount["name"]]["configMap"]["name"]
    assert pod["terminationGracePeriodSeconds"] > config.shutdown_timeout


def test_sidecar_secrets_come_from_the_secret_and_every_config_variable_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each ${VAR} of the config has an env entry, and no secret the loaded config holds is written inline in the
    Deployment: those come from secretKeyRef."""
    env = {v["name"]: v for v in monitor_container()["env"]}
    referenced = set(re.findall(r"\$\{([A-Za-z_]\w*)", by_kind("ConfigMap")["data"]["config.yaml"]))
    assert referenced
    assert set() == referenced - set(env)
    redact = Redactor(collect_secrets(sidecar_config(tmp_path, monkeypatch)))
    inline = [name for name, var in env.items() if "value" in var and redact(var["value"]) != var["value"]]
    assert [] == inline


def test_sidecar_runs_locked_down_with_memory_for_the_daemon() -> None:
    """Non-root, read-only root filesystem, no privilege escalation, no capabilities; the memory request covers the
    daemon's target RSS and the limit leaves headroom above it."""
    pod = pod_spec()
    container = monitor_container()
    security = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert ["ALL"] == security["capabilities"]["drop"]
    requests, limits = container["resources"]["requests"], container["resources"]["limits"]
    assert mebibytes(requests["memory"]) >= TARGET_RSS_MB * 1e6 / 2**20
    assert mebibytes(limits["memory"]) >= 2 * mebibytes(requests["memory"])


def test_metrics_service_and_servicemonitor_select_the_monitor_port() -> None:
    """The pam-monitor Service forwards to the container's listen port; the ServiceMonitor selects that Service
    (not the backend's) and scrapes a port the Service has."""
    container = monitor_container()
    service = by_kind("Service", "pam-monitor")
    listen = listen_port(arg_after(container["args"], "--listen"))
    assert [listen] == [_named_port(container, p["targetPort"]) for p in service["spec"]["ports"]]
    pod_labels = by_kind("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (monitor,) = k8s_docs("servicemonitor.yaml")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert not selector.items() <= by_kind("Service", "pam-backend")["metadata"]["labels"].items()
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    assert [] == [e["port"] for e in monitor["spec"]["endpoints"] if e["port"] not in service_ports]


@pytest.mark.e2e
def test_daemon_runs_the_sidecar_config_and_answers_the_kubelet_and_prometheus(tmp_path: Path) -> None:
    """`pam-monitor run` with the ConfigMap config, the container's args and env (localhost only, no sinks):

    the liveness probe's path turns 200, /metrics carries every family the rules and the dashboard read, and
    SIGTERM ends it with exit 0 within terminationGracePeriodSeconds.
    """

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "healthy"})

    container = monitor_container()
    config = yaml.safe_load(by_kind("ConfigMap")["data"]["config.yaml"])
    closed = free_port()
    with serve_asgi(Starlette(routes=[Route("/health", health)])) as backend:
        # Only what would leave 127.0.0.1 changes: the backend (same pod: 127.0.0.1 too), state, sinks.
        config["targets"]["backend"]["base_url"] = backend
        config["state_dir"] = str(tmp_path / "state")
        config["alerts"]["sinks"] = []
        config["defaults"] |= {"interval": "2s", "timeout": "1s"}  # a round in seconds, not 30 s
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PAM_MONITOR_")}
        env |= {v["name"]: v["value"] for v in container["env"] if "value" in v}
        env |= {"PAM_MONITOR_LISTEN": f"127.0.0.1:{port}",
                "DATABASE_URL": f"postgresql://pam_monitor:x@127.0.0.1:{closed}/postgres",
                "PAGERDUTY_ROUTING_KEY": "unused"}
        args = list(container["args"])
        args[args.index("--config") + 1] = str(path)
        args[args.index("--listen") + 1] = f"127.0.0.1:{port}"
        proc = subprocess.Popen([installed_binary(), *args], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:

                def kubelet_sees_alive() -> bool:
                    if proc.poll() is not None:
                        raise AssertionError(proc.stderr.read().decode() if proc.stderr else "daemon exited")
                    return 200 == client.get(container["livenessProbe"]["httpGet"]["path"]).status_code

                until(kubelet_sees_alive, timeout=30, what="liveness 200",
                      ignore=(httpx.TransportError,))
                body = client.get("/metrics").text
            read = {n for r in rules() for n in metric_names(r["expr"])}
            read |= {n for expr in dashboard_exprs() for n in metric_names(expr)}
            assert set() == (read - recorded_names()) - metric_families(body)
            proc.send_signal(signal.SIGTERM)
            assert 0 == proc.wait(timeout=pod_spec()["terminationGracePeriodSeconds"])
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            if proc.stderr:
                proc.stderr.close()
