"""The `postgrest` prober: `GET {rest_path}/<table>?select=*&limit=0` per required table, as supabase-js would.

Each table is requested with the target's `apikey` and `Authorization: Bearer` (the bearer defaults to the API
key, like supabase-js) and `Accept-Profile` for a non-public schema. Outcomes follow PostgREST's documented
errors (docs/references/errors.rst): 404 `PGRST205` (PostgREST 13+) or `42P01` (older) is a missing table,
401 `PGRST301` (JWT invalid) / `PGRST302` (anonymous access disabled) / `PGRST303` (JWT claims invalid) or the
Supabase gateway's "No API key found in request" / "Invalid API key" is a credentials problem.

PGRST205 only says the table is not in PostgREST's schema cache, which is loaded at start and on
`NOTIFY pgrst, 'reload schema'`. With `database:` naming a PostgreSQL target of the same database, the tables it
names are looked up in that catalogue in the same run (to_regclass): present there is `schema_cache_stale`
(reload the cache), absent is `table_missing`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from monitor.core.config import PostgrestCheck, RequestSpec, Target, split_table
from monitor.core.results import TRANSPORT_OUTCOMES, Outcome, ProbeResult
from monitor.core.secrets import Redactor
from monitor.core.status import is_server_error
from probes import _http, _json
from probes._refusal import blocked_refusal
from probes._verdict import worst
from probes.deps import Deps
from probes.kind import Kind

# Why a 401 happened, by PostgREST error code or Supabase gateway message.
AUTH_CODES: dict[str, str] = {
    "PGRST301": "the JWT was rejected (PGRST301: invalid signature, malformed or expired)",
    "PGRST302": "anonymous access is disabled and no JWT was accepted (PGRST302)",
    "PGRST303": "the JWT claims failed validation (PGRST303, e.g. audience or expiry)",
}
GATEWAY_MESSAGES: dict[str, str] = {
    "no api key found in request": "the gateway saw no API key (\"No API key found in request\")",
    "invalid api key": "the gateway rejected the API key (\"Invalid API key\")",
}


@dataclass(frozen=True, slots=True)
class _TableResult:
    """What one table's request showed."""

    table: str
    outcome: Outcome
    problem: str
    status: int | None
    present: bool | None  # None: the answer does not tell (auth failure, 5xx, no answer)
    retry_after: float | None = None
    foreign: dict[str, Any] | None = None  # a refusal from a blocker, WAF or gateway (probes/_refusal.py)
    code: str | None = None  # the PostgREST / PostgreSQL error code of the answer


def _headers(target: Target, spec: RequestSpec, schema: str) -> dict[str, str]:
    extra = {"Accept": "application/json"}
    api_key = target.api_key.get_secret_value() if target.api_key is not None else None
    bearer = target.bearer_token.get_secret_value() if target.bearer_token is not None else api_key
    if api_key is not None:
        extra["apikey"] = api_key
    if bearer is not None:
        extra["Authorization"] = f"Bearer {bearer}"
    if schema != "public":
        extra["Accept-Profile"] = schema
    return _http.request_headers(target, spec, extra=extra)


def _redactor(target: Target) -> Redactor:
    values = [s.get_secret_value() for s in (target.api_key, target.bearer_token) if s is not None]
    values += [s.get_secret_value() for s in target.headers.values()]
    return Redactor(values)


def _error_fields(body: bytes) -> tuple[str | None, str]:
    """(code, message) from a PostgREST / gateway JSON error body; (None, '') when it is not one."""
    try:
        document = _json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None, ""
    if not isinstance(document, dict):
        return None, ""
    code = document.get("code")
    message = document.get("message") or document.get("msg") or document.get("error") or ""
    return (str(code) if code is not None else None), str(message)


def _judge(table: str, fetched: _http.Fetched, redact: Redactor) -> _TableResult:
    status = fetched.status
    code, text = _error_fields(fetched.body)
    said = redact(_http.body_excerpt(text.encode()) if text else fetched.excerpt())
    if 200 <= status < 300:
        return _TableResult(table, Outcome.OK, "", status, True)
    walled = blocked_refusal(fetched)
    if walled is not None:
        walled["excerpt"] = redact(walled["excerpt"])
        return _TableResult(table, Outcome.INVALID_RESPONSE, f"{table}: {status}, a blocker, WAF or gateway refused "
                            f"pam-monitor itself ({said})", status, None, foreign=walled)
    if fetched.rate_limited:
        wait = _http.wait_phrase(fetched.retry_after)
        return _TableResult(table, Outcome.RATE_LIMITED, f"{table}: {status}, rate limited ({wait})", status, None,
                            fetched.retry_after)
    missing = _http.find_missing_relation(fetched.body)
    if (status == 404 and code in ("PGRST205", "42P01")) or (is_server_error(status) and missing is not None):
        which = code or (missing.code if missing else "?")
        return _TableResult(table, Outcome.TABLE_MISSING, f"{table}: {status} {which} ({said})", status, False,
                            code=which)
    if status == 401:
        reason = AUTH_CODES.get(code or "") or GATEWAY_MESSAGES.get(text.strip().rstrip(".").lower())
        if reason is None:
            reason = f"401 without a known PostgREST code ({code or 'no code'}: {said or 'empty body'})"
        return _TableResult(table, Outcome.UNEXPECTED_STATUS, f"{table}: 401, {reason}", status, None)
    if code == "42P17":
        return _TableResult(table, Outcome.POLICY_ERROR, f"{table}: {status} 42P17 ({said})", status, None)
    if code == "42501":
        return _TableResult(table, Outcome.PERMISSION_DENIED, f"{table}: {status} 42501 ({said})", status, None)
    if is_server_error(status):
        detail = f"{code}: {said}" if code else (said or "empty body")
        return _TableResult(table, Outcome.SERVER_ERROR, f"{table}: {status} ({detail})", status, None)
    detail = f"{code}: {said}" if code else (said or "empty body")
    return _TableResult(table, Outcome.UNEXPECTED_STATUS, f"{table}: expected 200, got {status} ({detail})",
                        status, None)


async def _one(
    check: PostgrestCheck, deps: Deps, target: Target, table: str, deadline: float, redact: Redactor
) -> tuple[_TableResult, float | None]:
    schema, name = split_table(table, check.schema_name)
    spec = RequestSpec(
        method="GET",
        path=f"{check.rest_path}/{quote(name, safe='')}",
        query={"select": "*", "limit": "0"},
    )
    # Error bodies are short; reading more than this is never needed to judge a table.
    got = await _http.fetch(deps, check.target, spec, deadline=deadline, headers=_headers(target, spec, schema),
                            cap=min(deps.body_limit, 64 * 1024))
    if isinstance(got, _http.Failed):
        problem = redact(f"{table}: {got.message}")
        return _TableResult(table, got.outcome, problem, got.status, None), None
    return _judge(table, got, redact), got.elapsed


CACHE_MISS = "PGRST205"
"""PostgREST 12.2+: the table is not in its schema cache (which may be stale, or the table really gone)."""
RELOAD = "NOTIFY pgrst, 'reload schema'"
NO_DATABASE = ("without `database:` on this check pam-monitor cannot tell a stale PostgREST schema cache from a "
               "missing table (set database: <the PostgreSQL target of the same database>)")


async def _consult_catalogue(
    check: PostgrestCheck, deps: Deps, results: list[_TableResult], deadline: float, details: dict[str, Any]
) -> tuple[list[_TableResult], str]:
    """Look the tables PostgREST's cache lacks up in the database's catalogue: those present there become
    schema_cache_stale. Returns the results and a note for the message ("" when the catalogue answered)."""
    from probes import _pg  # psycopg only loads for a check that consults a catalogue (bench/README.md: ~12 MB)

    assert check.database is not None
    db = deps.targets.get(check.database)
    if db is None or db.dsn is None:
        return results, f"database target {check.database!r} has no dsn, the catalogue was not consulted"
    dsn = db.dsn.get_secret_value()
    hidden = _pg.dsn_redactor(dsn)
    misses = [r for r in results if r.outcome is Outcome.TABLE_MISSING and r.code == CACHE_MISS]
    try:
        found = await _pg.tables_in_catalogue(dsn, [split_table(r.table, check.schema_name) for r in misses], deadline)
    except Exception as exc:
        classified = _pg.classify(exc)
        if classified is None:
            raise
        said = _pg.error_text(exc, hidden) if not isinstance(exc, TimeoutError) else "no answer by the deadline"
        details["catalogue_error"] = classified.outcome.value
        return results, (f"the catalogue of database target {check.database!r} could not be read ({classified.cause}: "
                         f"{said}), so a stale schema cache cannot be told from a missing table")
    stale = {r.table for r, present in zip(misses, found, strict=True) if present}
    details["catalogue_checked"] = True
    if stale:
        details["stale_tables"] = [r.table for r in misses if r.table in stale]
    out = [
        # Present: the database has it (pam_monitor_db_table_present 1, so no TableMissing anywhere, the daemon's or
        # Prometheus's); the outcome says the API cannot serve it.
        _TableResult(r.table, Outcome.SCHEMA_CACHE_STALE,
                     f"{r.problem}, yet the table exists in database target {check.database!r}", r.status, True,
                     code=r.code)
        if r.table in stale else r
        for r in results
    ]
    return out, ""


async def probe(check: PostgrestCheck, deps: Deps, deadline: float) -> ProbeResult:
    """Request every required table once (concurrently, under the target's request slots) by `deadline`."""
    target = deps.targets.get(check.target)
    if target is None or target.base_url is None:
        return ProbeResult(Outcome.INTERNAL_ERROR, f"target {check.target!r} has no base_url")
    redact = _redactor(target)
    answers = await asyncio.gather(
        *(_one(check, deps, target, table, deadline, redact) for table in check.required_tables)
    )
    results = [result for result, _ in answers]
    elapsed = [seconds for _, seconds in answers if seconds is not None]
    details: dict[str, Any] = {"statuses": {r.table: r.status for r in results}}
    note = ""
    if any(r.outcome is Outcome.TABLE_MISSING and r.code == CACHE_MISS for r in results):
        if check.database is not None:
            results, note = await _consult_catalogue(check, deps, results, deadline, details)
        else:
            note = NO_DATABASE
    tables = {r.table: r.present for r in results if r.present is not None}
    phases = {"request": max(elapsed)} if elapsed else {}
    bad = [r for r in results if r.outcome is not Outcome.OK]
    if not bad:
        return ProbeResult(
            Outcome.OK,
            f"all {len(results)} tables answered 200 in {max(elapsed, default=0.0):.3f} s "
            f"({', '.join(check.required_tables)})",
            status_code=200,
            details=details,
            tables=tables,
            phases=phases,
        )
    # When tables disagree, the gravest and most specific outcome wins (probes/_verdict.py: a table rate limited
    # says nothing, so any definitive finding on another table outranks it); every table's problem stays in the
    # message.
    outcome = worst(r.outcome for r in bad)
    deciding = next(r for r in bad if r.outcome is outcome)
    foreign = next((r.foreign for r in bad if r.foreign is not None), None)
    if foreign is not None:
        details["foreign_refusal"] = foreign
    missing = [r.table for r in results if r.outcome is Outcome.TABLE_MISSING]
    if missing:
        details["missing_tables"] = missing
    problems = "; ".join(r.problem for r in bad)
    stale = [r.table for r in results if r.outcome is Outcome.SCHEMA_CACHE_STALE]
    if outcome is Outcome.TABLE_MISSING:
        head = f"required table{'s' if len(missing) > 1 else ''} missing: {', '.join(missing)}"
        if details.get("catalogue_checked"):
            head += f" (absent from database target {check.database!r} too)"
        if stale:
            head += f"; PostgREST's schema cache is also stale for {', '.join(stale)} (run {RELOAD})"
    elif outcome is Outcome.SCHEMA_CACHE_STALE:
        head = (f"PostgREST's schema cache is stale: {', '.join(stale)} exist{'s' if len(stale) == 1 else ''} in "
                f"database target {check.database!r} but the API answers {CACHE_MISS}; run {RELOAD} "
                "(Supabase: in the SQL editor)")
    elif outcome is Outcome.UNEXPECTED_STATUS and deciding.status == 401:
        head = "the API refused the credentials"
    elif outcome is Outcome.RATE_LIMITED:
        head = f"rate limited on {len(bad)} of {len(results)} tables, nothing learned about them"
    else:
        head = f"{len(bad)} of {len(results)} tables failed"
    waits = [r.retry_after for r in bad if r.retry_after is not None]
    if note and outcome is Outcome.TABLE_MISSING:
        problems += f"; {note}"
    return ProbeResult(outcome, f"{head} ({problems})", status_code=deciding.status, details=details,
                       tables=tables, phases=phases,
                       retry_after=max(waits) if outcome is Outcome.RATE_LIMITED and waits else None)


def tables(check: PostgrestCheck) -> tuple[str, ...]:
    """The tables whose presence a postgrest check reports: its required tables."""
    return tuple(check.required_tables)


def requests(check: PostgrestCheck) -> int:
    """One request per required table, sent at once."""
    return len(check.required_tables)


KIND = Kind(
    name="postgrest",
    model=PostgrestCheck,
    probe=probe,
    outcomes=(
        *TRANSPORT_OUTCOMES,
        Outcome.TABLE_MISSING,
        Outcome.SCHEMA_CACHE_STALE,
        Outcome.PERMISSION_DENIED,
        Outcome.POLICY_ERROR,
        Outcome.UNEXPECTED_STATUS,
        Outcome.SERVER_ERROR,
        Outcome.INVALID_RESPONSE,
        Outcome.RATE_LIMITED,
    ),
    alerts=("ContractRegression", "TableMissing", "SchemaCacheStale", "EndpointDown", "CertificateExpiring",
            "CheckFailed"),
    tables=tables,
    requests=requests,
)
