"""The record that makes a check kind: its config model, its prober, and what its runs can report."""

from __future__ import annotations

import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from monitor.core.config import AlertName, CheckBase
from monitor.core.kinds import KindRules
from monitor.core.results import Outcome, ProbeResult
from probes.deps import Deps

C = TypeVar("C", bound=CheckBase)

Prober = Callable[[C, Deps, float], Awaitable[ProbeResult]]
"""`async def probe(check, deps, deadline) -> ProbeResult`.

`deadline` is event-loop time (`asyncio.get_running_loop().time()`), set by the runner: the probe stops waiting
for its target then and reports `timeout` naming the phase that stalled. It never raises for a broken target;
an exception out of a probe is a bug, recorded as `internal_error`.
"""


def no_names(check: Any) -> tuple[str, ...]:
    """For a kind that reports no phases or no tables."""
    return ()


def one_request(check: Any) -> int:
    """For a kind whose run sends one request (or one database round trip)."""
    return 1


@dataclass(frozen=True, slots=True)
class Kind(Generic[C]):
    """One check kind, all in one place; `probes.REGISTRY` maps each config `kind:` to its record.

    `model` is the config model (its `target_type` says which target the kind needs); `outcomes` are the
    outcomes its runs can produce (their metric series exist at 0 from start-up); `alerts` are the built-in
    alert rules evaluated for its checks; `phases(check)` and `tables(check)` name the phase durations and the
    tables whose presence a check of this kind reports; `requests(check)` is how many requests one run sends at
    most (the runner admits a run with that many of its target's slots and paces a target's `max_rate` by it).

    What the rest of the daemon would otherwise branch on the kind's name for is said here: `speaks_http` (its
    checks get blackbox_exporter's HTTP series; the registry sets it where it wraps the prober to record the
    transport's facts), `per_step` (its results report steps, each judged as an alert instance of its own) and
    `server_error_is_down` (a 5xx means the endpoint is down, EndpointDown).
    """

    name: str
    model: type[C]
    probe: Prober[C]
    outcomes: tuple[Outcome, ...]
    alerts: tuple[AlertName, ...]
    phases: Callable[[C], tuple[str, ...]] = no_names
    tables: Callable[[C], tuple[str, ...]] = no_names
    requests: Callable[[C], int] = one_request
    speaks_http: bool = False
    per_step: bool = False
    server_error_is_down: bool = False

    @property
    def rules(self) -> KindRules:
        """The kind's alertnames with how its results are judged, as the alert engine reads them."""
        return KindRules(self.alerts, per_step=self.per_step, server_error_is_down=self.server_error_is_down)

    def __post_init__(self) -> None:
        declared = typing.get_args(self.model.model_fields["kind"].annotation)
        if declared != (self.name,):
            raise ValueError(f"kind {self.name!r} names model {self.model.__name__}, whose kind is {declared}")
