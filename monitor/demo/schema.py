"""The seed schema: the five tables of the seed incident, their DDL, and the Supabase role, grants and policies."""

from __future__ import annotations

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

SEED_SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS public.user_settings (
        user_id text PRIMARY KEY,
        settings jsonb NOT NULL DEFAULT '{}'::jsonb,
        voice_enabled boolean NOT NULL DEFAULT true,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
    )""",
    "ALTER TABLE public.user_settings ENABLE ROW LEVEL SECURITY",
    """CREATE TABLE IF NOT EXISTS public.affiliate_sales (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        user_id text NOT NULL,
        amount_cents integer NOT NULL DEFAULT 0,
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
    "ALTER TABLE public.affiliate_sales ENABLE ROW LEVEL SECURITY",
    """CREATE TABLE IF NOT EXISTS public.user_wishlists (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        user_id text NOT NULL,
        item text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
    "ALTER TABLE public.user_wishlists ENABLE ROW LEVEL SECURITY",
    """CREATE TABLE IF NOT EXISTS public.marketplace_listings (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        seller_id text NOT NULL,
        title text NOT NULL,
        price_cents integer NOT NULL DEFAULT 0,
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
    "ALTER TABLE public.marketplace_listings ENABLE ROW LEVEL SECURITY",
    """CREATE TABLE IF NOT EXISTS public.group_trip_participants (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        trip_id text NOT NULL,
        user_id text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
    "ALTER TABLE public.group_trip_participants ENABLE ROW LEVEL SECURITY",
)
"""Idempotent DDL for the seed's five tables, each with row-level security enabled (run in order)."""


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


def _owner_policy(table: str, column: str) -> tuple[str, str]:
    mine = f"{column} = {CLAIM_SUB}"
    return (
        f"DROP POLICY IF EXISTS {OWNER_POLICY} ON public.{table}",
        f"CREATE POLICY {OWNER_POLICY} ON public.{table} FOR ALL TO {APP_ROLE} USING ({mine}) WITH CHECK ({mine})",
    )


ROLE_SCHEMA: tuple[str, ...] = (
    f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}",
    *(f"GRANT SELECT, INSERT, UPDATE, DELETE ON public.{table} TO {APP_ROLE}" for table in SEED_TABLES),
    f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE}",
    *(statement for table, column in _OWNER_COLUMN for statement in _owner_policy(table, column)),
    # Listings are a marketplace: every signed-in user may read them (the owner policy still guards writes).
    "DROP POLICY IF EXISTS pam_demo_listings_read ON public.marketplace_listings",
    f"CREATE POLICY pam_demo_listings_read ON public.marketplace_listings FOR SELECT TO {APP_ROLE} USING (true)",
    f"DROP POLICY IF EXISTS {RECURSIVE_POLICY} ON public.{SETTINGS_TABLE}",
)
"""Grants and row-level security policies of a Supabase project on the seed tables, for the role `authenticated`.

Idempotent (run after SEED_SCHEMA, in one transaction): it also undoes the `revoke_grants` and `rls_recursion`
faults. Needs the role APP_ROLE to exist (see monitor.demo.store.ensure_app_role).
"""

DATABASE_FAULTS: dict[str, tuple[str, ...]] = {
    "revoke_grants": ("REVOKE SELECT ON public.user_settings FROM authenticated",),
    "rls_recursion": (
        "DROP POLICY IF EXISTS pam_demo_recursive ON public.user_settings",
        # A policy that reads its own table: PostgreSQL refuses every query by a role it applies to with
        # 42P17 "infinite recursion detected in policy for relation user_settings".
        "CREATE POLICY pam_demo_recursive ON public.user_settings FOR SELECT TO authenticated USING (EXISTS ("
        "SELECT 1 FROM public.user_settings AS s "
        "WHERE s.user_id = (current_setting('request.jwt.claims', true)::jsonb ->> 'sub')))",
    ),
}
"""The faults that change the database itself, as DDL (undone by ROLE_SCHEMA)."""

__all__ = [
    "APP_ROLE",
    "CLAIM_SUB",
    "DATABASE_FAULTS",
    "OWNER_POLICY",
    "RECURSIVE_POLICY",
    "ROLE_SCHEMA",
    "SEED_SCHEMA",
    "SEED_TABLES",
    "SETTINGS_TABLE",
]
