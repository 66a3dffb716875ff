"""monitor.core.results: the closed outcome enum and the one JSON shape a result takes on /status and in `check`."""

from __future__ import annotations

from monitor.core.results import TRANSPORT_OUTCOMES, HttpFacts, Outcome, ProbeResult, Result, TlsFacts


def test_outcome_names_success_and_unreachable() -> None:
    """The documented names are outcomes; only `ok` is a success; unreachable is the transport four."""
    assert {
        "ok", "slow", "unexpected_status", "server_error", "auth_bypass", "timeout", "connection_error",
        "tls_error", "dns_error", "invalid_response", "table_missing", "column_missing", "rls_disabled",
        "permission_denied", "policy_error", "db_error", "internal_error", "rate_limited",
    } <= {o.value for o in Outcome}
    assert [Outcome.OK] == [o for o in Outcome if o.success]
    assert {Outcome.TIMEOUT, Outcome.CONNECTION_ERROR, Outcome.TLS_ERROR, Outcome.DNS_ERROR} == {
        o for o in Outcome if o.unreachable
    }
    assert set() == {o for o in Outcome if o.unreachable} - set(TRANSPORT_OUTCOMES)


def test_result_stamps_identity_and_timing_and_keeps_observations() -> None:
    """A Result keeps what the probe saw (unchanged) and adds check, kind, timing and the confirmation flag."""
    seen = ProbeResult(Outcome.TABLE_MISSING, "relation missing", status_code=500, details={"table": "t"},
                       tables={"t": False}, phases={"query": 0.01})
    result = Result("db", "db", seen, started_at=10.0, finished_at=10.5, duration_s=0.5, confirmation=True)
    assert seen is result.observed
    assert ("db", "db", Outcome.TABLE_MISSING, "relation missing", 500) == (
        result.check, result.kind, result.outcome, result.message, result.status_code)
    assert ({"table": "t"}, {"t": False}, {"query": 0.01}) == (
        dict(result.details), dict(result.tables), dict(result.phases))
    assert (10.0, 10.5, 0.5, True, False) == (
        result.started_at, result.finished_at, result.duration_s, result.confirmation, result.success)


def test_to_status_has_exactly_the_design_keys_and_adds_observations_only_when_present() -> None:
    """The documented keys always; `details` and `tables` only when the probe reported some; time as RFC 3339."""
    bare = Result(check="a", kind="http", outcome=Outcome.OK, message="fine", duration_s=0.1234567,
                  started_at=0.0, finished_at=1_795_000_000.125)
    assert {"name": "a", "kind": "http", "outcome": "ok", "success": True, "status_code": None,
            "duration_s": 0.123457, "message": "fine", "finished_at": "2026-11-18T11:06:40.125Z"} == bare.to_status()
    full = Result(check="d", kind="db", outcome=Outcome.TABLE_MISSING, message="m", duration_s=0.0, started_at=0.0,
                  finished_at=0.0, details={"sqlstate": "42P01"}, tables={"t": False})
    doc = full.to_status()
    assert ({"sqlstate": "42P01"}, {"t": False}, False) == (doc["details"], doc["tables"], doc["success"])


def test_to_status_shows_the_certificate_of_an_https_run() -> None:
    """A run that saw a TLS handshake adds `tls`: blackbox_exporter's version name, the leaf's subject and issuer,
    the expiries as RFC 3339 and the days left until the earliest, from the run's end; without a verified chain
    (verify_tls: false) that expiry is null; a plain-HTTP run has no `tls`."""
    end = 1_795_000_000.0
    tls = TlsFacts("TLSv1.2", end + 30 * 86400, "CN=api,O=PAM", "CN=CA", earliest_expiry=end + 5 * 86400)
    facts = HttpFacts(phases={}, version=1.1, tls=tls)
    doc = Result("a", "http", ProbeResult(Outcome.OK, "m", 200, http=facts), duration_s=0.1, started_at=end,
                 finished_at=end).to_status()
    assert {"version": "TLS 1.2", "subject": "CN=api,O=PAM", "issuer": "CN=CA",
            "not_after": "2026-12-18T11:06:40.000Z", "earliest_expiry": "2026-11-23T11:06:40.000Z",
            "verified_chain_expiry": None, "days_left": 5.0} == doc["tls"]
    plain = Result("a", "http", ProbeResult(Outcome.OK, "m", 200, http=HttpFacts(phases={}, version=1.1)),
                   duration_s=0.1, started_at=end, finished_at=end)
    assert "tls" not in plain.to_status()
