"""The seed schema: the five tables of the seed incident and their DDL, shared by the demo and the test suite."""

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

__all__ = ["SEED_SCHEMA", "SEED_TABLES", "SETTINGS_TABLE"]
