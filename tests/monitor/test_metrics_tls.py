"""blackbox_exporter's TLS series in /metrics: probe_http_ssl, probe_ssl_earliest_cert_expiry,
probe_ssl_last_chain_expiry_timestamp_seconds and probe_tls_version_info, from a check's last handshake."""

from __future__ import annotations

from monitor.core.results import HTTP_PHASES, HttpFacts, Outcome, ProbeResult, Result, TlsFacts
from monitor.metrics import Metrics

LB = 'check="api",kind="http"'
TLS = TlsFacts("TLSv1.2", 1_800_000_000.0, "CN=api.pam.test,O=PAM", "CN=CA", earliest_expiry=1_700_000_000.0,
               chain_expiry=1_750_000_000.0)
TLS_SERIES = ("probe_ssl_earliest_cert_expiry", "probe_ssl_last_chain_expiry_timestamp_seconds",
              "probe_tls_version_info")


def facts(tls: TlsFacts | None, version: float = 1.1) -> HttpFacts:
    """HTTP facts of an answered request (version 0: no answer came) with these TLS facts."""
    return HttpFacts(phases=dict.fromkeys(HTTP_PHASES, 0.01), version=version, content_length=2, tls=tls)


def run(check: str, outcome: Outcome, http: HttpFacts | None) -> Result:
    """A finished run of an http check."""
    return Result(check, "http", ProbeResult(outcome, "m", 200 if http and http.version else None, http=http),
                  duration_s=0.05, started_at=1000.0, finished_at=1000.05)


def scrape(m: Metrics) -> dict[str, str]:
    """Sample lines of a scrape, name{labels} -> value."""
    out = {}
    for line in m.render().decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = value
    return out


def tls_lines(samples: dict[str, str]) -> dict[str, str]:
    """Only the TLS series."""
    return {k: v for k, v in samples.items() if k.startswith(TLS_SERIES)}


def metrics() -> Metrics:
    """Metrics with one http check `api` and one db check."""
    m = Metrics(process_metrics=False)
    m.set_checks([("api", "http", (Outcome.OK, Outcome.CONNECTION_ERROR, Outcome.TLS_ERROR), (), (), True),
                  ("db", "db", (Outcome.OK,), (), (), False)])
    return m


def test_tls_series_appear_with_the_first_handshake_with_blackbox_names_and_values() -> None:
    """Before a handshake no TLS series exist (a 0 would read as expired in 1970) and probe_http_ssl is 0; after
    one they carry the earliest expiry, the verified chain's and the version as blackbox_exporter labels it."""
    m = metrics()
    before = scrape(m)
    assert ({}, "0") == (tls_lines(before), before[f"probe_http_ssl{{{LB}}}"])
    assert [] == [k for k in before if 'check="db"' in k and k.startswith("probe_http_ssl")]
    m.observe(run("api", Outcome.OK, facts(TLS)), None)
    after = scrape(m)
    assert {
        f"probe_ssl_earliest_cert_expiry{{{LB}}}": "1700000000",
        f"probe_ssl_last_chain_expiry_timestamp_seconds{{{LB}}}": "1750000000",
        f'probe_tls_version_info{{{LB},version="TLS 1.2"}}': "1",
    } == tls_lines(after)
    assert "1" == after[f"probe_http_ssl{{{LB}}}"]


def test_a_run_without_a_handshake_keeps_the_last_certificate_and_plain_http_ends_it() -> None:
    """A refused connection or a failed handshake (no answer, no TLS facts) says nothing about the certificate:
    the series stay, probe_http_ssl reads 0 for that run. An answer over plain HTTP removes them."""
    m = metrics()
    m.observe(run("api", Outcome.OK, facts(TLS)), None)
    seen = tls_lines(scrape(m))
    m.observe(run("api", Outcome.TLS_ERROR, facts(None, version=0.0)), Outcome.OK)
    m.observe(run("api", Outcome.CONNECTION_ERROR, None), Outcome.TLS_ERROR)
    kept = scrape(m)
    assert (seen, "0") == (tls_lines(kept), kept[f"probe_http_ssl{{{LB}}}"])
    m.observe(run("api", Outcome.OK, facts(None)), Outcome.CONNECTION_ERROR)
    assert {} == tls_lines(scrape(m))


def test_verification_off_has_no_verified_chain_series() -> None:
    """With verify_tls: false nothing was verified: the earliest expiry and version only, as blackbox_exporter."""
    m = metrics()
    m.observe(run("api", Outcome.OK, facts(TlsFacts("TLSv1.3", 5.0, None, None, earliest_expiry=5.0))), None)
    assert {f"probe_ssl_earliest_cert_expiry{{{LB}}}": "5",
            f'probe_tls_version_info{{{LB},version="TLS 1.3"}}': "1"} == tls_lines(scrape(m))


def test_a_reload_keeps_the_certificate_of_a_check_that_stays() -> None:
    """A config reload keeps a surviving check's TLS series and drops a removed check's."""
    m = metrics()
    m.observe(run("api", Outcome.OK, facts(TLS)), None)
    seen = tls_lines(scrape(m))
    m.set_checks([("api", "http", (Outcome.OK,), (), (), True), ("other", "http", (Outcome.OK,), (), (), True)])
    assert seen == tls_lines(scrape(m))
    m.set_checks([("other", "http", (Outcome.OK,), (), (), True)])
    assert {} == tls_lines(scrape(m))
