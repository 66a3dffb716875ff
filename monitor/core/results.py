"""The closed outcome enum and the result of one run of a check."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from monitor.core.clock import iso


class Outcome(enum.StrEnum):
    """Every result has exactly one of these; the set is closed and names are public (metric labels)."""

    OK = "ok"
    SLOW = "slow"
    UNEXPECTED_STATUS = "unexpected_status"
    SERVER_ERROR = "server_error"
    AUTH_BYPASS = "auth_bypass"
    RATE_LIMITED = "rate_limited"
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    TLS_ERROR = "tls_error"
    DNS_ERROR = "dns_error"
    INVALID_RESPONSE = "invalid_response"
    TABLE_MISSING = "table_missing"
    COLUMN_MISSING = "column_missing"
    RLS_DISABLED = "rls_disabled"
    PERMISSION_DENIED = "permission_denied"
    POLICY_ERROR = "policy_error"
    DB_ERROR = "db_error"
    INTERNAL_ERROR = "internal_error"
    IDENTITY_FAILED = "identity_failed"
    """The monitor cannot act as the user (its token refused, its own data unreadable): not the backend's fault."""
    HEARTBEAT_MISSED = "heartbeat_missed"
    SCHEMA_CACHE_STALE = "schema_cache_stale"
    """PostgREST says a table is not in its schema cache while the database's catalogue has it (reload the cache)."""
    MIGRATION_PENDING = "migration_pending"
    """A migration file in the repository is not recorded as applied in supabase_migrations.schema_migrations."""
    CORS_REFUSED = "cors_refused"
    """A browser on the check's `cors.origin` could not read the answer (preflight or CORS headers wrong)."""

    @property
    def success(self) -> bool:
        """Whether this outcome counts as a passing probe (`probe_success` 1)."""
        return self is Outcome.OK

    @property
    def unreachable(self) -> bool:
        """Whether the target could not be talked to at all (DNS, connect, TLS, timeout)."""
        return self in _UNREACHABLE


_UNREACHABLE = frozenset({Outcome.TIMEOUT, Outcome.CONNECTION_ERROR, Outcome.TLS_ERROR, Outcome.DNS_ERROR})

# Outcomes any network probe can produce, whatever its kind; each probe module adds its own.
TRANSPORT_OUTCOMES: tuple[Outcome, ...] = (
    Outcome.OK,
    Outcome.TIMEOUT,
    Outcome.CONNECTION_ERROR,
    Outcome.TLS_ERROR,
    Outcome.DNS_ERROR,
    Outcome.INTERNAL_ERROR,
)

_EMPTY: Mapping[str, Any] = MappingProxyType({})

HTTP_PHASES: tuple[str, ...] = ("resolve", "connect", "tls", "processing", "transfer")
"""blackbox_exporter's phases of an HTTP request, in order (the `phase` label of probe_http_duration_seconds)."""


TLS_VERSIONS: dict[str, str] = {"TLSv1": "TLS 1.0", "TLSv1.1": "TLS 1.1", "TLSv1.2": "TLS 1.2", "TLSv1.3": "TLS 1.3"}
"""The ssl module's protocol names as blackbox_exporter writes them (the `version` label of probe_tls_version_info);
any other reads "unknown", as there."""


@dataclass(frozen=True, slots=True)
class TlsFacts:
    """What a TLS handshake negotiated and what the peer's certificates say.

    `version` is the protocol as the ssl module names it ('TLSv1.3'); `not_after` the leaf certificate's expiry
    in Unix seconds; `subject` and `issuer` the leaf's 'CN=...,O=...' strings. `earliest_expiry` is the earliest
    notAfter of every certificate the server presented (blackbox_exporter's probe_ssl_earliest_cert_expiry),
    known with verify_tls: false too; `chain_expiry` the earliest notAfter of the chain that was verified up to a
    trusted root (its probe_ssl_last_chain_expiry_timestamp_seconds), None when nothing was verified.
    """

    version: str | None
    not_after: float | None
    subject: str | None
    issuer: str | None
    earliest_expiry: float | None = None
    chain_expiry: float | None = None

    @property
    def version_label(self) -> str:
        """The version as blackbox_exporter labels it ('TLS 1.3')."""
        return TLS_VERSIONS.get(self.version or "", "unknown")


@dataclass(frozen=True, slots=True)
class HttpFacts:
    """What the transport saw of a run's first HTTP request, for blackbox_exporter's per-probe HTTP metrics.

    `phases` maps each of HTTP_PHASES to seconds (0 for a phase not reached, or skipped on a reused
    connection); `version` is 1.0 or 1.1 (0: no answer); `content_length` is the Content-Length the server
    announced, -1 when the answer had none (chunked, or read until close) and 0 when no answer came, as
    blackbox_exporter reports it; `dns_lookup_s` is the name resolution; `tls` is None for plain HTTP.
    """

    phases: Mapping[str, float]
    version: float = 0.0
    content_length: int = 0
    dns_lookup_s: float = 0.0
    tls: TlsFacts | None = None


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What a probe observed. The runner adds the check's identity, the duration and the timestamps.

    `message` is the human sentence with the actual values ("expected 401|403, got 500 after 0.12 s").
    `details` holds observed values for /status and alert annotations (never secrets, never in labels).
    `tables` maps each required table to whether it is present (db and postgrest probes).
    `phases` maps a phase name (connect, query, canary, health, synthesis) to its duration in seconds.
    `retry_after` is the seconds the target asked us to wait (a 429 or 503 with Retry-After), else None.
    `http` is what the transport saw of the run's first HTTP request (HTTP kinds; None for the others).
    """

    outcome: Outcome
    message: str
    status_code: int | None = None
    details: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    tables: Mapping[str, bool] = field(default_factory=lambda: _EMPTY)
    phases: Mapping[str, float] = field(default_factory=lambda: _EMPTY)
    retry_after: float | None = None
    http: HttpFacts | None = None


@dataclass(frozen=True, slots=True, init=False)
class Result:
    """One finished run of a check: the probe's observation, as it came, plus identity and timing.

    The runner builds it as `Result(check, kind, observed, duration_s=..., started_at=..., finished_at=...)`;
    `outcome`, `message`, `status_code`, `details`, `tables` and `phases` read through to `observed`. Without
    `observed`, the keywords `outcome=`, `message=`, ... build the observation in place (tests, replays).
    """

    check: str
    kind: str
    observed: ProbeResult
    duration_s: float
    started_at: float
    finished_at: float
    confirmation: bool

    def __init__(
        self,
        check: str,
        kind: str,
        observed: ProbeResult | None = None,
        *,
        duration_s: float,
        started_at: float,
        finished_at: float,
        confirmation: bool = False,
        outcome: Outcome | None = None,
        message: str = "",
        status_code: int | None = None,
        details: Mapping[str, Any] = _EMPTY,
        tables: Mapping[str, bool] = _EMPTY,
        phases: Mapping[str, float] = _EMPTY,
    ) -> None:
        if observed is None:
            if outcome is None:
                raise TypeError("Result needs either observed or outcome")
            observed = ProbeResult(outcome, message, status_code, details, tables, phases)
        elif outcome is not None or message or status_code is not None or details or tables or phases:
            raise TypeError("Result takes either observed or the observation's fields, not both")
        for name, value in (
            ("check", check), ("kind", kind), ("observed", observed), ("duration_s", duration_s),
            ("started_at", started_at), ("finished_at", finished_at), ("confirmation", confirmation),
        ):
            object.__setattr__(self, name, value)

    @property
    def outcome(self) -> Outcome:
        """The run's outcome."""
        return self.observed.outcome

    @property
    def message(self) -> str:
        """The human sentence with the observed values."""
        return self.observed.message

    @property
    def status_code(self) -> int | None:
        """The HTTP status that arrived, if any."""
        return self.observed.status_code

    @property
    def details(self) -> Mapping[str, Any]:
        """Observed values for /status and alert annotations."""
        return self.observed.details

    @property
    def tables(self) -> Mapping[str, bool]:
        """Each required table the run looked at, and whether it is present."""
        return self.observed.tables

    @property
    def phases(self) -> Mapping[str, float]:
        """Each phase's duration in seconds."""
        return self.observed.phases

    @property
    def http(self) -> HttpFacts | None:
        """The transport's view of the run's first HTTP request (HTTP kinds only)."""
        return self.observed.http

    @property
    def success(self) -> bool:
        """Whether the run passed."""
        return self.outcome.success

    def to_status(self) -> dict[str, Any]:
        """The JSON shape shared by /status and `check --format json`."""
        out: dict[str, Any] = {
            "name": self.check,
            "kind": self.kind,
            "outcome": self.outcome.value,
            "success": self.success,
            "status_code": self.status_code,
            "duration_s": round(self.duration_s, 6),
            "message": self.message,
            "finished_at": iso(self.finished_at),
        }
        if self.details:
            out["details"] = dict(self.details)
        if self.tables:
            out["tables"] = dict(self.tables)
        tls = self.http.tls if self.http is not None else None
        if tls is not None:
            out["tls"] = tls_status(tls, self.finished_at)
        return out


def tls_status(tls: TlsFacts, now: float) -> dict[str, Any]:
    """A handshake's facts as /status shows them: version, the leaf's subject and issuer, expiries as ISO times,
    and the days left until the earliest one (from `now`, the run's end)."""
    earliest = tls.earliest_expiry if tls.earliest_expiry is not None else tls.not_after
    return {
        "version": tls.version_label,
        "subject": tls.subject,
        "issuer": tls.issuer,
        "not_after": iso(tls.not_after) if tls.not_after is not None else None,
        "earliest_expiry": iso(earliest) if earliest is not None else None,
        "verified_chain_expiry": iso(tls.chain_expiry) if tls.chain_expiry is not None else None,
        "days_left": round((earliest - now) / 86400, 2) if earliest is not None else None,
    }

