"""The `http` prober against a real misbehaving server; plus its helpers. Broken targets (refused, DNS, hang,
garbage, closed, reset) are in test_contract.py for every kind."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Iterator

import pytest

from monitor.core.results import Outcome
from probes._http import body_excerpt, find_missing_relation, json_field_problems, json_path
from tests.support.servers import serve_asgi
from tests.support.targets import TIMING, DepsFactory, create_target_app, run_probe
from tests.support.targets import http_check as make_check


@pytest.fixture(scope="module")
def other_url() -> Iterator[str]:
    with serve_asgi(create_target_app()) as url:
        yield url


async def test_ok_with_json_field(base_url: str, make_deps: DepsFactory) -> None:
    """A 200 whose JSON field matches is ok, and the status code is recorded."""
    check = make_check(query={"body": json.dumps({"status": "healthy"}), "ctype": "application/json"},
                       expect={"status": [200], "json": {"status": "healthy"}})
    result = await run_probe(check, make_deps(base_url))
    assert (Outcome.OK, 200) == (result.outcome, result.status_code)
    assert result.message.startswith("GET /respond: 200 after ")


async def test_500_is_server_error_with_excerpt(base_url: str, make_deps: DepsFactory) -> None:
    """A 500 is server_error; the message states expected and actual status; details carry a clean excerpt."""
    check = make_check(query={"status": "500", "body": "boom\x00\x07 went the server"})
    result = await run_probe(check, make_deps(base_url))
    assert Outcome.SERVER_ERROR == result.outcome
    assert 500 == result.status_code
    assert result.message.startswith("GET /respond: expected 200, got 500 after ")
    assert "boom went the server" == result.details["body_excerpt"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ('{"detail": "relation \\"public.user_settings\\" does not exist"}', "42P01"),
        ('{"code": "42P01", "message": "relation \\"user_settings\\" does not exist"}', "42P01"),
        ('{"code": "PGRST205", "message": "Could not find the table \'public.user_settings\' in the schema cache"}',
         "PGRST205"),
    ],
    ids=["postgres-text", "sqlstate", "postgrest"],
)
async def test_500_naming_a_relation_is_table_missing(
    base_url: str, make_deps: DepsFactory, body: str, code: str
) -> None:
    """A 5xx body naming a missing relation (each of the three forms) is table_missing with the table named."""
    check = make_check(query={"status": "500", "body": body, "ctype": "application/json"})
    result = await run_probe(check, make_deps(base_url))
    assert Outcome.TABLE_MISSING == result.outcome
    assert ["user_settings"] == result.details["tables_missing"]
    assert code == result.details["code"]
    assert "user_settings does not exist" in result.message


async def test_404_is_unexpected_status(base_url: str, make_deps: DepsFactory) -> None:
    """A 4xx not in expect.status is unexpected_status, and a 404 body naming a table is not table_missing."""
    check = make_check(query={"status": "404", "body": 'relation "x" does not exist'})
    result = await run_probe(check, make_deps(base_url))
    assert (Outcome.UNEXPECTED_STATUS, 404) == (result.outcome, result.status_code)


async def test_wrong_json_field(base_url: str, make_deps: DepsFactory) -> None:
    """A JSON field with another value is invalid_response naming the field, expected and actual values."""
    check = make_check(query={"body": json.dumps({"status": "limited"})}, expect={"json": {"status": "healthy"}})
    result = await run_probe(check, make_deps(base_url))
    assert Outcome.INVALID_RESPONSE == result.outcome
    assert "GET /respond: json field status: expected 'healthy', got 'limited'" == result.message
    assert 200 == result.status_code


async def test_non_json_body_when_json_asserted(base_url: str, make_deps: DepsFactory) -> None:
    """A body that is not JSON fails a JSON assertion as invalid_response, saying what arrived."""
    check = make_check(query={"body": "<html>hi</html>", "ctype": "text/html"}, expect={"json": {"status": "ok"}})
    result = await run_probe(check, make_deps(base_url))
    assert Outcome.INVALID_RESPONSE == result.outcome
    assert "not JSON (text/html, 15 bytes)" in result.message


async def test_body_regex(base_url: str, make_deps: DepsFactory) -> None:
    """body_regex is searched in the body: a match is ok, a miss is invalid_response."""
    deps = make_deps(base_url)
    hit = await run_probe(make_check(query={"body": "all systems go"}, expect={"body_regex": "systems? go"}), deps)
    miss = await run_probe(make_check(query={"body": "all systems down"}, expect={"body_regex": "go$"}), deps)
    assert (Outcome.OK, Outcome.INVALID_RESPONSE) == (hit.outcome, miss.outcome)
    assert "does not match regex 'go$'" in miss.message


async def test_slow(base_url: str, make_deps: DepsFactory) -> None:
    """A response slower than expect.max_latency is slow, with the actual latency and the budget."""
    check = make_check(query={"delay": "0.2"}, expect={"max_latency": "50ms"})
    result = await run_probe(check, make_deps(base_url))
    assert (Outcome.SLOW, 200) == (result.outcome, result.status_code)
    assert "over the 0.05 s budget" in result.message


async def test_drip_body_is_timeout_with_status(base_url: str, make_deps: DepsFactory) -> None:
    """Headers arrive but the body drips forever: timeout, and the status that did arrive is kept."""
    check = make_check("/drip", **{**TIMING, "timeout": 0.3})
    result = await run_probe(check, make_deps(base_url))
    assert (Outcome.TIMEOUT, 200) == (result.outcome, result.status_code)
    assert "reading the body of a 200 response" in result.message


async def test_endless_body_is_capped(base_url: str, make_deps: DepsFactory) -> None:
    """A 1 GiB streamed body is read only up to the byte cap; memory stays small and the probe returns ok."""
    cap = 256 * 1024
    deps = make_deps(base_url, body_limit=cap)
    tracemalloc.start()
    try:
        result = await run_probe(make_check("/endless"), deps)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert Outcome.OK == result.outcome
    assert cap == result.details["bytes"]
    assert True is result.details["truncated"]
    assert peak < 50 * 1024 * 1024, f"peak traced memory {peak} bytes"


async def test_endless_body_with_json_assertion_is_invalid(base_url: str, make_deps: DepsFactory) -> None:
    """A body longer than the cap cannot satisfy a JSON assertion and the message names the cap."""
    deps = make_deps(base_url, body_limit=4096)
    result = await run_probe(make_check("/endless", expect={"json": {"status": "ok"}}), deps)
    assert Outcome.INVALID_RESPONSE == result.outcome
    assert "longer than the 4096-byte read cap" in result.message


@pytest.mark.parametrize("value", ["sekrit-value\nInjected: 1", "sekrit-caf\u00e9", "sekrit\x00"],
                         ids=["newline", "non-ascii", "nul"])
async def test_bad_header_value_is_reported_without_the_secret(
    base_url: str, make_deps: DepsFactory, value: str
) -> None:
    """A header value that cannot be sent is internal_error naming the header, and no part of the secret value
    is in the message (a non-ASCII value used to escape the probe as UnicodeEncodeError)."""
    deps = make_deps(base_url, headers={"X-Api-Key": value})
    result = await run_probe(make_check(), deps)
    assert Outcome.INTERNAL_ERROR == result.outcome
    assert ("GET /respond: could not encode the request: the value of header X-Api-Key has a control or non-ASCII "
            "character; check the configured headers") == result.message


# ---------------------------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("body", "tables", "code"),
    [
        (b'ERROR: relation "public.user_settings" does not exist', ("user_settings",), "42P01"),
        (b'{"message":"relation \\"audit.events\\" does not exist","code":"42P01"}', ("audit.events",), "42P01"),
        (b'{"code":"42P01","message":"undefined table"}', (), "42P01"),
        (b'{"code":"PGRST205","message":"Could not find the table \'public.a\' in the schema cache"}', ("a",),
         "PGRST205"),
    ],
)
def test_find_missing_relation_forms(body: bytes, tables: tuple[str, ...], code: str) -> None:
    """Each missing-relation form yields its table names (public. dropped, other schemas kept) and code."""
    found = find_missing_relation(body)
    assert found is not None
    assert (tables, code) == (found.tables, found.code)


def test_find_missing_relation_ignores_other_errors() -> None:
    """An ordinary error body is not mistaken for a missing table."""
    assert None is find_missing_relation(b'{"detail": "duplicate key value violates unique constraint"}')


def test_json_paths_and_problems() -> None:
    """Dotted paths reach nested objects and list items; mismatches and missing fields are reported."""
    doc = {"status": "ok", "checks": {"db": "ok"}, "items": [{"id": 7}], "up": True}
    assert 7 == json_path(doc, "items.0.id")
    problems = json_field_problems(doc, {"checks.db": "ok", "items.1.id": 7, "up": 1, "status": "ok"})
    assert [
        "json field items.1.id: expected 7, but the field is missing",
        "json field up: expected 1, got True",
    ] == problems


def test_body_excerpt_is_short_and_clean() -> None:
    """An excerpt is at most 200 characters, with control characters and bad bytes neutralised."""
    excerpt = body_excerpt(b"\x1b[31mred\xff" + b"a" * 500)
    assert 200 == len(excerpt)
    assert excerpt.startswith("[31mred\ufffd")
