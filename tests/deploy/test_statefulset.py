"""deploy/kubernetes/statefulset.yaml: 2 x N pods whose ordinals give every shard exactly two replicas, each pod its
own state volume at state_dir, probes on the daemon's endpoints, locked down like the sidecar, no pod label on
alerts, a PodDisruptionBudget of one pod, and a headless Service the ServiceMonitor scrapes."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.core.config import Config, shard_from_ordinal, shard_of
from tests.deploy.helpers import arg_after, installed_binary, k8s_docs, listen_port, load_as_deployed

FILE = "statefulset.yaml"


def one(kind: str) -> dict[str, Any]:
    (doc,) = [d for d in k8s_docs(FILE) if d["kind"] == kind]
    return doc


def pod() -> dict[str, Any]:
    spec: dict[str, Any] = one("StatefulSet")["spec"]["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    (found,) = pod()["containers"]
    assert "pam-monitor" == found["name"]
    return dict(found)


def shards() -> int:
    return int(arg_after(container()["args"], "--shards"))


def replicas() -> int:
    return int(one("StatefulSet")["spec"]["replicas"])


def pod_names() -> list[str]:
    return [f"{one('StatefulSet')['metadata']['name']}-{k}" for k in range(replicas())]


def environ() -> dict[str, str]:
    """The container's environment with placeholder secrets (the Secret is created outside this file)."""
    env = {v["name"]: v["value"] for v in container()["env"] if "value" in v}
    for var in container()["env"]:
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None:
            assert "pam-monitor-secrets" == ref["name"]
            env[var["name"]] = "postgresql://u:p@db:5432/x" if "URL" in var["name"] else "k" * 32
    return env


def loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    path = tmp_path / "config.yaml"
    path.write_text(one("ConfigMap")["data"]["config.yaml"])
    return load_as_deployed(path, arg_after(container()["args"], "--listen"), environ(), monkeypatch)


def test_the_pods_ordinals_give_every_shard_exactly_two_replicas() -> None:
    """replicas = 2 x --shards; pods pam-monitor-0..2N-1 map to shards 0..N-1, two pods each; one more pod would be
    refused; POD_NAME comes from metadata.name, where --shards reads the ordinal."""
    assert replicas() == 2 * shards()
    by_shard: dict[int, list[str]] = {}
    for name in pod_names():
        index, count = shard_from_ordinal(name, shards())
        assert count == shards()
        by_shard.setdefault(index, []).append(name)
    assert dict.fromkeys(range(shards()), 2) == {s: len(p) for s, p in by_shard.items()}
    with pytest.raises(ValueError, match="scale the StatefulSet"):
        shard_from_ordinal(f"pam-monitor-{replicas()}", shards())
    (pod_name,) = [v for v in container()["env"] if v["name"] == "POD_NAME"]
    assert {"fieldRef": {"fieldPath": "metadata.name"}} == pod_name["valueFrom"]


def test_the_config_loads_and_every_check_lands_on_a_shard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ConfigMap's config loads with the container's env; with N shards no shard is empty, so no pod idles."""
    config = loaded(tmp_path, monkeypatch)
    assert {shard_of(c.name, shards()) for c in config.checks} == set(range(shards()))


def test_alert_labels_carry_nothing_that_differs_between_replicas(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """external_labels and the checks' labels hold no pod, replica, shard or hostname, and no env var sets labels:
    the two replicas of a shard post identical label sets, which Alertmanager keeps as one alert."""
    config = loaded(tmp_path, monkeypatch)
    labels = dict(config.alerts.external_labels)
    for check in config.checks:
        labels |= check.labels
    assert set() == {"pod", "replica", "shard", "hostname", "instance"} & set(labels)
    assert [] == [v for v in labels.values() if re.search(r"pam-monitor-\d", str(v))]
    assert [] == [v["name"] for v in container()["env"] if "LABELS" in v["name"].upper()]


def test_each_pod_keeps_state_on_its_own_volume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """state_dir is the mount of a volumeClaimTemplate (one PersistentVolumeClaim per pod), writable; volumes are
    kept when scaled down so scaling back up resumes the pod's alert state."""
    config = loaded(tmp_path, monkeypatch)
    spec = one("StatefulSet")["spec"]
    mounts = {m["mountPath"]: m for m in container()["volumeMounts"]}
    state = mounts[str(config.state_dir)]
    assert not state.get("readOnly", False)
    assert state["name"] in {t["metadata"]["name"] for t in spec["volumeClaimTemplates"]}
    assert state["name"] not in {v["name"] for v in pod()["volumes"]}
    assert "Retain" == spec["persistentVolumeClaimRetentionPolicy"]["whenScaled"]


def test_probes_scrape_and_service_point_at_the_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Liveness /healthz and readiness /readyz on the listen port; the headless Service (serviceName) selects the
    pods and carries the labels servicemonitor.yaml selects, on a port it scrapes."""
    config = loaded(tmp_path, monkeypatch)
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    port = listen_port(config.listen)
    assert ("/healthz", port) == (container()["livenessProbe"]["httpGet"]["path"],
                                  ports[container()["livenessProbe"]["httpGet"]["port"]])
    assert ("/readyz", port) == (container()["readinessProbe"]["httpGet"]["path"],
                                 ports[container()["readinessProbe"]["httpGet"]["port"]])
    service, statefulset = one("Service"), one("StatefulSet")
    assert ("None", service["metadata"]["name"]) == (service["spec"]["clusterIP"], statefulset["spec"]["serviceName"])
    pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert statefulset["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    (monitor,) = k8s_docs("servicemonitor.yaml")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {p["name"] for p in service["spec"]["ports"]}
    assert [port] == [ports[p["targetPort"]] for p in service["spec"]["ports"]]


def test_pods_run_locked_down_and_disruptions_take_one_pod_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Non-root, read-only root, no escalation, no capabilities, resources set, grace above shutdown_timeout; the
    PodDisruptionBudget allows one pod down, so every shard keeps a replica through a drain."""
    config = loaded(tmp_path, monkeypatch)
    security = container()["securityContext"]
    assert pod()["securityContext"]["runAsNonRoot"] is True
    assert (True, False, ["ALL"]) == (security["readOnlyRootFilesystem"], security["allowPrivilegeEscalation"],
                                      security["capabilities"]["drop"])
    assert {"cpu", "memory"} <= set(container()["resources"]["requests"])
    assert "memory" in container()["resources"]["limits"]
    assert pod()["terminationGracePeriodSeconds"] > config.shutdown_timeout
    budget = one("PodDisruptionBudget")
    assert 1 == budget["spec"]["maxUnavailable"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= (
        one("StatefulSet")["spec"]["template"]["metadata"]["labels"].items())


@pytest.mark.process
def test_the_real_cli_takes_each_pods_shard_from_its_name(tmp_path: Path) -> None:
    """`pam-monitor validate` with the container's args and each pod's POD_NAME counts that pod's shard."""
    path = tmp_path / "config.yaml"
    path.write_text(one("ConfigMap")["data"]["config.yaml"])
    names = [c["name"] for c in yaml.safe_load(one("ConfigMap")["data"]["config.yaml"])["checks"]]
    base = {k: v for k, v in os.environ.items() if not k.startswith("PAM_MONITOR_")}
    for name in pod_names():
        index = shard_from_ordinal(name, shards())[0]
        done = subprocess.run(
            [installed_binary(), "validate", "--config", str(path), "--shards", str(shards())],
            capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False,
            env=base | environ() | {"POD_NAME": name})
        count = sum(1 for n in names if shard_of(n, shards()) == index)
        assert (0, f"{path}: ok: {count} checks in shard {index}/{shards()}") == (
            done.returncode, done.stdout.split(" (")[0]), done.stderr
