"""Prometheus metrics (DESIGN §6): a client registry for daemon-wide series, a fast renderer for per-check ones.

Per-check series are many (about 40 a check, 40,000 at 1,000 checks) and prometheus_client spends ~5 µs a sample
rendering them, which would put a scrape past 150 ms. So per-check families are kept as plain numbers here and each
check's lines are re-rendered only when that check ran since the last scrape; daemon-wide series (scheduler,
alerts, notifications, build info, process) stay in prometheus_client.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.process_collector import ProcessCollector

from monitor import __version__
from monitor.core.results import Outcome, Result

CHECK_DURATION_BUCKETS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LATENESS_BUCKETS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
SKIP_REASONS: tuple[str, ...] = ("max_instances", "misfire", "coalesced", "saturated")
"""saturated: the monitor could not run it honestly (no request slot or start in time, or the event loop lagged
so that its deadline could not be trusted); max_instances: the previous run was still going; coalesced: the
scheduler stalled past whole intervals; misfire: kept for dashboards, no longer produced (see saturated)."""
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# (name, type, help) in the order they are rendered.
_FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("probe_success", "gauge", "Whether the last run of the check succeeded (1) or not (0)."),
    ("probe_duration_seconds", "gauge", "Duration of the last run of the check in seconds."),
    ("probe_http_status_code", "gauge", "HTTP status code of the last run (0 when there was no HTTP answer)."),
    ("pam_monitor_check_last_run_timestamp_seconds", "gauge", "Unix time the last run finished (0: never ran)."),
    ("pam_monitor_check_duration_seconds", "histogram", "Duration of check runs in seconds."),
    ("pam_monitor_check_results_total", "counter", "Check runs by outcome."),
    ("pam_monitor_check_outcome", "gauge", "The last outcome of the check, one-hot (1 for the current outcome)."),
    ("pam_monitor_status_transitions_total", "counter", "Changes of outcome between consecutive runs."),
    ("pam_monitor_db_table_present", "gauge", "Whether a required table was present at the last run (1) or not (0)."),
    ("pam_monitor_db_phase_duration_seconds", "gauge", "Duration of each phase of the last run in seconds."),
)
_HEADERS: tuple[bytes, ...] = tuple(
    f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n".encode() for name, kind, help_text in _FAMILIES
)


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value)}"
    return repr(value)


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@dataclass
class _CheckSeries:
    """Current values of one check's series and its cached exposition lines per family."""

    check: str
    kind: str
    labels: str
    outcomes: tuple[str, ...]
    tables: tuple[str, ...]
    phases: tuple[str, ...]
    success: float = 0.0
    duration: float = 0.0
    status_code: float = 0.0
    last_run: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * len(CHECK_DURATION_BUCKETS))
    hist_count: int = 0
    hist_sum: float = 0.0
    results: dict[str, int] = field(default_factory=dict)
    current: str = ""
    transitions: dict[tuple[str, str], int] = field(default_factory=dict)
    table_present: dict[str, float] = field(default_factory=dict)
    phase_seconds: dict[str, float] = field(default_factory=dict)
    cache: list[bytes] | None = None

    def render(self) -> list[bytes]:
        if self.cache is not None:
            return self.cache
        lb = self.labels
        out = [""] * len(_FAMILIES)
        out[0] = f"probe_success{{{lb}}} {_fmt(self.success)}\n"
        out[1] = f"probe_duration_seconds{{{lb}}} {_fmt(self.duration)}\n"
        out[2] = f"probe_http_status_code{{{lb}}} {_fmt(self.status_code)}\n"
        out[3] = f"pam_monitor_check_last_run_timestamp_seconds{{{lb}}} {_fmt(self.last_run)}\n"
        hist = []
        cumulative = 0
        for bound, count in zip(CHECK_DURATION_BUCKETS, self.buckets, strict=True):
            cumulative += count
            hist.append(f'pam_monitor_check_duration_seconds_bucket{{{lb},le="{bound}"}} {cumulative}\n')
        hist.append(f'pam_monitor_check_duration_seconds_bucket{{{lb},le="+Inf"}} {self.hist_count}\n')
        hist.append(f"pam_monitor_check_duration_seconds_sum{{{lb}}} {_fmt(self.hist_sum)}\n")
        hist.append(f"pam_monitor_check_duration_seconds_count{{{lb}}} {self.hist_count}\n")
        out[4] = "".join(hist)
        out[5] = "".join(
            f'pam_monitor_check_results_total{{{lb},outcome="{o}"}} {self.results.get(o, 0)}\n' for o in self.outcomes
        )
        out[6] = "".join(
            f'pam_monitor_check_outcome{{{lb},outcome="{o}"}} {1 if o == self.current else 0}\n' for o in self.outcomes
        )
        out[7] = "".join(
            f'pam_monitor_status_transitions_total{{{lb},from="{a}",to="{b}"}} {n}\n'
            for (a, b), n in sorted(self.transitions.items())
        )
        out[8] = "".join(
            f'pam_monitor_db_table_present{{{lb},table="{_esc(t)}"}} {_fmt(self.table_present.get(t, 0.0))}\n'
            for t in self.tables
        )
        out[9] = "".join(
            f'pam_monitor_db_phase_duration_seconds{{{lb},phase="{p}"}} {_fmt(self.phase_seconds.get(p, 0.0))}\n'
            for p in self.phases
        )
        # Kept as bytes so a scrape is one join, not a str join plus an encode of a multi-megabyte body.
        self.cache = [part.encode() for part in out]
        return self.cache


class Metrics:
    """All of the daemon's metrics. One instance per process; survives config reloads."""

    def __init__(self, *, process_metrics: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        if process_metrics:
            ProcessCollector(registry=self.registry)
        Gauge(
            "pam_monitor_build_info", "Build information; always 1.", ["version"], registry=self.registry
        ).labels(__version__).set(1)
        self.lateness = Histogram(
            "pam_monitor_scheduler_lateness_seconds",
            "How late check runs started compared with their scheduled time.",
            buckets=LATENESS_BUCKETS,
            registry=self.registry,
        )
        self.skipped = Counter(
            "pam_monitor_scheduler_skipped_runs",
            "Scheduled runs that did not happen or were discarded, by reason (saturated: the monitor could not keep "
            "up; max_instances: previous run still going; coalesced: the scheduler stalled past whole intervals).",
            ["reason"],
            registry=self.registry,
        )
        for reason in SKIP_REASONS:
            self.skipped.labels(reason)
        self.loop_lag = Histogram(
            "pam_monitor_event_loop_lag_seconds",
            "How late the daemon's event loop woke a 50 ms timer: its own saturation, sampled 20 times a second.",
            buckets=LATENESS_BUCKETS,
            registry=self.registry,
        )
        self.reload_ok = Gauge(
            "pam_monitor_config_last_reload_successful",
            "Whether the last configuration load or reload succeeded.",
            registry=self.registry,
        )
        self.reload_ts = Gauge(
            "pam_monitor_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load.",
            registry=self.registry,
        )
        self.checks_configured = Gauge(
            "pam_monitor_checks_configured", "Number of enabled checks in the running configuration.",
            registry=self.registry,
        )
        self._lock = threading.Lock()
        self._series: dict[str, _CheckSeries] = {}

    # -- per-check series ---------------------------------------------------------------------------------

    def set_checks(self, checks: Iterable[tuple[str, str, Sequence[Outcome], Sequence[str], Sequence[str]]]) -> None:
        """Declare the running checks as (name, kind, outcomes, tables, phases); series start at 0.

        Series of checks that keep their name and kind keep their values across a reload; series of removed
        checks disappear.
        """
        with self._lock:
            old = self._series
            new: dict[str, _CheckSeries] = {}
            for name, kind, outcomes, tables, phases in checks:
                previous = old.get(name)
                series = _CheckSeries(
                    check=name,
                    kind=kind,
                    labels=f'check="{_esc(name)}",kind="{_esc(kind)}"',
                    outcomes=tuple(o.value for o in outcomes),
                    tables=tuple(tables),
                    phases=tuple(phases),
                )
                if previous is not None and previous.kind == kind:
                    series.success, series.duration = previous.success, previous.duration
                    series.status_code, series.last_run = previous.status_code, previous.last_run
                    series.buckets, series.hist_count = previous.buckets, previous.hist_count
                    series.hist_sum, series.results = previous.hist_sum, previous.results
                    series.current, series.transitions = previous.current, previous.transitions
                    series.table_present = {
                        t: v for t, v in previous.table_present.items() if t in series.tables
                    }
                    series.phase_seconds = previous.phase_seconds
                new[name] = series
            self._series = new
            self.checks_configured.set(len(new))

    def observe(self, result: Result, previous: Outcome | None) -> None:
        """Record one finished run."""
        with self._lock:
            series = self._series.get(result.check)
            if series is None:  # a run that finished after its check was removed by a reload
                return
            outcome = result.outcome.value
            series.success = 1.0 if result.success else 0.0
            series.duration = result.duration_s
            series.status_code = float(result.status_code or 0)
            series.last_run = result.finished_at
            for i, bound in enumerate(CHECK_DURATION_BUCKETS):
                if result.duration_s <= bound:
                    series.buckets[i] += 1
                    break
            series.hist_count += 1
            series.hist_sum += result.duration_s
            series.results[outcome] = series.results.get(outcome, 0) + 1
            if outcome not in series.outcomes:  # a kind produced an outcome it did not declare: still count it
                series.outcomes = (*series.outcomes, outcome)
            series.current = outcome
            if previous is not None and previous.value != outcome:
                key = (previous.value, outcome)
                series.transitions[key] = series.transitions.get(key, 0) + 1
            # A run that never reached the table checks (database down) reports no tables: the last known
            # presence stays, so a dead connection does not read as every table missing.
            for table, present in result.tables.items():
                if table in series.tables:
                    series.table_present[table] = 1.0 if present else 0.0
            for phase, seconds in result.phases.items():
                if phase in series.phases:
                    series.phase_seconds[phase] = seconds
            series.cache = None

    # -- exposition ---------------------------------------------------------------------------------------

    def render(self) -> bytes:
        """The full /metrics body in the Prometheus text format 0.0.4."""
        return b"".join(self.render_chunks())

    def render_chunks(self) -> Iterator[bytes]:
        """The /metrics body as one chunk per family, so a 3 MB scrape is never copied whole in memory."""
        head = generate_latest(self.registry)
        with self._lock:
            series = list(self._series.values())
        # The lock is taken per check, not for the whole render: the server thread renders while the event loop
        # records results, and a result must never wait for a whole scrape.
        blocks = []
        for one in series:
            with self._lock:
                blocks.append(one.render())
        yield head
        for i, header in enumerate(_HEADERS):
            yield header + b"".join(block[i] for block in blocks)


__all__ = ["CONTENT_TYPE", "Metrics"]
