"""The seed schema: the five tables of the seed incident, their DDL, and the Supabase role, grants and policies."""

from __future__ import annotations

import re

SEED_TABLES: tuple[str, ...] = (
    "user_settings",
    "affiliate_sales",
    "user_wishlists",
    "marketplace_listings",
    "group_trip_participants",
)
"""The five tables of the seed incident, in the order the example config lists them."""

SETTINGS_TABLE = "user_settings"
"""The table the demo backend keeps user settings in (the one the `drop_table` fault drops)."""

DEMO_SCHEMA = "pam_monitor_demo"
"""The schema the demo keeps everything in when it runs on a database it did not create (--database-url)."""

SCHEMA_MARKER = "pam-monitor demo: created by `pam-monitor demo`, dropped when it stops"
"""The COMMENT ON SCHEMA that marks DEMO_SCHEMA as the demo's own: a schema of that name without it is refused."""

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")


def _checked(schema: str) -> str:
    # The schema name is written into DDL: only plain lower-case identifiers (ours are constants) get there.
    if not _IDENTIFIER.fullmatch(schema):
        raise ValueError(f"not a plain schema name: {schema!r}")
    return schema


def seed_schema(schema: str = "public") -> tuple[str, ...]:
    """Idempotent DDL for the seed's five tables in `schema`, each with row-level security enabled (run in order)."""
    s = _checked(schema)
    return (
        f"""CREATE TABLE IF NOT EXISTS {s}.user_settings (
        user_id text PRIMARY KEY,
        settings jsonb NOT NULL DEFAULT '{{}}'::jsonb,
        voice_enabled boolean NOT NULL DEFAULT true,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
    )""",
        f"ALTER TABLE {s}.user_settings ENABLE ROW LEVEL SECURITY",
        f"""CREATE TABLE IF NOT EXISTS {s}.affiliate_sales (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        user_id text NOT NULL,
        amount_cents integer NOT NULL DEFAULT 0,
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
        f"ALTER TABLE {s}.affiliate_sales ENABLE ROW LEVEL SECURITY",
        f"""CREATE TABLE IF NOT EXISTS {s}.user_wishlists (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        user_id text NOT NULL,
        item text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
        f"ALTER TABLE {s}.user_wishlists ENABLE ROW LEVEL SECURITY",
        f"""CREATE TABLE IF NOT EXISTS {s}.marketplace_listings (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        seller_id text NOT NULL,
        title text NOT NULL,
        price_cents integer NOT NULL DEFAULT 0,
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
        f"ALTER TABLE {s}.marketplace_listings ENABLE ROW LEVEL SECURITY",
        f"""CREATE TABLE IF NOT EXISTS {s}.group_trip_participants (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        trip_id text NOT NULL,
        user_id text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
        f"ALTER TABLE {s}.group_trip_participants ENABLE ROW LEVEL SECURITY",
    )


SEED_SCHEMA: tuple[str, ...] = seed_schema()
"""seed_schema() in `public` (the tests' and the benchmarks' seeded databases, and the demo's throwaway cluster)."""


APP_ROLE = "authenticated"
"""The role a Supabase project's signed-in users query as (PostgREST switches to it for every request)."""

CLAIM_SUB = "(current_setting('request.jwt.claims', true)::jsonb ->> 'sub')"
"""The signed-in user's id as PostgREST hands it to policies (Supabase's `auth.uid()` reads the same setting)."""

_OWNER_COLUMN: tuple[tuple[str, str], ...] = (
    ("user_settings", "user_id"),
    ("affiliate_sales", "user_id"),
    ("user_wishlists", "user_id"),
    ("marketplace_listings", "seller_id"),
    ("group_trip_participants", "user_id"),
)
"""Each seed table and the column naming the user who owns a row."""

OWNER_POLICY = "pam_demo_owner"
"""The name of the row-level security policy that lets a signed-in user see and change only their own rows."""

RECURSIVE_POLICY = "pam_demo_recursive"
"""The name of the self-referencing policy the `rls_recursion` fault adds to user_settings."""


def _owner_policy(schema: str, table: str, column: str) -> tuple[str, str]:
    # ::text on the column: a Supabase table keeps user ids as uuid, and uuid = text does not exist in PostgreSQL.
    mine = f"{column}::text = {CLAIM_SUB}"
    return (
        f"DROP POLICY IF EXISTS {OWNER_POLICY} ON {schema}.{table}",
        f"CREATE POLICY {OWNER_POLICY} ON {schema}.{table} FOR ALL TO {APP_ROLE} USING ({mine}) WITH CHECK ({mine})",
    )


def role_schema(schema: str = "public") -> tuple[str, ...]:
    """Grants and row-level security policies of a Supabase project on the seed tables in `schema`, for the role
    `authenticated`.

    Idempotent (run after seed_schema, in one transaction): it also undoes the `revoke_grants` and `rls_recursion`
    faults. Needs the role APP_ROLE to exist (see monitor.demo.store). Every statement names only `schema` and the
    objects in it, so on a schema of the demo's own nothing outside it changes.
    """
    s = _checked(schema)
    return (
        f"GRANT USAGE ON SCHEMA {s} TO {APP_ROLE}",
        *(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {s}.{table} TO {APP_ROLE}" for table in SEED_TABLES),
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {APP_ROLE}",
        *(statement for table, column in _OWNER_COLUMN for statement in _owner_policy(s, table, column)),
        # Listings are a marketplace: every signed-in user may read them (the owner policy still guards writes).
        f"DROP POLICY IF EXISTS pam_demo_listings_read ON {s}.marketplace_listings",
        f"CREATE POLICY pam_demo_listings_read ON {s}.marketplace_listings FOR SELECT TO {APP_ROLE} USING (true)",
        f"DROP POLICY IF EXISTS {RECURSIVE_POLICY} ON {s}.{SETTINGS_TABLE}",
    )


ROLE_SCHEMA: tuple[str, ...] = role_schema()
"""role_schema() in `public`."""


def database_faults(schema: str = "public") -> dict[str, tuple[str, ...]]:
    """The faults that change the database itself, as DDL on the tables in `schema` (undone by role_schema)."""
    s = _checked(schema)
    return {
        "revoke_grants": (f"REVOKE SELECT ON {s}.user_settings FROM {APP_ROLE}",),  # noqa: S608 - s is _checked
        "rls_recursion": (
            f"DROP POLICY IF EXISTS {RECURSIVE_POLICY} ON {s}.user_settings",
            # A policy that reads its own table: PostgreSQL refuses every query by a role it applies to with
            # 42P17 "infinite recursion detected in policy for relation user_settings".
            f"CREATE POLICY {RECURSIVE_POLICY} ON {s}.user_settings FOR SELECT TO {APP_ROLE} USING (EXISTS ("  # noqa: S608
            f"SELECT 1 FROM {s}.user_settings AS s "
            "WHERE s.user_id = (current_setting('request.jwt.claims', true)::jsonb ->> 'sub')))",
        ),
    }


DATABASE_FAULTS: dict[str, tuple[str, ...]] = database_faults()
"""database_faults() in `public`."""

__all__ = [
    "APP_ROLE",
    "CLAIM_SUB",
    "DATABASE_FAULTS",
    "DEMO_SCHEMA",
    "OWNER_POLICY",
    "RECURSIVE_POLICY",
    "ROLE_SCHEMA",
    "SCHEMA_MARKER",
    "SEED_SCHEMA",
    "SEED_TABLES",
    "SETTINGS_TABLE",
    "database_faults",
    "role_schema",
    "seed_schema",
]
