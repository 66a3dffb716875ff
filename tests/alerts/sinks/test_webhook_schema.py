"""The webhook payload, its JSON Schema (docs/webhook-payload.schema.json) and the README's "Webhook payload" section
cannot drift: real payloads of every event validate and carry exactly the documented fields, the README's examples
validate, and its field table names the schema's fields."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import prometheus_client
import pytest

from alerts.model import fingerprint
from alerts.sinks.notify import send_tests
from tests.support.alerting import Recorder, make_config, make_engine, queue_depth, result
from tests.support.clock import FakeClock
from tests.support.poll import until_async

ROOT = Path(__file__).resolve().parents[3]
SCHEMA: dict[str, Any] = json.loads((ROOT / "docs" / "webhook-payload.schema.json").read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
TOP = set(SCHEMA["properties"])
ALERT = set(SCHEMA["$defs"]["alert"]["properties"])


def section() -> str:
    """The README's "Webhook payload" section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^### Webhook payload\n(.*?)(?=^##)", text, re.S | re.M)
    assert match is not None, "README.md has no '### Webhook payload' section"
    return match.group(1)


def check(body: dict[str, Any]) -> None:
    """Valid against the schema, with exactly the documented fields (the schema leaves room for later ones)."""
    VALIDATOR.validate(body)
    assert (TOP, [ALERT] * len(body["alerts"])) == (set(body), [set(a) for a in body["alerts"]])


def test_the_schema_is_a_valid_json_schema() -> None:
    """docs/webhook-payload.schema.json is itself valid Draft 2020-12."""
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


async def test_real_payloads_of_every_event_validate(recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """Through the engine to a real local server: firing (with from/to), reminder, flapping, resolved and the
    notify --test payload each validate and carry exactly the documented fields."""
    rec, url = recorder
    registry, clock = prometheus_client.CollectorRegistry(), FakeClock()
    checks = [{"name": "backend_health", "kind": "http", "target": "backend", "path": "/health"},
              {"name": "voice_health", "kind": "voice", "target": "backend", "path": "/voice",
               "failure_threshold": 1, "success_threshold": 1}]
    config = make_config(tmp_path, sinks=[{"kind": "webhook", "url": f"{url}/hook"}], checks=checks,
                         alerts={"repeat_interval": "1m", "flapping": {"window": "10m", "max_transitions": 2}})
    async with make_engine(config, registry, clock) as e:
        def feed(check: str, outcome: str, status: int, seconds: float = 1.0) -> None:
            clock.advance(seconds)
            e.observe(result(check, outcome, status=status, at=clock.now))

        feed("backend_health", "ok", 200)
        feed("backend_health", "server_error", 500)
        feed("backend_health", "server_error", 500)
        feed("backend_health", "server_error", 500, seconds=61.0)
        feed("backend_health", "ok", 200)
        feed("backend_health", "ok", 200)
        for outcome in ("slow", "ok", "slow"):
            feed("voice_health", outcome, 200)
        await until_async(lambda: queue_depth(registry) == 0.0, what="an empty outbox")
    answers = await send_tests(config, config.alerts.sinks, now=clock.now)
    assert ["accepted"] == [a.said for a in answers]
    bodies = rec.bodies("/hook")
    for body in bodies:
        check(body)
    assert {"firing", "reminder", "flapping", "resolved"} == {b["event"] for b in bodies}
    assert {"ContractRegression", "EndpointDown", "VoiceDegraded", "PamMonitorTest"} \
        == {b["alerts"][0]["labels"]["alertname"] for b in bodies}


def test_the_readme_examples_validate() -> None:
    """Each JSON example of the README section is a valid payload whose fingerprint is its labels' hash; there is a
    firing one and a resolved one."""
    examples = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", section(), re.S)]
    for body in examples:
        check(body)
        assert [fingerprint(a["labels"]) for a in body["alerts"]] == [a["fingerprint"] for a in body["alerts"]]
    assert ["firing", "resolved"] == [b["status"] for b in examples]


def test_the_readme_table_names_every_field() -> None:
    """The section's table has one row per schema field: the payload's, then `alerts[].<field>`."""
    rows = re.findall(r"^\| `([^`]+)` \|", section(), re.M)
    assert sorted([*TOP, *(f"alerts[].{name}" for name in ALERT)]) == sorted(rows)


@pytest.mark.parametrize(("path", "value"), [
    (("version",), "2"),
    (("event",), "paged"),
    (("alerts", 0, "startsAt"), "2026-01-01 00:00:00"),
    (("alerts", 0, "fingerprint"), "not-a-hash"),
    (("alerts", 0, "labels", "severity"), "page"),
    (("alerts", 0, "labels", "bad-name"), "x"),
    (("alerts", 0, "endsAt"), None),  # a resolved alert has an end
    (("alerts",), []),
], ids=lambda v: str(v))
def test_the_schema_rejects_what_is_not_a_payload(path: tuple[Any, ...], value: Any) -> None:
    """The schema is no rubber stamp: the resolved README example, changed in one place, fails."""
    body = copy.deepcopy(json.loads(re.findall(r"```json\n(.*?)```", section(), re.S)[1]))
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert not VALIDATOR.is_valid(body)
