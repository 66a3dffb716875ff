"""Every document of deploy/kubernetes/*.yaml validates, strictly (no unknown field), against the Kubernetes
schemas kubernetes-validate ships, for the oldest and the newest version we support; only the Prometheus
Operator's ServiceMonitor, a custom resource, has no schema there."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.helpers import DEPLOY

VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
CUSTOM_RESOURCES = {("monitoring.coreos.com/v1", "ServiceMonitor")}  # no schema shipped; checked field by field
FILES = sorted((DEPLOY / "kubernetes").glob("*.yaml"))


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_manifest_validates_against_the_kubernetes_schemas(path: Path, version: str) -> None:
    """Each object passes strict validation; any object without a schema is one of the known custom resources."""
    assert {"sidecar.yaml", "statefulset.yaml", "servicemonitor.yaml"} <= {p.name for p in FILES}
    for doc in documents(path):
        kind = (doc["apiVersion"], doc["kind"])
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            assert kind in CUSTOM_RESOURCES, f"{path.name}: no schema for {kind}"
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.name}: {doc['kind']}/{doc['metadata']['name']} is invalid for {version}: {exc}")


@pytest.mark.parametrize(("change", "where"), [
    (lambda d: d["spec"].update(replicas="six"), "replicas"),
    (lambda d: d["spec"].pop("selector"), "selector"),
    (lambda d: d["spec"].update(volumeClaimTemplate=[]), "volumeClaimTemplate"),
])
def test_the_validation_rejects_a_broken_statefulset(change: Any, where: str) -> None:
    """The same validation fails on a wrong type, a missing required field and a misspelled field (strict): it
    is live."""
    (statefulset,) = [d for d in documents(DEPLOY / "kubernetes" / "statefulset.yaml") if d["kind"] == "StatefulSet"]
    broken = copy.deepcopy(statefulset)
    change(broken)
    with pytest.raises(kubernetes_validate.ValidationError, match=where):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)
