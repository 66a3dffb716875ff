"""deploy/kubernetes/sidecar-patch: the strategic-merge patch adds pam-monitor to an existing backend Deployment
without touching the backend (its container, readinessProbe, volumes and pod settings stay as they were), the
monitor gets no readinessProbe or startupProbe, and the merged Deployment, the monitor's objects and the plain
snippet agree with the whole-Deployment example and validate against the Kubernetes schemas.

Debian ships no kustomize (and the suite downloads no binaries), so `strategic_merge` below applies the patch the
way the API server does for the fields the patch uses: maps merge key by key, `containers`, `volumes`, `ports`,
`env` and `volumeMounts` merge by their Kubernetes merge keys, any other list is replaced."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.helpers import DEPLOY, by_kind, k8s_docs, monitor_container, pod_spec
from tests.deploy.test_kubernetes_schemas import VERSIONS

PATCH_DIR = DEPLOY / "kubernetes" / "sidecar-patch"
# The patchMergeKey of each list the patch touches, as the Kubernetes API declares them (core/v1 types).
MERGE_KEYS = {"containers": "name", "initContainers": "name", "volumes": "name", "ports": "containerPort",
              "env": "name", "volumeMounts": "mountPath"}

SAMPLE_BACKEND = yaml.safe_load("""
apiVersion: apps/v1
kind: Deployment
metadata: {name: pam-backend, labels: {app.kubernetes.io/name: pam-backend}}
spec:
  replicas: 3
  selector: {matchLabels: {app.kubernetes.io/name: pam-backend}}
  template:
    metadata:
      labels: {app.kubernetes.io/name: pam-backend}
      annotations: {prometheus.io/scrape: "true", prometheus.io/port: "8000"}
    spec:
      securityContext: {runAsNonRoot: true, runAsUser: 1000, fsGroup: 1000}
      containers:
        - name: backend
          image: registry.example.com/pam-backend:1.0.0
          ports:
            - {name: http, containerPort: 8000}
            - {name: metrics, containerPort: 9000}
          readinessProbe:
            httpGet: {path: /health, port: http}
            periodSeconds: 10
          volumeMounts:
            - {name: cache, mountPath: /var/cache/pam}
      volumes:
        - name: cache
          emptyDir: {}
""")


def strategic_merge(original: Any, patch: Any, key: str | None = None) -> Any:
    """`patch` applied to `original` as a Kubernetes strategic-merge patch (without $patch directives)."""
    if isinstance(original, dict) and isinstance(patch, dict):
        merged = dict(original)
        for name, value in patch.items():
            merged[name] = strategic_merge(original[name], value, name) if name in original else copy.deepcopy(value)
        return merged
    if isinstance(original, list) and isinstance(patch, list) and key in MERGE_KEYS:
        merge_key = MERGE_KEYS[key]
        out = [copy.deepcopy(item) for item in original]
        for item in patch:
            index = next((i for i, old in enumerate(out) if old[merge_key] == item[merge_key]), None)
            if index is None:
                out.append(copy.deepcopy(item))
            else:
                out[index] = strategic_merge(out[index], item)
        return out
    return copy.deepcopy(patch)


def patch_doc() -> dict[str, Any]:
    """deploy/kubernetes/sidecar-patch/patch.yaml."""
    doc: dict[str, Any] = yaml.safe_load((PATCH_DIR / "patch.yaml").read_text())
    return doc


def patched() -> dict[str, Any]:
    """The sample backend Deployment with the patch applied."""
    merged: dict[str, Any] = strategic_merge(SAMPLE_BACKEND, patch_doc())
    return merged


def by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in items}


def test_the_merge_replaces_by_key_and_appends_new_names() -> None:
    """The test's strategic merge is live: a container of the same name is merged field by field (its other fields
    kept), a new name is appended, a plain list is replaced."""
    original = {"containers": [{"name": "a", "image": "x", "args": ["1"]}], "args": ["1", "2"]}
    patch = {"containers": [{"name": "a", "image": "y"}, {"name": "b", "image": "z"}], "args": ["3"]}
    assert {"containers": [{"name": "a", "image": "y", "args": ["1"]}, {"name": "b", "image": "z"}],
            "args": ["3"]} == strategic_merge(original, patch)


def test_patch_adds_the_monitor_and_leaves_the_backend_as_it_was() -> None:
    """After the patch: the backend container is exactly the sample's (readinessProbe intact), the pod's
    securityContext, labels and annotations and the replica count are unchanged, the monitor container is added
    without readinessProbe or startupProbe, and the backend's volumes are kept beside the monitor's."""
    before = SAMPLE_BACKEND["spec"]["template"]["spec"]
    after = patched()["spec"]["template"]["spec"]
    containers = by_name(after["containers"])
    assert ["backend", "pam-monitor"] == [c["name"] for c in after["containers"]]
    assert before["containers"][0] == containers["backend"]
    assert {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 10} == containers["backend"][
        "readinessProbe"]
    monitor = containers["pam-monitor"]
    assert set() == {"readinessProbe", "startupProbe"} & set(monitor)
    assert "/healthz" == monitor["livenessProbe"]["httpGet"]["path"]
    assert ["cache", "pam-monitor-config", "pam-monitor-state", "pam-monitor-tmp"] == [v["name"] for v in
                                                                                       after["volumes"]]
    assert before["volumes"][0] == after["volumes"][0]
    assert before["securityContext"] == after["securityContext"]
    assert SAMPLE_BACKEND["spec"]["template"]["metadata"] == patched()["spec"]["template"]["metadata"]
    assert SAMPLE_BACKEND["spec"]["replicas"] == patched()["spec"]["replicas"]


def test_patch_fits_a_pod_it_does_not_own() -> None:
    """The monitor names its own port (`pam-metrics`, not a `metrics` the backend may already use; port names must
    be unique in a pod), mounts only its own volumes, runs as its own non-root uid set on the container (the pod's
    securityContext is the backend's), and every mount has a volume in the merged pod."""
    after = patched()["spec"]["template"]["spec"]
    monitor = by_name(after["containers"])["pam-monitor"]
    port_names = [p["name"] for c in after["containers"] for p in c.get("ports", [])]
    assert len(port_names) == len(set(port_names)), port_names
    assert all(m["name"].startswith("pam-monitor-") for m in monitor["volumeMounts"])
    assert {m["name"] for m in monitor["volumeMounts"]} <= {v["name"] for v in after["volumes"]}
    security = monitor["securityContext"]
    assert (True, 10001, False, True) == (security["runAsNonRoot"], security["runAsUser"],
                                          security["allowPrivilegeEscalation"], security["readOnlyRootFilesystem"])


@pytest.mark.parametrize("version", VERSIONS)
def test_patched_deployment_and_monitor_objects_validate(version: str) -> None:
    """The merged Deployment and every object of monitor.yaml pass strict validation (no unknown field) against
    the Kubernetes schemas; a patch with a misspelled field would not."""
    objects = [patched(), *[d for d in yaml.safe_load_all((PATCH_DIR / "monitor.yaml").read_text()) if d]]
    for doc in objects:
        kubernetes_validate.validate(doc, version, strict=True)
    broken = copy.deepcopy(patch_doc())
    broken["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinessprobe"):
        kubernetes_validate.validate(strategic_merge(SAMPLE_BACKEND, broken), version, strict=True)


def test_snippet_patch_and_whole_deployment_example_agree() -> None:
    """container.yaml holds the patch's containers and volumes exactly; sidecar.yaml's monitor container is the
    patch's, its volumes include the patch's, and its ConfigMap, Secret and pam-monitor Service are monitor.yaml's:
    the example cannot drift from what a user applies."""
    spec = patch_doc()["spec"]["template"]["spec"]
    assert spec == yaml.safe_load((PATCH_DIR / "container.yaml").read_text())
    assert spec["containers"] == [monitor_container()]
    assert [v for v in pod_spec()["volumes"] if v["name"].startswith("pam-monitor")] == spec["volumes"]
    monitor_objects = [d for d in yaml.safe_load_all((PATCH_DIR / "monitor.yaml").read_text()) if d]
    assert [by_kind("ConfigMap"), by_kind("Secret"), by_kind("Service", "pam-monitor")] == monitor_objects
    assert {"ConfigMap", "Secret", "Deployment", "Service"} == {d["kind"] for d in k8s_docs()}


def test_kustomization_lists_the_patch_and_the_monitor_objects() -> None:
    """kustomization.yaml patches the same Deployment (group, kind, name) with patch.yaml and lists monitor.yaml."""
    kustomization = yaml.safe_load((PATCH_DIR / "kustomization.yaml").read_text())
    assert "monitor.yaml" in kustomization["resources"]
    (entry,) = kustomization["patches"]
    assert "patch.yaml" == entry["path"]
    assert ("apps", "Deployment", patch_doc()["metadata"]["name"]) == (
        entry["target"]["group"], entry["target"]["kind"], entry["target"]["name"])
