"""Benchmark the db probe's query set on psycopg 3 vs asyncpg, fresh connection vs reused, on a local server.

    .venv/bin/python bench/db_driver.py [--dsn postgresql://postgres@127.0.0.1:5432/postgres] [-n 300]

Creates a scratch database holding the seed schema, runs the same statements the `db` probe sends (BEGIN,
set_config + SELECT 1, to_regclass x5 with RLS flags, pg_attribute columns, zero-row read of each table,
COMMIT) in both drivers configured for PgBouncer transaction mode (psycopg prepare_threshold=None, asyncpg
statement_cache_size=0), then the probe itself, and prints medians. Drops the scratch database afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from monitor.core.config import DbCheck, Target
from monitor.core.results import Outcome
from monitor.demo.schema import SEED_SCHEMA, SEED_TABLES
from monitor.runner import run_deadlines
from probes import _pg, db
from probes.deps import Deps

COLUMNS = {"user_settings": ["user_id", "voice_enabled", "created_at", "updated_at"]}
MAX_RUNS = 5000


def _asyncpg_sql(query: str) -> str:
    # psycopg's %s placeholders -> asyncpg's $n; %% -> %.
    out, n, i = [], 0, 0
    while i < len(query):
        if query.startswith("%%", i):
            out.append("%")
            i += 2
        elif query.startswith("%s", i):
            n += 1
            out.append(f"${n}")
            i += 2
        else:
            out.append(query[i])
            i += 1
    return "".join(out)


SPLIT = [_pg.split_table(t) for t in SEED_TABLES]
COL_ARGS = ([_pg.split_table(t)[0] for t, cs in COLUMNS.items() for _ in cs],
            [_pg.split_table(t)[1] for t, cs in COLUMNS.items() for _ in cs],
            [c for cs in COLUMNS.values() for c in cs])
TOUCH = " UNION ALL ".join(f'(SELECT FROM "{s}"."{t}" LIMIT 0)' for s, t in SPLIT)


async def psycopg_set(conn: psycopg.AsyncConnection[Any]) -> None:
    async with conn.transaction():
        await (await conn.execute(_pg.SQL_HELLO, ("2000",))).fetchone()
        await (await conn.execute(_pg.SQL_TABLES, ([s for s, _ in SPLIT], [t for _, t in SPLIT]))).fetchall()
        await (await conn.execute(_pg.SQL_MISSING_COLUMNS, COL_ARGS)).fetchall()
        await conn.execute(TOUCH)


HELLO_A, TABLES_A, COLUMNS_A = (_asyncpg_sql(q) for q in (_pg.SQL_HELLO, _pg.SQL_TABLES, _pg.SQL_MISSING_COLUMNS))


async def asyncpg_set(conn: asyncpg.Connection) -> None:
    async with conn.transaction():
        await conn.fetchrow(HELLO_A, "2000")
        await conn.fetch(TABLES_A, [s for s, _ in SPLIT], [t for _, t in SPLIT])
        await conn.fetch(COLUMNS_A, *COL_ARGS)
        await conn.execute(TOUCH)


async def psycopg_connect(dsn: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(dsn, autocommit=True, prepare_threshold=None)


async def asyncpg_connect(dsn: str) -> asyncpg.Connection:
    params = conninfo_to_dict(dsn)
    return await asyncpg.connect(
        host=params.get("host", "127.0.0.1"), port=int(str(params.get("port", 5432))), user=params.get("user"),
        password=params.get("password"), database=params.get("dbname"), statement_cache_size=0,
    )


async def measure(n: int, once: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    """Median wall and CPU milliseconds of `once` over n runs (after 10 warm-up runs)."""
    for _ in range(10):
        await once()
    wall, cpu = [], []
    for _ in range(n):
        w, c = time.perf_counter(), time.process_time()
        await once()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return statistics.median(wall) * 1000, statistics.median(cpu) * 1000


async def bench(dsn: str, n: int) -> list[tuple[str, float, float]]:
    rows: list[tuple[str, float, float]] = []

    async def pg_fresh() -> None:
        conn = await psycopg_connect(dsn)
        try:
            await psycopg_set(conn)
        finally:
            await conn.close()

    async def apg_fresh() -> None:
        conn = await asyncpg_connect(dsn)
        try:
            await asyncpg_set(conn)
        finally:
            await conn.close()

    rows.append(("psycopg 3 fresh connection", *await measure(n, pg_fresh)))
    kept = await psycopg_connect(dsn)
    rows.append(("psycopg 3 reused connection", *await measure(n, lambda: psycopg_set(kept))))
    await kept.close()
    rows.append(("asyncpg fresh connection", *await measure(n, apg_fresh)))
    kept_a = await asyncpg_connect(dsn)
    rows.append(("asyncpg reused connection", *await measure(n, lambda: asyncpg_set(kept_a))))
    await kept_a.close()

    for pool in (False, True):
        check = DbCheck(kind="db", name="bench", target="db", interval=30, timeout=5, failure_threshold=2,
                        success_threshold=2, required_tables=list(SEED_TABLES), required_columns=COLUMNS,
                        require_rls=True, pool=pool)
        deps = Deps(targets={"db": Target(dsn=dsn)}, max_in_flight=4, body_limit=1 << 20,
                    user_agent="bench")

        async def whole(check: DbCheck = check, deps: Deps = deps) -> None:
            deadline, _ = run_deadlines(check.timeout, asyncio.get_running_loop().time())
            result = await db.probe(check, deps, deadline)
            if result.outcome is not Outcome.OK:
                raise RuntimeError(result.message)

        rows.append((f"probes.db.probe (psycopg, pool: {str(pool).lower()})", *await measure(n, whole)))
        await deps.aclose()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("PAM_MONITOR_TEST_DSN",
                                                        "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("-n", type=int, default=300, help=f"measured runs per row (max {MAX_RUNS})")
    args = parser.parse_args()
    n = max(1, min(args.n, MAX_RUNS))
    name = f"pam_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = make_conninfo(args.dsn, dbname=name)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for statement in SEED_SCHEMA:
                conn.execute(statement)
        rows = asyncio.run(bench(dsn, n))
    finally:
        with psycopg.connect(args.dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    print(f"db probe query set, {n} runs each, medians "
          f"(psycopg {psycopg.__version__}, asyncpg {asyncpg.__version__}, Python {sys.version.split()[0]})")
    print(f"{'driver / mode':<42} {'wall ms':>9} {'CPU ms':>8}")
    for label, wall, cpu in rows:
        print(f"{label:<42} {wall:>9.3f} {cpu:>8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
