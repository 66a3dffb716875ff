"""Probers, one module per check kind; REGISTRY maps a config `kind` to its `probe` coroutine."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from monitor.core.results import Outcome, ProbeResult
from probes import auth_contract, db, http, postgrest, voice
from probes.deps import Deps

ProbeFn = Callable[[Any, Deps], Awaitable[ProbeResult]]
"""Every prober: `async def probe(check, deps) -> ProbeResult`. It never raises for a broken target."""

REGISTRY: Mapping[str, ProbeFn] = {
    "http": http.probe,
    "auth_contract": auth_contract.probe,
    "voice": voice.probe,
    "db": db.probe,
    "postgrest": postgrest.probe,
}

OUTCOMES: Mapping[str, tuple[Outcome, ...]] = {
    "http": http.OUTCOMES,
    "auth_contract": auth_contract.OUTCOMES,
    "voice": voice.OUTCOMES,
    "db": db.OUTCOMES,
    "postgrest": postgrest.OUTCOMES,
}
"""The outcomes each kind can produce; their metric series are created at 0 from start-up."""

RULES_BY_KIND: Mapping[str, tuple[str, ...]] = {
    "http": ("ContractRegression", "TableMissing", "EndpointDown"),
    "auth_contract": ("ContractRegression", "AuthBypass", "TableMissing", "EndpointDown"),
    "voice": ("ContractRegression", "TableMissing", "EndpointDown", "VoiceDegraded"),
    "postgrest": ("ContractRegression", "TableMissing", "EndpointDown"),
    "db": ("TableMissing", "SchemaDrift", "DatabaseDown"),
}
"""The alertnames each kind's results can raise (the alert engine takes this map)."""
