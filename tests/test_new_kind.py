"""A new check kind and a new sink are records, not code paths: a toy kind (its config model and `Kind` record) and a
toy sink (a `SinkSpec`), defined here and handed over through the public registries (`Runner(registry=...)`,
`AlertEngine(rules_by_kind=..., sinks=...)`), run through the runner, are judged by the rules and page through the
sink, with nothing in monitor/, probes/ or alerts/ naming them; and the verdict follows the record's facts, not a
kind's name.

The config is the loader's for everything else (targets, defaults, state_dir) with the toy checks and sink put in
by `model_copy(update=...)`: the loader's `kind:` unions are written out in monitor/core/config (README,
"Development": a new kind's model is added to the `Check` union), which this test does not edit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import prometheus_client

import probes
from alerts import AlertEngine
from alerts.model import Notification, SinkContext
from alerts.sinks.registry import SINKS
from alerts.sinks.spec import SendResult
from monitor.core.clock import SystemClock
from monitor.core.config import Config
from monitor.core.config.alerting import SinkBase
from monitor.core.config.checks import CheckBase
from monitor.core.results import Outcome, ProbeResult
from monitor.metrics import Metrics
from monitor.runner import Runner
from monitor.state import State
from probes.deps import Deps, build_deps
from probes.kind import Kind
from tests.support.poll import until_async


class ToyCheck(CheckBase):
    """A health check of a made-up kind: a 5xx means the endpoint is down."""

    kind: Literal["toy"] = "toy"


class ToyApiCheck(CheckBase):
    """A made-up API kind: a 5xx is a failed expectation, not the endpoint down."""

    kind: Literal["toy_api"] = "toy_api"


class ToySink(SinkBase):
    """A made-up sink's config."""

    kind: Literal["toy_sink"] = "toy_sink"


BROKEN: set[str] = set()


async def toy_probe(check: Any, deps: Deps, deadline: float) -> ProbeResult:
    """500 for a check named in BROKEN, else ok."""
    if check.name in BROKEN:
        return ProbeResult(Outcome.SERVER_ERROR, "toy: expected 200, got 500", status_code=500)
    return ProbeResult(Outcome.OK, "toy: 200", status_code=200)


TOY = Kind(name="toy", model=ToyCheck, probe=toy_probe, outcomes=(Outcome.OK, Outcome.SERVER_ERROR),
           alerts=("EndpointDown", "CheckFailed"), server_error_is_down=True)
TOY_API = Kind(name="toy_api", model=ToyApiCheck, probe=toy_probe, outcomes=(Outcome.OK, Outcome.SERVER_ERROR),
               alerts=("EndpointDown", "CheckFailed"))


@dataclass
class ToySpec:
    """A sink that keeps what it is sent (a SinkSpec: the delivery worker's whole view of a sink)."""

    received: list[tuple[str, str, str]] = field(default_factory=list)
    kind: str = "toy_sink"
    batch_size: int = 1
    resends: bool = False
    honours_inhibition: bool = False

    def lanes(self, sink: ToySink) -> Sequence[str]:
        """One lane."""
        return ("toy",)

    def accepts(self, notification: Notification) -> bool:
        """Everything."""
        return True

    def build_payload(self, sink: ToySink, notifications: Sequence[Notification], *, ctx: SinkContext,
                      now: float) -> Any:
        """(event, alertname, check) per notification."""
        return [(n.event.value, n.alertname, n.labels.get("check", "")) for n in notifications]

    async def send(self, client: httpx.AsyncClient, sink: ToySink, notifications: Sequence[Notification], *,
                   ctx: SinkContext, now: float, lane: int) -> SendResult:
        """Keep the batch; always accepted."""
        self.received.extend(self.build_payload(sink, notifications, ctx=ctx, now=now))
        return SendResult("accepted")


async def test_a_toy_kind_and_a_toy_sink_run_judge_and_page_through_the_public_registries(tmp_path: Path) -> None:
    """Two toy checks break (500): the `toy` one, whose record says a 5xx is down, fires EndpointDown; the `toy_api`
    one, whose record does not, fires CheckFailed; both pages reach the toy sink, and both resolve when fixed."""
    base = Config.model_validate({
        "state_dir": str(tmp_path / "state"),
        "defaults": {"interval": "30s", "timeout": "1s", "failure_threshold": 2, "success_threshold": 1},
        "targets": {"t": {"base_url": "http://127.0.0.1:9"}},
    })
    common = {"target": "t", "interval": 30.0, "timeout": 1.0, "failure_threshold": 2, "success_threshold": 1}
    config = base.model_copy(update={
        "checks": [ToyCheck(name="edge", **common), ToyApiCheck(name="api", **common)],
        "alerts": base.alerts.model_copy(update={"sinks": [ToySink(name="toys")], "confirm_delay": 0.0}),
    })
    spec = ToySpec()
    deps = build_deps(config)
    runner = Runner(config, deps, Metrics(process_metrics=False), State(SystemClock().monotonic),
                    registry={**probes.REGISTRY, "toy": TOY, "toy_api": TOY_API})
    engine = AlertEngine(config, rules_by_kind={**probes.RULES_BY_KIND, "toy": TOY.rules, "toy_api": TOY_API.rules},
                         registry=prometheus_client.CollectorRegistry(), clock=SystemClock(),
                         sinks={**SINKS, "toy_sink": spec})
    try:
        async with engine:
            BROKEN.update({"edge", "api"})
            for _ in range(2):
                for check in runner.checks.values():
                    result = await runner.run_once(check)
                    assert result is not None
                    engine.observe(result)
            await until_async(lambda: len(spec.received) >= 2, timeout=10, what="two pages")
            assert {("firing", "EndpointDown", "edge"), ("firing", "CheckFailed", "api")} == set(spec.received)
            BROKEN.clear()
            for check in runner.checks.values():
                result = await runner.run_once(check)
                assert result is not None
                engine.observe(result)
            await until_async(lambda: len(spec.received) >= 4, timeout=10, what="two resolutions")
            assert {("resolved", "EndpointDown", "edge"), ("resolved", "CheckFailed", "api")} == set(spec.received[2:])
    finally:
        BROKEN.clear()
        await deps.aclose()
