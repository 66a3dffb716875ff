"""Probers, one module per check kind; REGISTRY maps a config `kind` to that module's `Kind` record."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from probes import auth_contract, db, http, journey, postgrest, tenant_isolation, voice
from probes.kind import Kind, Prober

REGISTRY: Mapping[str, Kind[Any]] = MappingProxyType({
    "http": http.KIND,
    "auth_contract": auth_contract.KIND,
    "voice": voice.KIND,
    "db": db.KIND,
    "postgrest": postgrest.KIND,
    "journey": journey.KIND,
    "tenant_isolation": tenant_isolation.KIND,
})
"""Every check kind: its config model, prober, outcomes, alert rules, phases and tables (probes/kind.py)."""

RULES_BY_KIND: Mapping[str, tuple[str, ...]] = MappingProxyType({name: kind.alerts for name, kind in REGISTRY.items()})
"""The built-in alert rules evaluated for each kind's checks, for the alert engine."""

__all__ = ["REGISTRY", "RULES_BY_KIND", "Kind", "Prober"]
