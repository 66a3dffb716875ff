"""`db` with `as_role` and `identity` against a real PostgreSQL: what the application's users can really read.

Each test gets its own role (`app_role` in conftest.py: roles are cluster-global and other suites may run at the
same time) with Supabase-like grants and policies on the seeded tables, dropped afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg import sql

from monitor.core.config import DbCheck, Identity, Target
from monitor.core.results import Outcome, ProbeResult
from probes import REGISTRY
from probes.deps import Deps
from tests.probes.signed_in import CLAIMS_SUB, minted
from tests.support.postgres import SEED_TABLES, SeededDb
from tests.support.signed_in import JWT_SECRET, MONITOR_SUB
from tests.support.targets import TIMING, run_probe


def as_role_check(role: str, **fields: Any) -> DbCheck:
    """A db check on target `database` reading the seed tables as `role` with identity `u` (unless overridden)."""
    raw = {"name": "db_as_user", "kind": "db", "target": "database", **TIMING, "required_tables": list(SEED_TABLES),
           "as_role": role, "identity": "u", **fields}
    return DbCheck.model_validate(raw)


@contextlib.asynccontextmanager
async def deps_for(dsn: str, identity: Identity | None = None) -> AsyncIterator[Deps]:
    deps = Deps(targets={"database": Target(dsn=dsn)}, body_limit=1 << 20, user_agent="pam-monitor-test",
                identities={"u": identity or minted(MONITOR_SUB)})
    try:
        yield deps
    finally:
        await deps.aclose()


async def run(db: SeededDb, check: DbCheck, identity: Identity | None = None) -> ProbeResult:
    async with deps_for(db.dsn, identity) as deps:
        return await run_probe(check, deps)


async def test_every_table_readable_as_the_role(seeded_db: SeededDb, app_role: str) -> None:
    """The role reads the five tables under its policies: ok, saying so, with an as_role phase."""
    check = as_role_check(app_role)
    result = await run(seeded_db, check)
    assert Outcome.OK == result.outcome, result.message
    assert f"5/5 readable as role {app_role}" in result.message
    assert ("connect", "query", "as_role") == REGISTRY["db"].phases(check)
    assert {"connect", "query", "as_role"} == set(result.phases)
    assert (app_role, "u") == (result.details["as_role"], result.details["identity"])
    assert JWT_SECRET not in repr(result)


async def test_revoked_grant_is_permission_denied_naming_the_table(seeded_db: SeededDb, app_role: str) -> None:
    """REVOKE SELECT on user_settings: 42501 as the role is permission_denied with the table; the other tables
    are still read (each in its own savepoint) and counted."""
    seeded_db.execute(sql.SQL("REVOKE SELECT ON user_settings FROM {}").format(sql.Identifier(app_role)))
    result = await run(seeded_db, as_role_check(app_role))
    assert (Outcome.PERMISSION_DENIED, "user_settings", "42501") == (
        result.outcome, result.details["table"], result.details["sqlstate"]), result.message
    assert {"user_settings": "42501"} == result.details["denied"]
    assert (f"as role {app_role} (identity u): user_settings: permission denied for table user_settings (42501); "
            "4 of 5 required tables readable") == result.message


async def test_two_refused_tables_are_both_listed(seeded_db: SeededDb, app_role: str) -> None:
    """Every refused table is reported, in the configured order; the first one is `table`."""
    for table in ("affiliate_sales", "group_trip_participants"):
        seeded_db.execute(sql.SQL("REVOKE SELECT ON {} FROM {}").format(sql.Identifier(table),
                                                                       sql.Identifier(app_role)))
    result = await run(seeded_db, as_role_check(app_role))
    assert {"affiliate_sales": "42501", "group_trip_participants": "42501"} == result.details["denied"]
    assert "affiliate_sales" == result.details["table"]


async def test_recursive_policy_is_policy_error_naming_the_table(seeded_db: SeededDb, app_role: str) -> None:
    """A policy on user_settings that queries user_settings: 42P17 (infinite recursion) is policy_error."""
    seeded_db.execute(sql.SQL("CREATE POLICY recurse ON user_settings FOR SELECT TO {} USING "
                              "(user_id IN (SELECT user_id FROM user_settings))").format(sql.Identifier(app_role)))
    result = await run(seeded_db, as_role_check(app_role))
    assert (Outcome.POLICY_ERROR, "user_settings", "42P17") == (
        result.outcome, result.details["table"], result.details["sqlstate"]), result.message
    assert "infinite recursion detected in policy for relation" in result.message


async def test_the_identitys_claims_reach_the_policies(seeded_db: SeededDb, app_role: str) -> None:
    """request.jwt.claims and request.jwt.claim.sub hold the identity's sub: a policy that fails (division by
    zero) for any other sub lets the identity read, and refuses another identity."""
    seeded_db.execute("INSERT INTO user_settings (user_id) VALUES (%s)", (MONITOR_SUB,))
    guard = (f"1 / (CASE WHEN {CLAIMS_SUB} = '{MONITOR_SUB}' AND "
             f"current_setting('request.jwt.claim.sub', true) = '{MONITOR_SUB}' THEN 1 ELSE 0 END) = 1")
    seeded_db.execute("DROP POLICY own_user_settings ON user_settings")  # the guard alone decides
    seeded_db.execute(sql.SQL("CREATE POLICY guard ON user_settings FOR SELECT TO {} USING (" + guard + ")")
                      .format(sql.Identifier(app_role)))
    ok = await run(seeded_db, as_role_check(app_role))
    assert Outcome.OK == ok.outcome, ok.message
    other = await run(seeded_db, as_role_check(app_role), minted("someone-else"))
    assert (Outcome.DB_ERROR, "22012") == (other.outcome, other.details["sqlstate"]), other.message


async def test_nothing_outlives_the_rolled_back_transaction(seeded_db: SeededDb, app_role: str) -> None:
    """On a kept (pool: true) connection, after the run the session is the login role again with no claims set,
    and a second run on the same connection reads as the role again."""
    check = as_role_check(app_role, pool=True)
    async with deps_for(seeded_db.dsn) as deps:
        assert Outcome.OK == (await run_probe(check, deps)).outcome
        conn: psycopg.AsyncConnection[Any] = deps.resources[check.name].conn  # type: ignore[attr-defined]
        cur = await conn.execute("SELECT current_user, session_user, current_setting('request.jwt.claims', true)")
        user, login, claims = await cur.fetchone()  # type: ignore[misc]
        assert (login, "") == (user, claims or "")
        second = await run_probe(check, deps)
        assert (Outcome.OK, True) == (second.outcome, second.details["reused_connection"]), second.message


async def test_a_role_the_monitor_cannot_switch_to_is_db_error(seeded_db: SeededDb) -> None:
    """A role that does not exist: db_error saying the monitor's user cannot switch and what grant it needs."""
    result = await run(seeded_db, as_role_check("pam_no_such_role_x"))
    assert Outcome.DB_ERROR == result.outcome
    assert result.message.startswith('cannot switch to role pam_no_such_role_x (role "pam_no_such_role_x" does not '
                                     "exist, SQLSTATE 22023)"), result.message


async def test_without_identity_the_claims_hold_only_the_role(seeded_db: SeededDb, app_role: str) -> None:
    """as_role alone (an anon-style read): the claims are {role}, the read works, no identity is named."""
    result = await run(seeded_db, as_role_check(app_role, identity=None))
    assert Outcome.OK == result.outcome, result.message
    assert "identity" not in result.details
