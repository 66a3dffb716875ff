"""A receiver that refuses a whole batch (400) for one alert it dislikes: the batch is split until that alert
stands alone, it is quarantined (logged with its key and the receiver's reason, counted rejected, kept in the
state database), and the alerts batched with it are delivered and keep being re-posted."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import prometheus_client
import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from alerts import AlertEngine
from alerts.persist.database import FILENAME
from tests.support.alerting import CHECKS, make_config, make_engine, result, sent
from tests.support.clock import FakeClock
from tests.support.poll import until_async
from tests.support.servers import serve_asgi

POISON = "n\u00e9e-bad"
"""The `team` label value the stand-in refuses."""
GOOD, BAD = "settings_get_unauth", "settings_put_unauth"


class PickyAlertmanager:
    """An Alertmanager API v2 stand-in: POST /api/v2/alerts takes a list, and answers 400 (with a reason, as
    Alertmanager does) to any list holding an alert whose `team` label is POISON; else 200, recording the list."""

    def __init__(self) -> None:
        self.accepted: list[list[dict[str, Any]]] = []
        self.refused = 0
        self.lock = threading.Lock()

    async def alerts(self, request: Request) -> Response:
        """Refuse the whole list if one alert is poisoned, like a strict receiver validating every label."""
        batch = await request.json()
        with self.lock:
            if any(a["labels"].get("team") == POISON for a in batch):
                self.refused += 1
                return PlainTextResponse(f'bad label value "team={POISON}"', status_code=400)
            self.accepted.append(batch)
        return JSONResponse({})

    def app(self) -> Starlette:
        """The ASGI app to serve."""
        return Starlette(routes=[Route("/api/v2/alerts", self.alerts, methods=["POST"])])

    def posts_of(self, check: str) -> int:
        """How many accepted lists held an alert of `check`."""
        with self.lock:
            return sum(1 for batch in self.accepted if any(a["labels"].get("check") == check for a in batch))


def _fire(engine: AlertEngine, check: str) -> None:
    """403, then 500 twice (the second a confirmation): ContractRegression fires on `check`."""
    for r in (result(check, "ok", status=403, kind="auth_contract"),
              result(check, "server_error", status=500, kind="auth_contract"),
              result(check, "server_error", status=500, confirmation=True, kind="auth_contract")):
        engine.observe(r)


def _config(tmp_path: Path, url: str) -> Any:
    """Two auth_contract checks; the second carries the label the receiver refuses."""
    base = next(c for c in CHECKS if c["name"] == GOOD)
    checks = [{**base, "labels": {"team": "core"}}, {**base, "name": BAD, "method": "PUT", "labels": {"team": POISON}}]
    return make_config(tmp_path, checks=checks, sinks=[{"kind": "alertmanager", "url": url}])


async def test_one_refused_alert_does_not_block_those_batched_with_it(tmp_path: Path) -> None:
    """Both checks fire in the same instant (one batch). The receiver answers 400 to the batch; the split finds
    the poisoned alert: it is quarantined once (notification.rejected at error with its key and the receiver's
    words, rejected counted 1, a quarantine row saying rejected), the good alert is delivered, and re-posts keep
    carrying the good alert without being refused again. (Before, the whole batch was dropped as rejected and
    every re-post was refused.)"""
    am = PickyAlertmanager()
    clock = FakeClock()
    registry = prometheus_client.CollectorRegistry()
    with serve_asgi(am.app()) as url, structlog.testing.capture_logs() as logs:
        config = _config(tmp_path, url)
        async with make_engine(config, registry, clock=clock, backoff_base=0.02, backoff_cap=0.2,
                               flush_timeout=1.0) as engine:
            _fire(engine, GOOD)
            _fire(engine, BAD)
            await until_async(lambda: am.posts_of(GOOD) >= 1, what="the good alert delivered")
            await until_async(lambda: sent(registry, "alertmanager", "rejected") == 1.0, what="one rejected")
            refused_before = am.refused
            for posts in range(2, 5):
                clock.advance(config.alerts.resend_interval)
                await until_async(lambda n=posts: am.posts_of(GOOD) >= n, what=f"re-post {posts} of the good alert")
            # The first re-post splits once to learn the poisoned alert; later ones leave it out.
            assert am.refused - refused_before <= 4
            after_learning = am.refused
            clock.advance(config.alerts.resend_interval)
            await until_async(lambda: am.posts_of(GOOD) >= 5, what="one more re-post")
            assert after_learning == am.refused
    rejected = [e for e in logs if e["event"] == "notification.rejected"]
    assert 1 == len(rejected), rejected
    assert ("error", "ContractRegression", 400) == (rejected[0]["log_level"], rejected[0]["alert"],
                                                    rejected[0]["status_code"])
    assert BAD in rejected[0]["key"]
    assert POISON in rejected[0]["reason"]
    assert 1.0 == sent(registry, "alertmanager", "rejected")
    relearned = [e for e in logs if e["event"] == "notification.resend_refused"]
    assert [BAD] == [e["key"].split("/")[1] for e in relearned]
    db = sqlite3.connect(tmp_path / FILENAME)
    try:
        reasons = [r[0] for r in db.execute("SELECT reason FROM quarantine").fetchall()]
    finally:
        db.close()
    assert 1 == len(reasons)
    assert reasons[0].startswith("rejected by alertmanager (400)")
