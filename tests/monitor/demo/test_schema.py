"""The seed schema: idempotent DDL for the five seed tables with row-level security, their Supabase grants and
policies, and the DDL of the database faults."""

from __future__ import annotations

import re

from monitor.demo.faults import FAULTS
from monitor.demo.schema import (
    CLAIM_SUB,
    DATABASE_FAULTS,
    OWNER_POLICY,
    RECURSIVE_POLICY,
    ROLE_SCHEMA,
    SEED_SCHEMA,
    SEED_TABLES,
    SETTINGS_TABLE,
)
from monitor.demo.supabase import CLUSTER_FAULTS


def test_seed_schema_statements_are_idempotent_ddl() -> None:
    """Every SEED_SCHEMA statement can run twice: CREATE TABLE IF NOT EXISTS or ALTER ... ENABLE RLS."""
    for statement in SEED_SCHEMA:
        assert statement.startswith(("CREATE TABLE IF NOT EXISTS", "ALTER TABLE")), statement


def test_seed_schema_creates_each_seed_table_then_enables_its_rls() -> None:
    """SEED_SCHEMA creates the SEED_TABLES, in their order, each followed by ENABLE ROW LEVEL SECURITY."""
    created = [m.group(1) for s in SEED_SCHEMA if (m := re.match(r"CREATE TABLE IF NOT EXISTS public\.(\w+)", s))]
    secured = [m.group(1) for s in SEED_SCHEMA
               if (m := re.fullmatch(r"ALTER TABLE public\.(\w+) ENABLE ROW LEVEL SECURITY", s))]
    assert (list(SEED_TABLES), list(SEED_TABLES)) == (created, secured)
    assert 2 * len(SEED_TABLES) == len(SEED_SCHEMA)
    assert SETTINGS_TABLE in SEED_TABLES


def test_role_schema_grants_and_polices_every_seed_table_for_authenticated() -> None:
    """ROLE_SCHEMA grants the four table privileges to authenticated and (re)creates an owner policy on the JWT's
    sub for every seed table; it also drops the recursive policy, so running it undoes the database faults."""
    granted = [m.group(1) for s in ROLE_SCHEMA
               if (m := re.fullmatch(r"GRANT SELECT, INSERT, UPDATE, DELETE ON public\.(\w+) TO authenticated", s))]
    policed = [m.group(1) for s in ROLE_SCHEMA if (m := re.match(rf"CREATE POLICY {OWNER_POLICY} ON public\.(\w+)", s))]
    assert (list(SEED_TABLES), list(SEED_TABLES)) == (granted, policed)
    assert all(CLAIM_SUB in s for s in ROLE_SCHEMA if s.startswith(f"CREATE POLICY {OWNER_POLICY}"))
    assert f"DROP POLICY IF EXISTS {RECURSIVE_POLICY} ON public.{SETTINGS_TABLE}" in ROLE_SCHEMA


def test_database_faults_are_the_table_faults_that_need_the_database() -> None:
    """DATABASE_FAULTS holds DDL for exactly the faults marked needs_db outside the demo's own cluster (those are
    CLUSTER_FAULTS, done by SupabaseParts), and rls_recursion's policy is the one ROLE_SCHEMA drops."""
    assert sorted(f.name for f in FAULTS if f.needs_db and not f.own_cluster) == sorted(DATABASE_FAULTS)
    assert sorted(f.name for f in FAULTS if f.own_cluster) == sorted(CLUSTER_FAULTS)
    assert any(f"CREATE POLICY {RECURSIVE_POLICY} ON public.{SETTINGS_TABLE}" in s
               for s in DATABASE_FAULTS["rls_recursion"])
