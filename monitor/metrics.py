"""Prometheus metrics: a client registry for daemon-wide series, a fast renderer for per-check ones.

Per-check series are many (about 15 a check by default, 15,000 at 1,000 checks) and prometheus_client spends
~5 µs a sample rendering them, which would put a scrape past 50 ms. So per-check families are kept as plain
numbers here and rendered at scrape time; daemon-wide series (scheduler, alerts, notifications, build info,
process) stay in prometheus_client.

The default set is budgeted (README "Metrics": a table of series per kind, held by tests/monitor/test_budget.py):
what blackbox_exporter exposes for the same probe (the HTTP series for checks whose kind's record says it
speaks HTTP), plus the last outcome as one series and a counter per outcome
that occurred. Families that cost a series per bucket or per possible outcome are `DETAIL` families, rendered only
for the names listed in `metrics.detail`.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import operator
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from monitor import __version__
from monitor.core.config import DETAIL_FAMILIES
from monitor.core.results import HTTP_PHASES, HttpFacts, Outcome, Result, TlsFacts

CHECK_DURATION_BUCKETS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LATENESS_BUCKETS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
SKIP_REASONS: tuple[str, ...] = ("max_instances", "misfire", "coalesced", "saturated")
"""saturated: the monitor could not run it honestly (no request slot or start in time, or the event loop lagged
so that its deadline could not be trusted); max_instances: the previous run was still going; coalesced: the
scheduler stalled past whole intervals; misfire: kept for dashboards, no longer produced (see saturated)."""
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RENDER_BATCH = 32
"""Checks rendered at once (the histogram family is ~1 KB a check)."""
CHUNK_BYTES = 48 * 1024
"""Pieces of a scrape are about this size: below glibc's mmap threshold (128 KB), so each piece and its copies
in the HTTP layer reuse the same heap memory scrape after scrape (128 KB pieces kept ~0.5 MB more resident at
1,000 checks), and large enough that the HTTP layer handles few of them (~85 at 1,000 checks)."""

DETAIL: tuple[str, ...] = DETAIL_FAMILIES
"""Opt-in families (`metrics: {detail: [...]}`): `outcome_onehot` is pam_monitor_check_outcome, a series per
outcome the kind can produce (12 for http, nearly all 0); `duration_histogram` is pam_monitor_check_duration_seconds,
12 series a check."""

# (name, type, help, the DETAIL name that turns it on or None for the default set), in the order they are rendered.
_FAMILIES: tuple[tuple[str, str, str, str | None], ...] = (
    ("probe_success", "gauge", "Whether the last run of the check succeeded (1) or not (0).", None),
    ("probe_duration_seconds", "gauge", "Duration of the last run of the check in seconds.", None),
    ("probe_http_status_code", "gauge", "HTTP status code of the last run (0 when there was no HTTP answer).", None),
    ("pam_monitor_check_last_run_timestamp_seconds", "gauge", "Unix time the last run finished (0: never ran).",
     None),
    ("pam_monitor_check_duration_seconds", "histogram", "Duration of check runs in seconds.", "duration_histogram"),
    ("pam_monitor_check_results_total", "counter",
     "Check runs by outcome (a series per outcome that occurred, made on its first run).", None),
    ("pam_monitor_check_last_outcome", "gauge",
     "Always 1, labelled with the outcome of the last run (one series a check; none before the first run).", None),
    ("pam_monitor_check_outcome", "gauge", "The last outcome of the check, one-hot (1 for the current outcome).",
     "outcome_onehot"),
    ("pam_monitor_status_transitions_total", "counter", "Changes of outcome between consecutive runs.", None),
    ("pam_monitor_db_table_present", "gauge", "Whether a required table was present at the last run (1) or not (0).",
     None),
    ("pam_monitor_db_phase_duration_seconds", "gauge", "Duration of each phase of the last run in seconds.", None),
    ("probe_http_duration_seconds", "gauge",
     "Duration of the last run's first HTTP request by phase, in seconds (blackbox_exporter's phases).", None),
    ("probe_http_version", "gauge", "HTTP version of the last run's first response (1.1; 0: no answer).", None),
    ("probe_http_content_length", "gauge",
     "Content-Length of the last run's first response (-1: not announced; 0: no answer).", None),
    ("probe_dns_lookup_time_seconds", "gauge", "Time the last run's first request took to resolve its host.", None),
    ("probe_http_ssl", "gauge", "Whether the last run's first request went over TLS (1) or not (0).", None),
    ("probe_ssl_earliest_cert_expiry", "gauge",
     "Earliest notAfter (Unix seconds) of the certificates the server presented at the last TLS handshake.", None),
    ("probe_ssl_last_chain_expiry_timestamp_seconds", "gauge",
     "Earliest notAfter (Unix seconds) of the chain verified at the last TLS handshake (not with verify_tls off).",
     None),
    ("probe_tls_version_info", "gauge", "The TLS version negotiated at the last TLS handshake (always 1).", None),
)
_HEADERS: tuple[str, ...] = tuple(
    f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n" for name, kind, help_text, _ in _FAMILIES
)
_DETAIL_OF: tuple[str | None, ...] = tuple(detail for *_, detail in _FAMILIES)


_NO_HTTP = HttpFacts(phases=dict.fromkeys(HTTP_PHASES, 0.0))


def _fmt(value: float) -> str:
    """A sample value as Prometheus writes it: integral values without '.0', the shortest repr otherwise."""
    if -1e15 < value < 1e15:  # neither NaN nor infinite
        whole = int(value)
        return str(whole) if whole == value else repr(value)
    if math.isnan(value):
        return "NaN"
    return repr(value) if not math.isinf(value) else ("+Inf" if value > 0 else "-Inf")


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@dataclass(slots=True)
class _CheckSeries:
    """Current values of one check's series (rendered at scrape time, see `_Families`)."""

    check: str
    kind: str
    labels: str
    outcomes: tuple[str, ...]
    tables: tuple[str, ...]
    phases: tuple[str, ...]
    success: int = 0
    duration: float = 0.0
    status_code: int = 0
    last_run: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * len(CHECK_DURATION_BUCKETS))
    hist_count: int = 0
    hist_sum: float = 0.0
    results: list[int] = field(default_factory=list)  # runs per outcome, in `outcomes` order
    current: str = ""
    # Made on first use: most checks never change outcome, and only db checks have tables and phases.
    transitions: dict[tuple[str, str], int] | None = None
    table_present: dict[str, float] | None = None
    phase_seconds: dict[str, float] | None = None
    http: HttpFacts | None = None  # None: not an HTTP kind (no probe_http_* series)
    tls: TlsFacts | None = None  # the last handshake seen (probe_ssl_*, probe_tls_*), None: none yet or plain HTTP


# Float values are finite clock readings and durations, so they are written with repr (C code, "0.0" for zero).
# Templates carry the labels as "\0" (never in a label value: escaped names cannot hold it): the numbers go in with
# one `%` (C code), then one `str.replace` puts the check's labels in every line at once.
_HISTOGRAM = "".join(
    f'pam_monitor_check_duration_seconds_bucket{{\0,le="{bound}"}} %d\n' for bound in CHECK_DURATION_BUCKETS
) + (
    'pam_monitor_check_duration_seconds_bucket{\0,le="+Inf"} %d\n'
    "pam_monitor_check_duration_seconds_sum{\0} %r\n"
    "pam_monitor_check_duration_seconds_count{\0} %d\n"
)
_HTTP_PHASES = "".join(f'probe_http_duration_seconds{{\0,phase="{p}"}} %r\n' for p in HTTP_PHASES)
_phase_values = operator.itemgetter(*HTTP_PHASES)  # the five phases' seconds, in order, as one tuple


class _Templates:
    """Format strings for the families whose lines depend on a check's outcome list, made once per list.

    Rendering is then one `%` and one `str.replace` per check and family (C code) instead of one f-string per
    line, and nothing per check is kept between scrapes.
    """

    def __init__(self, outcomes: tuple[str, ...]) -> None:
        # (before the labels, after them) per outcome: a counter line is written only once its outcome occurred.
        self.results = tuple(("pam_monitor_check_results_total{", f',outcome="{o}"}} ') for o in outcomes)
        # One template per current outcome ("": never ran), the 0s and the 1 written in.
        self.one_hot = {
            current: "".join(
                f'pam_monitor_check_outcome{{\0,outcome="{o}"}} {1 if o == current else 0}\n' for o in outcomes
            )
            for current in ("", *outcomes)
        }


def _family_lines(i: int, series: list[_CheckSeries], templates: dict[tuple[str, ...], _Templates]) -> str:
    """The sample lines of family `i` (_FAMILIES order) for every check."""
    if i == 0:
        return "".join([f"probe_success{{{s.labels}}} {s.success}\n" for s in series])
    if i == 1:
        return "".join([f"probe_duration_seconds{{{s.labels}}} {s.duration!r}\n" for s in series])
    if i == 2:
        return "".join([f"probe_http_status_code{{{s.labels}}} {s.status_code}\n" for s in series])
    if i == 3:
        return "".join([f"pam_monitor_check_last_run_timestamp_seconds{{{s.labels}}} {s.last_run!r}\n"
                        for s in series])
    if i == 4:
        return "".join([(_HISTOGRAM % (*itertools.accumulate(s.buckets), s.hist_count, s.hist_sum, s.hist_count))
                        .replace("\0", s.labels) for s in series])
    if i == 5:
        # A counter exists from its outcome's first run: 12 series a check of which 11 read 0 were half a scrape.
        return "".join([f"{prefix}{s.labels}{suffix}{n}\n" for s in series
                        for (prefix, suffix), n in zip(templates[s.outcomes].results, s.results, strict=True) if n])
    if i == 6:
        return "".join([f'pam_monitor_check_last_outcome{{{s.labels},outcome="{s.current}"}} 1\n'
                        for s in series if s.current])
    if i == 7:
        # A current outcome a reload dropped from the list (an undeclared one) shows as never ran.
        return "".join([(templates[s.outcomes].one_hot.get(s.current) or templates[s.outcomes].one_hot[""])
                        .replace("\0", s.labels) for s in series])
    if i == 8:
        return "".join([f'pam_monitor_status_transitions_total{{{s.labels},from="{a}",to="{b}"}} {n}\n'
                        for s in series if s.transitions for (a, b), n in sorted(s.transitions.items())])
    if i == 9:
        return "".join([f'pam_monitor_db_table_present{{{s.labels},table="{_esc(t)}"}} '
                        f"{_fmt((s.table_present or {}).get(t, 0.0))}\n" for s in series for t in s.tables])
    if i == 10:
        return "".join([f'pam_monitor_db_phase_duration_seconds{{{s.labels},phase="{p}"}} '
                        f"{_fmt((s.phase_seconds or {}).get(p, 0.0))}\n" for s in series for p in s.phases])
    http = [(s.labels, s.http) for s in series if s.http is not None]
    if i == 11:
        return "".join([(_HTTP_PHASES % _phase_values(f.phases)).replace("\0", lb) for lb, f in http])
    if i == 12:
        return "".join([f"probe_http_version{{{lb}}} {f.version!r}\n" for lb, f in http])
    if i == 13:
        return "".join([f"probe_http_content_length{{{lb}}} {f.content_length}\n" for lb, f in http])
    if i == 14:
        return "".join([f"probe_dns_lookup_time_seconds{{{lb}}} {f.dns_lookup_s!r}\n" for lb, f in http])
    if i == 15:
        return "".join([f"probe_http_ssl{{{lb}}} {0 if f.tls is None else 1}\n" for lb, f in http])
    # TLS series exist only once a handshake was seen: a 0 would read as a certificate that expired in 1970.
    tls = [(s.labels, s.tls) for s in series if s.tls is not None]
    if i == 16:
        return "".join([f"probe_ssl_earliest_cert_expiry{{{lb}}} {_fmt(t.earliest_expiry)}\n"
                        for lb, t in tls if t.earliest_expiry is not None])
    if i == 17:
        return "".join([f"probe_ssl_last_chain_expiry_timestamp_seconds{{{lb}}} {_fmt(t.chain_expiry)}\n"
                        for lb, t in tls if t.chain_expiry is not None])
    return "".join([f'probe_tls_version_info{{{lb},version="{t.version_label}"}} 1\n' for lb, t in tls])


class _Credentials(Collector):
    """pam_monitor_credential_expiry_timestamp_seconds{credential}: one series per credential whose expiry is
    readable; names come from the config (`<target>/<header>`, `identity/<name>`), never values."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        for name, expiry in sorted(self._metrics.credentials().items()):
            family.add_metric([name], expiry)
        return [family]

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "pam_monitor_credential_expiry_timestamp_seconds",
            "Unix time a credential pam-monitor sends expires (a JWT's exp: a static header, a Supabase key, an "
            "identity's current access token).",
            labels=["credential"],
        )


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
        self.credentials: Callable[[], Mapping[str, float]] = dict
        """Name -> expiry (Unix seconds) of the credentials pam-monitor holds, read at each scrape (the daemon
        sets it: the config's JWTs and the identities' current tokens, alerts/judge/credentials.py)."""
        self.registry.register(_Credentials(self))
        self._lock = threading.Lock()
        self._series: dict[str, _CheckSeries] = {}
        self._templates: dict[tuple[str, ...], _Templates] = {}
        self._outcome_lists: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._detail: frozenset[str] = frozenset()

    # -- per-check series ---------------------------------------------------------------------------------

    def set_checks(
        self, checks: Iterable[tuple[str, str, Sequence[Outcome], Sequence[str], Sequence[str], bool]],
        detail: Iterable[str] = (),
    ) -> None:
        """Declare the running checks as (name, kind, outcomes, tables, phases, speaks_http); series start at 0.
        Checks whose kind speaks HTTP (its Kind record says so) get blackbox_exporter's HTTP series, at 0 until
        their first run.

        `detail` names the opt-in families (`DETAIL`) to render from now on.

        Series of checks that keep their name and kind keep their values across a reload; series of removed
        checks disappear.
        """
        with self._lock:
            self._detail = frozenset(detail)
            old = self._series
            new: dict[str, _CheckSeries] = {}
            for name, kind, outcomes, tables, phases, speaks_http in checks:
                previous = old.get(name)
                series = _CheckSeries(
                    check=name,
                    kind=kind,
                    labels=f'check="{_esc(name)}",kind="{_esc(kind)}"',
                    outcomes=self._shared(tuple(o.value for o in outcomes)),
                    tables=tuple(tables),
                    phases=tuple(phases),
                    http=_NO_HTTP if speaks_http else None,
                )
                series.results = [0] * len(series.outcomes)
                if previous is not None and previous.kind == kind:
                    series.success, series.duration = previous.success, previous.duration
                    series.status_code, series.last_run = previous.status_code, previous.last_run
                    series.buckets, series.hist_count = previous.buckets, previous.hist_count
                    series.hist_sum = previous.hist_sum
                    counts = dict(zip(previous.outcomes, previous.results, strict=True))
                    series.results = [counts.get(o, 0) for o in series.outcomes]
                    series.current, series.transitions = previous.current, previous.transitions
                    if previous.table_present:
                        series.table_present = {
                            t: v for t, v in previous.table_present.items() if t in series.tables
                        }
                    series.phase_seconds = previous.phase_seconds
                    series.http, series.tls = previous.http, previous.tls
                new[name] = series
            self._series = new
            self.checks_configured.set(len(new))

    def _shared(self, outcomes: tuple[str, ...]) -> tuple[str, ...]:
        """One tuple object per outcome list (1,000 checks of one kind share it), with its templates made."""
        if outcomes not in self._templates:
            self._templates[outcomes] = _Templates(outcomes)
            self._outcome_lists[outcomes] = outcomes
        return self._outcome_lists[outcomes]

    def observe(self, result: Result, previous: Outcome | None) -> None:
        """Record one finished run."""
        with self._lock:
            series = self._series.get(result.check)
            if series is None:  # a run that finished after its check was removed by a reload
                return
            outcome = result.outcome.value
            series.success = 1 if result.success else 0
            # Written to the microsecond (the timestamp to the millisecond): the digits repr adds beyond that are
            # noise, and at 8 such lines a check they were a tenth of a scrape.
            series.duration = round(result.duration_s, 6)
            series.status_code = result.status_code or 0
            series.last_run = round(result.finished_at, 3)
            for i, bound in enumerate(CHECK_DURATION_BUCKETS):
                if result.duration_s <= bound:
                    series.buckets[i] += 1
                    break
            series.hist_count += 1
            series.hist_sum += result.duration_s
            try:
                series.results[series.outcomes.index(outcome)] += 1
            except ValueError:  # a kind produced an outcome it did not declare: still count it
                series.outcomes = self._shared((*series.outcomes, outcome))
                series.results.append(1)
            series.current = outcome
            if previous is not None and previous.value != outcome:
                key = (previous.value, outcome)
                if series.transitions is None:
                    series.transitions = {}
                series.transitions[key] = series.transitions.get(key, 0) + 1
            # A run that never reached the table checks (database down) reports no tables: the last known
            # presence stays, so a dead connection does not read as every table missing.
            for table, present in result.tables.items():
                if table in series.tables:
                    if series.table_present is None:
                        series.table_present = {}
                    series.table_present[table] = 1.0 if present else 0.0
            for phase, seconds in result.phases.items():
                if phase in series.phases:
                    if series.phase_seconds is None:
                        series.phase_seconds = {}
                    series.phase_seconds[phase] = seconds
            if series.http is not None:
                # A run that sent no request (a config problem found before sending) reads as no answer.
                facts = result.http or _NO_HTTP
                if facts is not _NO_HTTP:  # rendering reads all five phases, to the microsecond like the duration
                    facts = dataclasses.replace(facts, phases={p: round(facts.phases.get(p, 0.0), 6)
                                                               for p in HTTP_PHASES},
                                                dns_lookup_s=round(facts.dns_lookup_s, 6))
                series.http = facts
                # A run whose first request got no handshake and no answer (refused, a failed handshake, a timeout
                # before it) says nothing about the certificate: the last one seen stays. An answer over plain HTTP
                # (the target moved off https) ends the TLS series.
                if facts.tls is not None or facts.version:
                    series.tls = facts.tls

    # -- exposition ---------------------------------------------------------------------------------------

    def render(self) -> bytes:
        """The full /metrics body in the Prometheus text format 0.0.4."""
        return b"".join(self.render_chunks())

    def render_chunks(self) -> Iterator[bytes]:
        """The /metrics body in pieces of about CHUNK_BYTES.

        Per-check families are rendered from their values at each scrape: nothing rendered is kept (at the
        usual scrape interval every check has run since the last scrape anyway), and no piece is large enough
        for the allocator to keep megabytes resident after the scrape. Runs that finish while a scrape is
        being sent show in the pieces rendered after them.
        """
        yield generate_latest(self.registry)
        pending: list[str] = []
        size = 0
        for i, header in enumerate(_HEADERS):
            if _DETAIL_OF[i] is not None and _DETAIL_OF[i] not in self._detail:
                continue
            pending.append(header)
            with self._lock:
                series = list(self._series.values())
            for start in range(0, len(series), RENDER_BATCH):
                with self._lock:
                    text = _family_lines(i, series[start:start + RENDER_BATCH], self._templates)
                pending.append(text)
                size += len(text)
                if size >= CHUNK_BYTES:
                    yield "".join(pending).encode()
                    pending, size = [], 0
        yield "".join(pending).encode()


__all__ = ["CONTENT_TYPE", "DETAIL", "Metrics"]
