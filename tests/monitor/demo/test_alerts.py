"""Each demo fault, run against the demo config (real demo app, real PostgreSQL, the runner and the alert engine in
process): the outcomes it causes, and that the alerts which fire are exactly those the faults table promises."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from alerts import AlertEngine
from monitor.core.config import Config, load_config
from monitor.demo.app import create_demo_app
from monitor.demo.config import CSRF_VAR, DSN_VAR, SECRET_VAR, demo_config
from monitor.demo.faults import BY_NAME, FAULT_NAMES, Fired
from monitor.demo.store import PgSettingsStore, ensure_schema
from monitor.demo.supabase import SupabaseParts, start_supabase_parts
from monitor.demo.tokens import new_csrf_token
from monitor.metrics import Metrics
from monitor.runner import Runner
from monitor.server import build_server
from monitor.state import State
from probes.deps import build_deps
from tests.support.alerting import make_engine, target_alerts
from tests.support.clock import FakeClock
from tests.support.poll import until_async
from tests.support.postgres import SeededDb
from tests.support.servers import free_port

SECRET = "demo-secret-for-the-fault-table-measurement"
INTERVAL = 4.0  # the demo's timeout is half of it (2 s: other suites share this machine); `hang` costs that a round
FAIL_ROUNDS = 3  # failure_threshold 2, plus one to see that nothing else turns up
HEAL_ROUNDS = 3  # success_threshold 2, plus one



@dataclass
class Measured:
    """What one fault did: the last round's results by check, and the alerts active after FAIL_ROUNDS rounds."""

    results: dict[str, Any]
    active: list[dict[str, Any]]

    def failing(self) -> dict[str, str]:
        return {name: r.outcome.value for name, r in self.results.items() if r.outcome.value != "ok"}

    def fired(self) -> set[Fired]:
        return {Fired(a["alertname"], a["labels"]["check"], a["labels"].get("step", ""), a["labels"].get("table", ""),
                      a["labels"].get("version", "")) for a in self.active}


@contextlib.asynccontextmanager
async def demo_backend(dsn: str, migrations_dir: Path) -> AsyncIterator[str]:
    """The demo app on PostgreSQL at `dsn` (a database of this test's own, as the demo's own cluster is), with its
    migrations in `migrations_dir` and its PostgREST stand-in, served in this event loop as `pam-monitor demo`
    serves it."""
    await ensure_schema(dsn)
    store = PgSettingsStore(dsn)
    supabase: SupabaseParts = await start_supabase_parts(dsn, migrations_dir)
    port = free_port()
    server = build_server(create_demo_app(jwt_secret=SECRET, store=store, supabase=supabase), "127.0.0.1", port)
    task = asyncio.get_running_loop().create_task(server.serve())
    try:
        await until_async(lambda: server.started or task.done(), what="the demo backend to start")
        assert not task.done(), "the demo backend exited at start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
        await store.aclose()
        await supabase.aclose()


def load_demo_config(tmp_path: Path, base_url: str, dsn: str) -> Config:
    document = demo_config(target=base_url, listen="127.0.0.1:0", state_dir=tmp_path / "state", interval=INTERVAL,
                           with_db=True, alertmanager=None, migrations_dir=tmp_path / "migrations")
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return load_config(path, environ={SECRET_VAR: SECRET, CSRF_VAR: new_csrf_token(SECRET), DSN_VAR: dsn})


class Session:
    """The runner and alert engine of a demo session, driven one round at a time on a fake clock."""

    def __init__(self, config: Config, engine: AlertEngine, clock: FakeClock) -> None:
        self.deps = build_deps(config)
        self.clock = clock
        self.engine = engine
        self.runner = Runner(config, self.deps, Metrics(process_metrics=False), State(self.deps.clock.monotonic),
                             on_result=engine.observe)

    async def rounds(self, count: int) -> dict[str, Any]:
        """Run every check `count` times, one interval apart on the engine's clock; the last round's results."""
        last: dict[str, Any] = {}
        for _ in range(count):
            last = {r.check: r for r in await self.runner.run_all()}
            self.clock.advance(INTERVAL)
        return last


async def measure(tmp_path: Path, dsn: str, fault: str) -> Measured:
    """A demo session: all healthy, then `fault` for FAIL_ROUNDS rounds (measured), then healed: every alert
    must resolve within HEAL_ROUNDS rounds."""
    async with (demo_backend(dsn, tmp_path / "migrations") as base_url,
                httpx.AsyncClient(base_url=base_url, timeout=5) as client):
        config = load_demo_config(tmp_path, base_url, dsn)
        clock = FakeClock()
        async with make_engine(config, clock=clock) as engine:
            session = Session(config, engine, clock)
            try:
                healthy = await session.rounds(2)
                assert ({}, []) == ({n: r.message for n, r in healthy.items() if not r.success},
                                    target_alerts(engine))
                (await client.post(f"/_faults/{fault}")).raise_for_status()
                measured = Measured(await session.rounds(FAIL_ROUNDS), target_alerts(engine))
                (await client.delete("/_faults")).raise_for_status()
                healed = await session.rounds(HEAL_ROUNDS)
                assert ({}, []) == ({n: r.message for n, r in healed.items() if not r.success},
                                    target_alerts(engine))
            finally:
                await session.deps.aclose()
    return measured


@pytest.mark.parametrize("fault", FAULT_NAMES)
async def test_fault_outcomes_and_alerts_match_the_table(tmp_path: Path, seeded_db: SeededDb, fault: str) -> None:
    """Under each fault exactly the table's `fails` checks fail, with its outcomes; every active alert is firing
    (none is left pending); the firing alerts are exactly the table's `fires`; healing resolves them all."""
    measured = await measure(tmp_path, seeded_db.dsn, fault)
    assert dict(BY_NAME[fault].fails) == measured.failing(), {n: r.message for n, r in measured.results.items()}
    assert ["firing"] * len(measured.active) == [a["state"] for a in measured.active]
    fired = sorted(measured.fired())
    assert sorted(BY_NAME[fault].fires) == fired, f"measured for {fault}: {tuple(fired)!r}"


async def test_settings_db_500_is_the_seed_incident(tmp_path: Path, seeded_db: SeededDb) -> None:
    """settings_db_500: the anonymous auth_contract checks stay ok (403 is all they see) while the journey fails at
    step read with table_missing naming user_settings."""
    measured = await measure(tmp_path, seeded_db.dsn, "settings_db_500")
    anonymous = {n: r.outcome.value for n, r in measured.results.items() if r.kind == "auth_contract"}
    journey = measured.results["settings_journey"]
    assert {"settings_get_unauth": "ok", "settings_put_unauth": "ok"} == anonymous
    assert ("table_missing", "read", True) == (journey.outcome.value, journey.details.get("step"),
                                               "user_settings" in journey.message)
