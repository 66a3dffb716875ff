"""The demo's fault switches in one table: what each does and which alerts it fires (the banner and README read it)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple


class Fired(NamedTuple):
    """One alert instance a fault fires: its alertname and check, plus `step` (journeys), `table` and `version`
    (migrations) labels."""

    alertname: str
    check: str
    step: str = ""
    table: str = ""
    version: str = ""

    def where(self) -> str:
        """The check, and the step, table and version when the alert carries them:
        `settings_journey[read, user_settings]`."""
        extra = [value for value in (self.step, self.table, self.version) if value]
        return f"{self.check}[{', '.join(extra)}]" if extra else self.check


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault switch of the demo backend (POST /_faults/{name})."""

    name: str
    effect: str
    """What the demo backend (or its database) does while the fault is on."""
    fires: tuple[Fired, ...]
    """Every alert that fires with the demo config (the database checks' only when it runs with a database)."""
    fails: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Every check that is not ok while the fault is on, and its outcome (the others stay ok)."""
    needs_db: bool = False
    """Whether the fault changes the database itself (refused when the demo runs without one)."""
    lesson: str = ""
    """What the fault teaches, when there is more to say than the alerts."""
    own_cluster: bool = False
    """Whether the fault needs the demo's own throwaway cluster (never offered with --database-url or --no-db)."""


_GET, _PUT = "settings_get_unauth", "settings_put_unauth"
_JOURNEY, _ISOLATION = "settings_journey", "settings_isolation"
_DB, _DB_USER = "db_roundtrip", "db_as_user"
_TABLE = "user_settings"
_MIGRATIONS, _REST = "db_migrations", "rest_api"

def _fails(**outcomes: str) -> Mapping[str, str]:
    return MappingProxyType(outcomes)


_HANG = dict.fromkeys(("backend_health", "voice_health", _GET, _PUT, _JOURNEY, _ISOLATION), "timeout")

FAULTS: tuple[Fault, ...] = (
    Fault("settings_500", "settings answer 500 to everyone, before any auth (the 403 that turns into a 500)",
          fires=(Fired("ContractRegression", _GET), Fired("ContractRegression", _PUT),
                 Fired("ContractRegression", _JOURNEY, step="read"), Fired("ContractRegression", _ISOLATION)),
          fails=_fails(**dict.fromkeys((_GET, _PUT, _JOURNEY, _ISOLATION), "server_error"))),
    Fault("settings_open", "settings answer 200 without a token (the auth dependency is gone)",
          fires=(Fired("AuthBypass", _GET), Fired("AuthBypass", _PUT), Fired("AuthBypass", _ISOLATION)),
          fails=_fails(**dict.fromkeys((_GET, _PUT, _ISOLATION), "auth_bypass"))),
    Fault("drop_table", "user_settings is dropped: signed-in requests get 500 naming the relation",
          fires=(Fired("TableMissing", _JOURNEY, step="read", table=_TABLE),
                 Fired("ContractRegression", _JOURNEY, step="read"),
                 Fired("TableMissing", _DB, table=_TABLE), Fired("TableMissing", _DB_USER, table=_TABLE)),
          fails=_fails(**dict.fromkeys((_JOURNEY, _DB, _DB_USER), "table_missing"))),
    Fault("voice_down", "voice health and TTS answer 503",
          fires=(Fired("VoiceDegraded", "voice_health"), Fired("ContractRegression", "voice_health")),
          fails=_fails(voice_health="server_error")),
    Fault("hang", "every endpoint hangs until the client gives up",
          fires=(Fired("EndpointDown", "backend_health"), Fired("EndpointDown", _GET), Fired("EndpointDown", _PUT),
                 Fired("VoiceDegraded", "voice_health"), Fired("EndpointDown", "voice_health"),
                 Fired("CheckFailed", _JOURNEY, step="csrf"), Fired("CheckFailed", _ISOLATION)),
          fails=_fails(**_HANG)),
    Fault("garbage", "/health answers 200 with a body that is not JSON",
          fires=(Fired("CheckFailed", "backend_health"),), fails=_fails(backend_health="invalid_response")),
    Fault("short_audio", "TTS answers 200 bytes of zeros as audio/wav",
          fires=(Fired("VoiceDegraded", "voice_health"),), fails=_fails(voice_health="invalid_response")),
    Fault("settings_db_500", 'signed-in GET/PUT of settings answer 500 \'relation "user_settings" does not exist\'; '
          "anonymous requests still get 401/403",
          fires=(Fired("TableMissing", _JOURNEY, step="read", table=_TABLE),
                 Fired("ContractRegression", _JOURNEY, step="read")),
          fails=_fails(**{_JOURNEY: "table_missing"}),
          lesson="the seed incident: anonymous checks stay green while the journey pages"),
    Fault("lost_write", "PUT answers 200 but stores nothing",
          fires=(Fired("CheckFailed", _JOURNEY, step="read_back"),), fails=_fails(**{_JOURNEY: "invalid_response"})),
    Fault("revoke_grants", "REVOKE SELECT ON user_settings FROM authenticated",
          fires=(Fired("AccessDenied", _DB_USER, table=_TABLE),), fails=_fails(**{_DB_USER: "permission_denied"}),
          needs_db=True),
    Fault("rls_recursion", "a row-level security policy on user_settings that reads its own table (42P17)",
          fires=(Fired("AccessDenied", _DB_USER, table=_TABLE),), fails=_fails(**{_DB_USER: "policy_error"}),
          needs_db=True),
    Fault("tenant_leak", "the owner check is gone: any signed-in user reads any user's settings",
          fires=(Fired("AuthBypass", _ISOLATION),), fails=_fails(**{_ISOLATION: "auth_bypass"})),
    Fault("accept_forged_tokens", "a token whose signature does not verify is decoded anyway and its sub trusted",
          fires=(Fired("AuthBypass", _GET), Fired("AuthBypass", _PUT)),
          fails=_fails(**dict.fromkeys((_GET, _PUT), "auth_bypass")),
          lesson="only forged tokens naming the path's user get past the owner check: forged_claims"),
    Fault("cors_drop_origin", "the CORS settings lose the frontend's origin (a browser there cannot read the "
          "answers); requests without Origin see no change",
          fires=(Fired("CorsBroken", _GET),), fails=_fails(**{_GET: "cors_refused"}),
          lesson="every server-side probe stays green; only a check with `cors` sees what users see"),
    Fault("unapplied_migration", "a migration file 20260103000000_monitor_fault.sql appears in the demo's "
          "migrations directory and is never applied (not in supabase_migrations.schema_migrations)",
          fires=(Fired("MigrationPending", _MIGRATIONS, version="20260103000000"),),
          fails=_fails(**{_MIGRATIONS: "migration_pending"}), needs_db=True, own_cluster=True,
          lesson="the deploy shipped code for a schema change the database never got"),
    Fault("stale_schema_cache", "monitor_fault_table is dropped (NOTIFY pgrst: the PostgREST cache forgets it), "
          "then created again without NOTIFY: the API answers 404 PGRST205 for a table the database has",
          fires=(Fired("SchemaCacheStale", _REST, table="monitor_fault_table"),),
          fails=_fails(**{_REST: "schema_cache_stale"}), needs_db=True, own_cluster=True,
          lesson="the db check says the table is there, the API says it is not; healing sends "
                 "NOTIFY pgrst, 'reload schema'"),
)
"""Every fault, in the order the banner and the README list them; `fires` is measured, not guessed
(tests/monitor/demo/test_alerts.py runs each fault against the demo config and compares)."""

FAULT_NAMES: tuple[str, ...] = tuple(fault.name for fault in FAULTS)
"""The names accepted by POST /_faults/{name}."""

BY_NAME: dict[str, Fault] = {fault.name: fault for fault in FAULTS}
"""Each fault by name."""


def fired_for(fault: Fault, checks: Collection[str]) -> tuple[Fired, ...]:
    """The alerts a fault fires when only `checks` are configured (without a database there are no db checks)."""
    return tuple(f for f in fault.fires if f.check in checks)


def consequences(fault: Fault, checks: Collection[str], severity: Mapping[str, str] | None = None) -> str:
    """What a person sees: the alerts that fire, or, when none does, which checks fail without paging."""
    fired = fired_for(fault, checks)
    if fired:
        return describe_alerts(fired, severity)
    failing = [f"{name} ({outcome})" for name, outcome in fault.fails.items() if name in checks]
    return f"no alert; failing without a page: {', '.join(failing)}" if failing else "no alert; every check stays ok"


def describe_alerts(fired: Iterable[Fired], severity: Mapping[str, str] | None = None) -> str:
    """One line: each alertname (with its severity when known) and where it fires, or `no alert` for none."""
    grouped: dict[str, list[str]] = {}
    for alert in fired:
        grouped.setdefault(alert.alertname, []).append(alert.where())
    if not grouped:
        return "no alert"
    parts = []
    for name, where in grouped.items():
        level = (severity or {}).get(name)
        parts.append(f"{name}{f' ({level})' if level else ''} on {', '.join(where)}")
    return "; ".join(parts)


def markdown_table(severity: Mapping[str, str] | None = None) -> str:
    """The README's table of faults: name, what it does, which alerts fire (with the database)."""
    lines = ["| fault | what the demo does | alerts that fire |", "|---|---|---|"]
    every_check = {name for fault in FAULTS for name in fault.fails}
    for fault in FAULTS:
        needs = " (needs the demo's own cluster)" if fault.own_cluster else " (needs the database)"
        effect = fault.effect + (needs if fault.needs_db else "")
        alerts = consequences(fault, every_check, severity)
        if fault.lesson:
            alerts += f"; {fault.lesson}"
        lines.append(f"| `{fault.name}` | {effect.replace('|', '&#124;')} | {alerts} |")
    return "\n".join(lines)


def main() -> int:
    """`python -m monitor.demo.faults`: print the README's table of faults (regenerate it after a change)."""
    from alerts.judge.rules import RULES

    print(markdown_table({name: rule.severity for name, rule in RULES.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

__all__ = ["BY_NAME", "FAULTS", "FAULT_NAMES", "Fault", "Fired", "consequences", "describe_alerts", "fired_for",
           "markdown_table"]
