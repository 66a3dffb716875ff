"""The built-in alert rules, one record each: which results are bad or good for which alert, with labels.

Adding a rule is one `Rule` record in `RULES` plus its name in the `AlertName` literal (monitor/core/config/base.py);
which check kinds raise it is declared on the probes side (`rules_by_kind`, handed to the engine); alerts.judge.evaluate
runs them on a result. A record says what turns it BAD twice: `evaluate` judges a real result (status code, tables,
what the check remembers, the certificate) and `fires_on` declares it per kind for people (readme_tables.py writes the
README's tables from it); tests/alerts/test_outcome_table.py holds the two equal. `CheckFailed` is the fallback:
BAD for any failing outcome that no other rule of the check's kind turns BAD, so no failure is silent.
A journey's alerts are per step (judge/journey.py): every rule judges the failing step with what is remembered about
that step, and builds its instances' keys and `step` label from `Facts.step`. A check whose identity could not sign
in (step `sign_in`) never reached its target: it raises CheckFailed, not ContractRegression, EndpointDown or
DatabaseDown.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

from alerts.judge import burn, certs, credentials
from alerts.labels import alert_key, build_annotations, identity_labels
from alerts.labels import daemon_labels as _daemon_labels
from alerts.model import CheckMemory, Observation, Signal
from monitor.core.config import SIGN_IN_STEP, AlertName, Config
from monitor.core.kinds import KindRules, kind_rules
from monitor.core.results import Outcome, Result
from monitor.core.status import is_server_error

Severity = Literal["critical", "warning", "info", "none"]
SEVERITIES: tuple[Severity, ...] = ("critical", "warning", "info", "none")
CHECK_FAILED = "CheckFailed"
_GOOD = frozenset({Outcome.OK, Outcome.SLOW})
_UNREACHABLE = frozenset({Outcome.TIMEOUT, Outcome.CONNECTION_ERROR, Outcome.TLS_ERROR, Outcome.DNS_ERROR})
_DB_DOWN = _UNREACHABLE | {Outcome.DB_ERROR}
FAILING: frozenset[Outcome] = frozenset(Outcome) - {Outcome.OK, Outcome.RATE_LIMITED}
"""Every outcome that is a failure (`rate_limited` is inconclusive, neither good nor bad)."""
_NONE: Mapping[str, str] = MappingProxyType({})


class Facts(NamedTuple):
    """What a rule looks at: one result of one check, what the rules remember about the check, the keys of its
    active alert instances, and labels the engine adds (`depends_on`). (A named tuple: one is built per result.)"""

    config: Config
    check: Any
    result: Result
    memory: CheckMemory
    known: Collection[str]
    extra_labels: Mapping[str, str]
    step: str = ""  # the journey step judged ("" for other kinds): part of the alert's identity and labels
    traits: KindRules = KindRules()  # how the check's kind says its results are judged (its Kind record)


Evaluate = Callable[[str, Facts], list[Observation]]
"""`evaluate(alertname, facts)`: every instance of the alert the result says something about."""
FiresOn = Callable[[KindRules], frozenset[Outcome]]
"""`fires_on(kind_rules)`: the outcomes that turn the alert BAD on a check of a kind (what the README tables say)."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One built-in alert: its name, default severity, when it fires (one line), runbook hint, how a result is
    judged (`evaluate`) and the same declared per kind (`fires_on`; `after_good`: only once the check has answered
    as expected; `fallback`: the outcomes no other rule of the kind covers; `covers`: whether its BAD accounts for
    a failing outcome, so that no CheckFailed is raised for it)."""

    name: AlertName
    severity: Severity
    fires_when: str
    runbook: str
    evaluate: Evaluate
    fires_on: FiresOn
    after_good: bool = False
    fallback: bool = False
    covers: bool = True


def severity_of(config: Config, alertname: str) -> str:
    """The configured severity of an alertname (built-in default unless alerts.rules overrides it)."""
    override = config.alerts.rules.get(alertname)  # type: ignore[call-overload]
    if override is not None and override.severity is not None:
        return str(override.severity)
    return RULES[alertname].severity


def rules_for(config: Config, check: Any, rules_by_kind: Mapping[str, Sequence[str]]) -> tuple[str, ...]:
    """The alertnames that apply to a check: those of its kind, minus rules disabled globally or on the check."""
    out = []
    for name in rules_by_kind.get(check.kind, ()):
        override = config.alerts.rules.get(name)  # type: ignore[call-overload]
        if override is not None and not override.enabled:
            continue
        if name in check.disable_alerts:
            continue
        out.append(name)
    return kind_rules(rules_by_kind.get(check.kind, ())).having(out)


def daemon_labels(config: Config, alertname: str) -> dict[str, str]:
    """The labels of a daemon-level alert (MonitorWatchdog, MonitorSaturated), with its configured severity."""
    return _daemon_labels(config, alertname, severity_of(config, alertname))


def watchdog_labels(config: Config) -> dict[str, str]:
    """The MonitorWatchdog's labels, with its configured severity."""
    return daemon_labels(config, "MonitorWatchdog")


def base_labels(facts: Facts, alertname: str) -> dict[str, str]:
    """The labels of an alert on the facts' check (external, the check's, then identity labels)."""
    labels = identity_labels(facts.config, facts.check, alertname, severity_of(facts.config, alertname),
                             facts.extra_labels)
    if facts.step:
        labels["step"] = facts.step
    return labels


def missing_tables(result: Result) -> list[str]:
    """Tables this result reports missing: `tables` entries False, details tables_missing/table (never a table the
    database has and only PostgREST's stale schema cache lacks: details stale_tables)."""
    stale = set(_listed(result, STALE_TABLES))
    names: dict[str, None] = {name: None for name, present in result.tables.items()
                              if not present and name not in stale}
    listed = result.details.get("tables_missing")
    if isinstance(listed, list | tuple):
        names.update({str(t): None for t in listed})
    single = result.details.get("table")
    if isinstance(single, str) and result.outcome is Outcome.TABLE_MISSING:
        names[single] = None
    if not names and result.outcome is Outcome.TABLE_MISSING:
        names["unknown"] = None
    return list(names)


# ---------------------------------------------------------------------------------------------- how rules judge

SignalFn = Callable[[Facts], Signal | None]
"""`facts -> BAD, GOOD or None` (the result says nothing about this alert)."""


def _one_per_check(signal_of: SignalFn, extra_labels: Callable[[Facts], Mapping[str, str]] | None = None) -> Evaluate:
    """An alert with one instance per check, judged by `signal_of`."""

    def evaluate(alertname: str, facts: Facts) -> list[Observation]:
        check = facts.check
        signal = signal_of(facts)
        if signal is None:
            return []
        key = alert_key(alertname, check.name, step=facts.step)
        if signal is Signal.GOOD:
            return [Observation(key, alertname, check.name, signal)]
        labels = base_labels(facts, alertname)
        if extra_labels is not None:
            labels.update(extra_labels(facts))
        notes = build_annotations(facts.result, RULES[alertname].runbook, step=facts.step)
        return [Observation(key, alertname, check.name, signal, labels, notes)]

    return evaluate


def _signed_out(result: Result) -> bool:
    """Whether the run says nothing about its target: its identity could not get a token (step `sign_in`), or the
    monitor could not act as its user (`identity_failed`: its token refused, its own data unreadable)."""
    return result.outcome is Outcome.IDENTITY_FAILED or result.details.get("step") == SIGN_IN_STEP


def _answered(result: Result) -> bool:
    return result.outcome in _GOOD or result.status_code is not None


def _is_5xx(result: Result) -> bool:
    return is_server_error(result.status_code)


def _contract_regression(facts: Facts) -> Signal | None:
    result = facts.result
    if _signed_out(result):
        return None  # the auth server failed, not this endpoint
    if result.outcome in _GOOD or (result.status_code is not None and not _is_5xx(result)):
        return Signal.GOOD
    if facts.memory.last_good_status is None:
        # Never answered as expected: there is no contract to regress from (EndpointDown or CheckFailed says it).
        return None
    if result.outcome is Outcome.SERVER_ERROR or (result.outcome is Outcome.TABLE_MISSING and _is_5xx(result)):
        return Signal.BAD
    return None


def _from_to(facts: Facts) -> dict[str, str]:
    """The `from` (the last good HTTP status, kept across restarts) and `to` labels of a ContractRegression."""
    return {"from": str(facts.memory.last_good_status), "to": str(facts.result.status_code)}


def _auth_bypass(facts: Facts) -> Signal | None:
    if facts.result.outcome is Outcome.AUTH_BYPASS:
        return Signal.BAD
    return Signal.GOOD if _answered(facts.result) else None


def _heartbeat_missed(facts: Facts) -> Signal | None:
    outcome = facts.result.outcome
    if outcome is Outcome.HEARTBEAT_MISSED:
        return Signal.BAD
    return Signal.GOOD if outcome is Outcome.OK else None


def _cors_broken(facts: Facts) -> Signal | None:
    outcome = facts.result.outcome
    if outcome is Outcome.CORS_REFUSED:
        return Signal.BAD
    return Signal.GOOD if outcome in _GOOD else None


def _schema_drift(facts: Facts) -> Signal | None:
    outcome = facts.result.outcome
    if outcome in (Outcome.COLUMN_MISSING, Outcome.RLS_DISABLED):
        return Signal.BAD
    return Signal.GOOD if outcome in _GOOD else None


def _endpoint_down(facts: Facts) -> Signal | None:
    result, http = facts.result, facts.traits.server_error_is_down
    if _signed_out(result):
        return None
    if result.outcome.unreachable or (http and result.outcome is Outcome.SERVER_ERROR):
        return Signal.BAD
    if result.outcome in _GOOD or (result.status_code is not None and not (http and _is_5xx(result))):
        return Signal.GOOD
    return None


def _voice_degraded(facts: Facts) -> Signal | None:
    if facts.result.outcome is Outcome.IDENTITY_FAILED:
        return None  # the monitor's identity failed, not the voice system (CheckFailed says it)
    return Signal.GOOD if facts.result.outcome is Outcome.OK else Signal.BAD


def _database_down(facts: Facts) -> Signal | None:
    outcome = facts.result.outcome
    if _signed_out(facts.result):
        return None  # the identity's sign-in failed before the database was asked
    if outcome in _DB_DOWN:
        return Signal.BAD
    # Any other answer (even a missing table or a permission error) proves the round trip works.
    return None if outcome is Outcome.INTERNAL_ERROR else Signal.GOOD


def _tables(alertname: str, facts: Facts) -> list[Observation]:
    """One instance per missing table; a table listed present, or known but not named on a passing run, is GOOD."""
    check, result, step = facts.check, facts.result, facts.step
    out: list[Observation] = []
    for table in missing_tables(result):
        labels = base_labels(facts, alertname)
        labels["table"] = table
        out.append(Observation(alert_key(alertname, check.name, table, step), alertname, check.name, Signal.BAD,
                               labels, build_annotations(result, RULES[alertname].runbook, table, step)))
    prefix = alert_key(alertname, check.name, "", step)
    seen = {o.key for o in out}
    for name in _listed(result, STALE_TABLES):
        # The database's catalogue has it (PostgREST's cache is stale): the table is not missing.
        key = alert_key(alertname, check.name, name, step)
        if key not in seen:
            out.append(Observation(key, alertname, check.name, Signal.GOOD))
            seen.add(key)
    for name, present in result.tables.items():
        key = alert_key(alertname, check.name, name, step)
        if present and key not in seen:
            out.append(Observation(key, alertname, check.name, Signal.GOOD))
            seen.add(key)
    if result.outcome in _GOOD:
        for key in facts.known:
            if key.startswith(prefix + "/") and key not in seen:
                out.append(Observation(key, alertname, check.name, Signal.GOOD))
    return out


_ACCESS = frozenset({Outcome.PERMISSION_DENIED, Outcome.POLICY_ERROR})


def _access_denied(alertname: str, facts: Facts) -> list[Observation]:
    """One instance per table the application's role cannot read (42501 or 42P17); GOOD for known tables it
    read again (on a passing run, or a refused run that names other tables)."""
    check, result = facts.check, facts.result
    if result.outcome not in _GOOD and result.outcome not in _ACCESS:
        return []  # the run never got to read the tables as the role
    denied: list[str] = []
    if result.outcome in _ACCESS:
        listed = result.details.get("denied")
        single = result.details.get("table")
        denied = ([str(t) for t in listed] if isinstance(listed, Mapping | list | tuple) and listed
                  else [single] if isinstance(single, str) and single else ["unknown"])
    out: list[Observation] = []
    for table in denied:
        labels = base_labels(facts, alertname)
        labels["table"] = table
        out.append(Observation(alert_key(alertname, check.name, table), alertname, check.name, Signal.BAD,
                               labels, build_annotations(result, RULES[alertname].runbook, table)))
    seen = {o.key for o in out}
    prefix = alert_key(alertname, check.name) + "/"
    out.extend(Observation(key, alertname, check.name, Signal.GOOD) for key in facts.known
               if key.startswith(prefix) and key not in seen)
    return out


STALE_TABLES = "stale_tables"
"""details key of a postgrest result: tables PostgREST's schema cache lacks while the database has them."""
PENDING_MIGRATIONS = "pending_migrations"
"""details key of a db result: migration versions in the directory and not applied in the database."""


def _listed(result: Result, key: str) -> list[str]:
    value = result.details.get(key)
    return [str(v) for v in value] if isinstance(value, list | tuple) else []


def _per_listed(outcome: Outcome, key: str, label: str, compared: str) -> Evaluate:
    """One instance per name the result lists under details[`key`] (label `label`; `unknown` when a result of
    `outcome` lists none). A known instance not listed is GOOD when the run compared (details[`compared`] true,
    or a passing run that does not say it could not)."""

    def evaluate(alertname: str, facts: Facts) -> list[Observation]:
        check, result = facts.check, facts.result
        if _signed_out(result):
            return []
        names = _listed(result, key) or (["unknown"] if result.outcome is outcome else [])
        out: list[Observation] = []
        for name in names:
            labels = base_labels(facts, alertname)
            labels[label] = name
            out.append(Observation(alert_key(alertname, check.name, name), alertname, check.name, Signal.BAD, labels,
                                   build_annotations(result, RULES[alertname].runbook,
                                                     name if label == "table" else "")))
        said = result.details.get(compared)
        if said is True or (said is None and result.outcome in _GOOD):  # False: this run could not compare
            seen = {o.key for o in out}
            prefix = alert_key(alertname, check.name) + "/"
            out.extend(Observation(k, alertname, check.name, Signal.GOOD) for k in facts.known
                       if k.startswith(prefix) and k not in seen)
        return out

    return evaluate


def _not_from_results(alertname: str, facts: Facts) -> list[Observation]:
    """Daemon-level alerts are not judged from results: the engine sends the watchdog while results keep
    arriving, and judges MonitorSaturated from the skipped-run count (alerts/judge/saturated.py)."""
    return []


def _always(*outcomes: Outcome) -> FiresOn:
    chosen = frozenset(outcomes)
    return lambda kind: chosen


RULES: Mapping[str, Rule] = {rule.name: rule for rule in (
    Rule("ContractRegression", "critical",
         "a check that answered as expected now gets a 5xx; labels `from` (the last good status, kept across "
         "restarts) and `to`, e.g. `from=\"403\"`, `to=\"500\"`; a check never seen good cannot regress",
         "The endpoint used to answer as expected and now fails with a server error: check the latest deploy and "
         "the backend logs for this route, then roll back if it started with a release.",
         _one_per_check(_contract_regression, _from_to), _always(Outcome.SERVER_ERROR, Outcome.TABLE_MISSING),
         after_good=True),
    Rule("AuthBypass", "critical",
         "an `auth_contract` check gets 2xx, or a forged token gets past the auth layer",
         "A request without valid credentials got past the auth layer: treat as a security incident, check the "
         "route's auth dependency and JWT verification (alg, signature, expiry), consider disabling it.",
         _one_per_check(_auth_bypass), _always(Outcome.AUTH_BYPASS)),
    Rule("TableMissing", "critical",
         "a required table is absent (db, postgrest, or a 5xx body naming it); label `table`",
         "A required table is absent: check recent migrations (a dropped or renamed table) and the PostgREST "
         "schema cache (NOTIFY pgrst, 'reload schema').",
         _tables, _always(Outcome.TABLE_MISSING)),
    Rule("SchemaDrift", "warning",
         "a required column is missing or RLS is off",
         "A required column is missing or row-level security is off: compare the live schema with the "
         "migrations; re-enable RLS (ALTER TABLE ... ENABLE ROW LEVEL SECURITY) at once.",
         _one_per_check(_schema_drift), _always(Outcome.COLUMN_MISSING, Outcome.RLS_DISABLED)),
    Rule("EndpointDown", "critical",
         "timeout, connection, TLS or DNS error, or a 5xx on an `http` check",
         "The endpoint cannot be reached or answers 5xx: check the process, its host, DNS, TLS and the load "
         "balancer.",
         _one_per_check(_endpoint_down),
         lambda kind: _UNREACHABLE | ({Outcome.SERVER_ERROR} if kind.server_error_is_down else frozenset())),
    Rule("VoiceDegraded", "warning",
         "voice health not ok, synthesis failed or slow",
         "The voice subsystem is degraded: check the TTS provider (Edge-TTS), its fallbacks and the voice health "
         "endpoint's details.",
         _one_per_check(_voice_degraded), _always(*(FAILING - {Outcome.IDENTITY_FAILED}))),
    Rule("DatabaseDown", "critical",
         "the db round trip fails (connection, timeout, authentication, other SQLSTATE)",
         "The database round trip fails: check PostgreSQL availability, connection limits, credentials and "
         "network.",
         _one_per_check(_database_down), _always(*_DB_DOWN)),
    Rule("AccessDenied", "critical",
         "the application's role cannot read a required table: `permission_denied` (42501) or `policy_error` "
         "(42P17, a recursive row-level security policy) on a `db` check with `as_role`; label `table`",
         "The application's role cannot read a required table: a revoked GRANT (42501: GRANT SELECT ... TO "
         "authenticated) or a row-level security policy that recurses (42P17: a policy that queries its own "
         "table; move the lookup into a SECURITY DEFINER function). Check the latest migration.",
         _access_denied, _always(Outcome.PERMISSION_DENIED, Outcome.POLICY_ERROR)),
    Rule(certs.NAME, "warning",
         "the earliest notAfter of the certificates an `https` check's server presents is under "
         "`alerts.cert_warning` (14d; severity warning) or `alerts.cert_critical` (3d; severity critical), whatever "
         "the run's outcome; also with `verify_tls: false`. An expired or untrusted certificate that fails "
         "verification is `tls_error` (EndpointDown)",
         certs.RUNBOOK, certs.certificate_expiring, _always(), covers=False),
    Rule("CheckFailed", "warning",
         "any other failure: an unexpected status, a body or JSON expectation, a permission or policy error, a "
         "probe bug, `slow` where nothing else covers it; or a check rate-limited for `alerts.rate_limited_after` "
         "(pam-monitor cannot see the endpoint). No failure is silent",
         "The check failed in a way no more specific alert covers: read the summary (expected vs got) and the "
         "observed values; a rate-limited check needs a lower request rate (max_rate) or an allow-list entry.",
         _not_from_results, _always(*FAILING), fallback=True),
    Rule("MonitorBlocked", "critical",
         "the target refuses pam-monitor itself: a block-marker body (blocked, banned, denied by policy, a WAF page) "
         "on its health check or on 2 of its checks, or the same foreign refusal shape on 2 of its checks (the health "
         "check among them); one per target (label `target`); its other alerts are held behind it",
         "The target refuses pam-monitor itself (an IP-blocking middleware, a WAF, a gateway whose credentials "
         "expired): every check of this target is blind until this clears. Read the quoted body; allow-list the "
         "monitor's address or user agent, renew the gateway credentials, or lower the request rate (max_rate).",
         _not_from_results, _always(), covers=False),
    Rule("HeartbeatMissed", "critical",
         "a `heartbeat` check got no call within `interval` + `grace`, or its job called `/fail`",
         "A scheduled job did not report in time, or reported a failure: check that it ran (cron, systemd timer, "
         "Kubernetes CronJob), its logs and its exit status; the summary says when it last reported.",
         _one_per_check(_heartbeat_missed), _always(Outcome.HEARTBEAT_MISSED)),
    Rule(burn.NAME, "critical",
         "an SLO's error ratio over both windows of one of its burn alerts exceeds `factor x (1 - objective)`: by "
         "default critical at 14.4x over 1 h and 5 min and at 6x over 6 h and 30 min, warning at 1x over 3 d and "
         "6 h; labels `slo`, `window` (the long one), `severity` (the burn's); resolves when the burn stops",
         burn.RUNBOOK,
         _not_from_results, _always(), covers=False),
    Rule("SchemaCacheStale", "critical",
         "a `postgrest` check with `database` gets PGRST205 (not in the schema cache) for a table the database's "
         "catalogue has; label `table`",
         "PostgREST's schema cache is stale: the table exists in the database but the API does not know it yet "
         "(created or altered after PostgREST loaded its schema). Run NOTIFY pgrst, 'reload schema'; on Supabase, "
         "in the SQL editor. Migrations that change the schema should end with it.",
         _per_listed(Outcome.SCHEMA_CACHE_STALE, STALE_TABLES, "table", "catalogue_checked"),
         _always(Outcome.SCHEMA_CACHE_STALE)),
    Rule("MigrationPending", "warning",
         "a `db` check with `migrations` finds a migration file whose version is not in "
         "supabase_migrations.schema_migrations; one per version (label `version`)",
         "A migration in the repository was never applied to this database: run `supabase db push` (or "
         "`supabase migration up`) against it, or apply the file and record its version. Check the deploy "
         "pipeline's migration step.",
         _per_listed(Outcome.MIGRATION_PENDING, PENDING_MIGRATIONS, "version", "migrations_compared"),
         _always(Outcome.MIGRATION_PENDING)),
    Rule("CorsBroken", "critical",
         "a check with `cors` gets `cors_refused`: the preflight or a response lacks the CORS headers a browser on "
         "the frontend's origin needs (Access-Control-Allow-Origin, -Credentials, -Methods, -Headers)",
         "Browsers on the frontend's origin cannot read this endpoint (users see 'Failed to load'), though server-"
         "side probes pass: check the backend's CORS settings (allowed origins, allow_credentials, allowed headers "
         "such as X-CSRF-Token, allowed methods) and any proxy that strips or answers OPTIONS.",
         _one_per_check(_cors_broken), _always(Outcome.CORS_REFUSED)),
    Rule(credentials.NAME, "warning",
         "a JWT pam-monitor sends (`Authorization: Bearer` or `apikey` in a target's or check's `headers`, a "
         "sign_in identity's `api_key`) has an `exp` under `alerts.credential_warning` (14d; severity warning) or "
         "`alerts.credential_critical` (3d; severity critical), whatever the run's outcome; label `credential` "
         "names it (`<target>/<header>`, never its value)",
         credentials.RUNBOOK, credentials.credential_expiring, _always(), covers=False),
    Rule("MonitorSaturated", "warning",
         "pam-monitor skips runs because it cannot keep up (CPU, event-loop lag, its own request slots or a "
         "target's max_rate); it is the monitor, not the target",
         "pam-monitor skips runs because it cannot keep up (CPU, event-loop lag, its own request slots or a "
         "target's max_rate): the checks it still reports are honest, but fewer. Give it more CPU, fewer checks, "
         "longer intervals or more http.max_in_flight; see pam_monitor_scheduler_skipped_runs_total and "
         "pam_monitor_event_loop_lag_seconds.",
         _not_from_results, _always()),
    Rule("MonitorWatchdog", "none",
         "always, while the daemon runs (route it to a dead man's switch)",
         "Always firing while pam-monitor runs; route it to a dead man's switch. If it stops, pam-monitor itself "
         "is down.",
         _not_from_results, _always()),
)}
"""Every built-in rule by alertname; a test holds it equal to the AlertName literal."""

ALERTNAMES: tuple[str, ...] = tuple(RULES)
