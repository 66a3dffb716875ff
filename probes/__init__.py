"""Probers, one module per check kind; REGISTRY maps a config `kind` to that module's `Kind` record."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from monitor.core.kinds import KindRules
from probes import auth_contract, db, heartbeat, http, journey, postgrest, tenant_isolation, voice
from probes._http import with_http_facts
from probes.kind import Kind, Prober


def _traced(kind: Kind[Any]) -> Kind[Any]:
    """An HTTP kind's record whose results carry the transport's facts of their first request (so its checks get
    the HTTP series)."""
    return dataclasses.replace(kind, probe=with_http_facts(kind.probe), speaks_http=True)


REGISTRY: Mapping[str, Kind[Any]] = MappingProxyType({
    "http": _traced(http.KIND),
    "auth_contract": _traced(auth_contract.KIND),
    "voice": _traced(voice.KIND),
    "db": db.KIND,
    "postgrest": _traced(postgrest.KIND),
    "journey": _traced(journey.KIND),
    "tenant_isolation": _traced(tenant_isolation.KIND),
    "heartbeat": heartbeat.KIND,
})
"""Every check kind: its config model, prober, outcomes, alert rules, phases and tables (probes/kind.py)."""

RULES_BY_KIND: Mapping[str, KindRules] = MappingProxyType({name: kind.rules for name, kind in REGISTRY.items()})
"""The built-in alert rules evaluated for each kind's checks and how its results are judged, for the alert engine."""

__all__ = ["REGISTRY", "RULES_BY_KIND", "Kind", "Prober"]
