"""The seed schema: idempotent DDL for exactly the five seed tables, each with row-level security."""

from __future__ import annotations

import re

from monitor.demo.schema import SEED_SCHEMA, SEED_TABLES, SETTINGS_TABLE


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
