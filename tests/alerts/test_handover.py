"""A firing alert whose check moves to another shard is handed over: Alertmanager is told nothing (the new owner
renews it under the same labels), the other sinks get the resolution; a check deleted from the file is resolved
everywhere."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from monitor.core.config import Config, apply_shard, shard_of
from tests.support.alerting import CHECKS, Recorder, make_config, make_engine, result
from tests.support.poll import until_async
from tests.support.servers import serve_asgi

CHECK = "backend_health"
BREAK = (result(CHECK, "server_error", status=500), result(CHECK, "server_error", status=500, confirmation=True))
ALERT = {"alertname": "EndpointDown", "check": CHECK}
OTHER_SHARD = 1 - shard_of(CHECK, 2)


def _config(tmp_path: Path, am: str, hook: str, checks: list[dict[str, Any]] | None = None) -> Config:
    return make_config(tmp_path, checks=checks, sinks=[{"kind": "alertmanager", "url": am},
                                                       {"kind": "webhook", "url": hook + "/hook"}])


def _am_alerts(recorder: Recorder) -> list[dict[str, Any]]:
    return [a for body in recorder.bodies("/api/v2/alerts") for a in body if ALERT.items() <= a["labels"].items()]


def _ended(alert: dict[str, Any]) -> bool:
    """A posted alert whose endsAt is already past: a resolution (a firing post ends 4 resend intervals ahead)."""
    return datetime.fromisoformat(alert["endsAt"].replace("Z", "+00:00")).timestamp() <= time.time()


def _hook_statuses(recorder: Recorder) -> list[str]:
    return [body["status"] for body in recorder.bodies("/hook") if ALERT.items() <= body["alerts"][0]["labels"].items()]


@pytest.mark.parametrize("moved", [True, False], ids=["moved_to_another_shard", "deleted_from_the_file"])
async def test_a_moved_check_is_handed_over_and_a_deleted_one_resolved(tmp_path: Path, moved: bool) -> None:
    """EndpointDown fires at both sinks; then a reload either shards the check away (it is `elsewhere`) or drops
    it from the file. Both: the engine forgets the alert and the webhook gets `resolved`. Only the deleted check's
    alert is ended at Alertmanager; the moved one is left to its endsAt for the new owner to renew."""
    am, hook = Recorder(), Recorder()
    with serve_asgi(am.app()) as am_url, serve_asgi(hook.app()) as hook_url:
        config = _config(tmp_path, am_url, hook_url)
        async with make_engine(config, flush_timeout=2.0) as engine:
            for r in BREAK:
                engine.observe(r)
            await until_async(lambda: _am_alerts(am) and _hook_statuses(hook) == ["firing"], in_thread=True,
                              what="the firing at both sinks")
            if moved:
                new = apply_shard(config, OTHER_SHARD, 2)
                assert CHECK in new.elsewhere
            else:
                new = _config(tmp_path, am_url, hook_url, checks=[c for c in CHECKS if c["name"] != CHECK])
                assert set() == new.elsewhere
            await engine.reload(new)
            assert [] == [a for a in engine.active_alerts() if a["labels"].get("check") == CHECK]
            await until_async(lambda: _hook_statuses(hook) == ["firing", "resolved"], in_thread=True,
                              what="the webhook's resolution")
            if not moved:
                await until_async(lambda: any(_ended(a) for a in _am_alerts(am)), in_thread=True,
                                  what="the resolution at Alertmanager")
        # The engine has stopped and flushed its outbox: nothing more will be posted.
        assert (not moved) == any(_ended(a) for a in _am_alerts(am))
        assert ["firing", "resolved"] == _hook_statuses(hook)


def test_elsewhere_lists_exactly_the_other_shards_checks() -> None:
    """apply_shard keeps shard i's checks and records the rest as `elsewhere`; without a shard nothing is."""
    config = make_config()
    names = {c.name for c in config.checks}
    assert frozenset() == config.elsewhere
    for index in range(3):
        sharded = apply_shard(config, index, 3)
        kept = {c.name for c in sharded.checks}
        assert kept == {n for n in names if shard_of(n, 3) == index}
        assert names - kept == sharded.elsewhere
