"""The demo's Supabase-only parts on its own throwaway cluster: the migrations directory and the PostgREST schema
cache, with the two faults that put them out of step (`unapplied_migration`, `stale_schema_cache`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg

from monitor.demo.migrations import add_pending, prepare_migrations, remove_pending
from monitor.demo.postgrest import SchemaCache, create_fault_table, make_cache_stale, reload_schema
from monitor.demo.store import DemoDatabaseError

CLUSTER_FAULTS: frozenset[str] = frozenset({"unapplied_migration", "stale_schema_cache"})
"""The faults that need SupabaseParts (so the demo's own cluster): refused otherwise."""


@dataclass
class SupabaseParts:
    """The migrations directory and the schema cache of a demo running on its own cluster."""

    migrations_dir: Path
    cache: SchemaCache

    async def apply(self, name: str) -> None:
        """Turn one of CLUSTER_FAULTS on."""
        if name == "unapplied_migration":
            add_pending(self.migrations_dir)
        elif name == "stale_schema_cache":
            try:
                await make_cache_stale(self.cache)
            except (psycopg.Error, TimeoutError) as exc:  # the app answers 409 with this line, not a 500
                raise DemoDatabaseError(f"the {name} fault could not be set ({exc.__class__.__name__}: "
                                        "the demo's cluster or its LISTEN connection is not answering)") from None
        else:
            raise ValueError(f"not a fault of the demo's own cluster: {name!r}")

    async def heal(self) -> None:
        """Undo both faults: the extra migration file goes, and the schema cache is reloaded (NOTIFY)."""
        remove_pending(self.migrations_dir)
        await reload_schema(self.cache)

    async def aclose(self) -> None:
        """Stop the schema cache's LISTEN."""
        await self.cache.aclose()


async def start_supabase_parts(dsn: str, migrations_dir: Path, schema: str = "public") -> SupabaseParts:
    """Set up, at `dsn` (a cluster the demo or a test made): the migrations and their record, the table the
    postgrest check requires, and the schema cache (loaded now, reloaded on NOTIFY)."""
    await prepare_migrations(dsn, migrations_dir)
    await create_fault_table(dsn, schema)
    cache = SchemaCache(dsn, schema)
    await cache.start()
    return SupabaseParts(migrations_dir, cache)


__all__ = ["CLUSTER_FAULTS", "SupabaseParts", "start_supabase_parts"]
