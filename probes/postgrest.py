"""Placeholder for the `postgrest` prober while it is being written (replaced before this lands)."""

from __future__ import annotations

from typing import Any

from monitor.deps import Deps
from monitor.results import TRANSPORT_OUTCOMES, Outcome, ProbeResult

OUTCOMES: tuple[Outcome, ...] = TRANSPORT_OUTCOMES


async def probe(check: Any, deps: Deps) -> ProbeResult:
    """Not written yet."""
    return ProbeResult(Outcome.INTERNAL_ERROR, "the postgrest prober is not implemented yet")
