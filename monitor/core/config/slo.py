"""Service level objectives: `slo: {objective: 99.9%, window: 30d}` on a check, or a group of checks under the
top-level `slos:`, and the multiwindow multi-burn-rate alerts that watch their error budget."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from monitor.core.config.base import NAME_PATTERN, Duration, Strict

if TYPE_CHECKING:
    from monitor.core.config.root import Config

SLO_WINDOWS = {3600.0: "1h", 86400.0: "24h", 7 * 86400.0: "7d", 30 * 86400.0: "30d"}
"""Windows an objective may be measured over: those the history keeps (monitor/history.py)."""


def _objective(value: object) -> object:
    """`99.9%` or `0.999` -> 0.999."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return round(float(value.strip()[:-1]) / 100, 12)
        except ValueError:
            raise ValueError("must be a percentage such as 99.9% or a fraction such as 0.999") from None
    return value


Objective = Annotated[float, BeforeValidator(_objective), Field(gt=0, lt=1)]


class BurnAlert(Strict):
    """One multiwindow burn-rate alert: fires when the error rate over both `long` and `short` exceeds `factor`
    times the error budget rate (1 - objective)."""

    severity: Literal["critical", "warning", "info"]
    factor: Annotated[float, Field(gt=0)]
    long: Duration
    short: Duration

    @model_validator(mode="after")
    def _short_below_long(self) -> BurnAlert:
        if self.short >= self.long:
            raise ValueError("short must be less than long (the short window confirms the burn is still going on)")
        return self


DEFAULT_BURNS: tuple[BurnAlert, ...] = (
    BurnAlert(severity="critical", factor=14.4, long=3600, short=300),
    BurnAlert(severity="critical", factor=6, long=6 * 3600, short=1800),
    BurnAlert(severity="warning", factor=1, long=3 * 86400, short=6 * 3600),
)
"""Page at 14.4x over 1 h and 5 min (2 % of a 30-day budget in an hour) and at 6x over 6 h and 30 min (5 % in
6 h); a ticket (warning) at 1x over 3 days and 6 h (the budget would be gone by the end of the window)."""


class Slo(Strict):
    """An objective: the share of counted runs (all but rate_limited) that must be good over `window`."""

    objective: Objective
    window: Duration = 30 * 86400.0
    alerts: tuple[BurnAlert, ...] = Field(default=DEFAULT_BURNS, description="the burn-rate alerts")

    @field_validator("window")
    @classmethod
    def _window(cls, value: float) -> float:
        if value not in SLO_WINDOWS:
            raise ValueError("must be one of " + ", ".join(SLO_WINDOWS.values()) + " (the windows pam-monitor keeps "
                             "history for)")
        return value


class SloGroup(Slo):
    """An objective over several checks together (their runs pooled)."""

    checks: Annotated[list[Annotated[str, Field(pattern=NAME_PATTERN)]], Field(min_length=1)]


@dataclass(frozen=True, slots=True)
class SloSpec:
    """One objective: its name, the checks it pools, the objective, its window (seconds) and burn alerts. The one
    source both the daemon's ErrorBudgetBurn (alerts/judge/burn.py) and `pam-monitor rules` (monitor/slo.py) read."""

    name: str
    checks: tuple[str, ...]
    objective: float
    window: float
    alerts: tuple[BurnAlert, ...]

    @property
    def window_label(self) -> str:
        """The window as the history names it (`30d`)."""
        return SLO_WINDOWS[self.window]

    @property
    def allowed(self) -> float:
        """The error budget as a ratio, `1 - objective`, to 10 significant digits: the daemon compares with the
        very number the Prometheus rules print (99.9% -> 0.001, not 0.0010000000000000009)."""
        return float(f"{1 - self.objective:.10g}")


def slo_specs(config: Config) -> list[SloSpec]:
    """Every SLO of a config: the checks' own (named after them), then the groups, by name."""
    out = [SloSpec(c.name, (c.name,), c.slo.objective, c.slo.window, c.slo.alerts)
           for c in config.checks if c.slo is not None]
    out += [SloSpec(name, tuple(g.checks), g.objective, g.window, g.alerts) for name, g in sorted(config.slos.items())]
    return out


def duration_label(seconds: float) -> str:
    """A window as Prometheus writes durations and the alerts label it: `1h`, `30m`, `3d`, `90s`."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"
