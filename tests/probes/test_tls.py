"""TLS as the probes see it, against servers on 127.0.0.1 with certificates made in the test: what a valid,
expiring, expired, self-signed, intermediate-signed or TLS 1.2-only server yields (outcome and TlsFacts)."""

from __future__ import annotations

import ssl
import time
from pathlib import Path
from typing import Any

import pytest

from monitor.core.results import Outcome, ProbeResult, TlsFacts
from tests.support.certs import DAY, Authority, serve_tls, server_context
from tests.support.targets import DepsFactory, run_probe, self_signed_tls
from tests.support.targets import http_check as make_check


@pytest.fixture
def ca(tmp_path: Path) -> Authority:
    return Authority(tmp_path)


async def probe(url: str, make_deps: DepsFactory, **target: Any) -> ProbeResult:
    """One run of an http check of `/` against `url`, with the target's TLS fields."""
    return await run_probe(make_check("/", timeout=3.0), make_deps(url, target=target))


def tls_of(result: ProbeResult) -> TlsFacts:
    """The TLS facts of the run's first request (failing the test when there are none)."""
    assert result.http is not None, result.message
    assert result.http.tls is not None, result.message
    return result.http.tls


async def test_a_valid_certificate_reports_its_expiry_subject_issuer_and_version(
        ca: Authority, make_deps: DepsFactory) -> None:
    """A 30-day certificate from the target's ca_file: ok, TLS 1.3, the leaf's notAfter as the earliest expiry (the
    CA lasts a year), the verified chain's too, and the subject and issuer with CN and O."""
    leaf = ca.issue(30)
    with serve_tls(server_context(leaf)) as url:
        result = await probe(url, make_deps, ca_file=str(ca.ca_file))
    assert Outcome.OK == result.outcome, result.message
    tls = tls_of(result)
    assert ("TLSv1.3", "TLS 1.3") == (tls.version, tls.version_label)
    assert (leaf.not_after, leaf.not_after, leaf.not_after) == (tls.not_after, tls.earliest_expiry, tls.chain_expiry)
    assert 29.9 * DAY < leaf.not_after - time.time() < 30 * DAY
    assert ("CN=api.pam.test,O=PAM Backend", "CN=pam-monitor test CA,O=pam-monitor tests") == (tls.subject, tls.issuer)


@pytest.mark.parametrize("days", [5, 2])
async def test_an_expiring_certificate_still_passes_and_says_when(
        days: float, ca: Authority, make_deps: DepsFactory) -> None:
    """A certificate expiring in 5 or 2 days is valid: the run is ok, and its expiry is the one the server holds."""
    leaf = ca.issue(days)
    with serve_tls(server_context(leaf)) as url:
        result = await probe(url, make_deps, ca_file=str(ca.ca_file))
    assert Outcome.OK == result.outcome, result.message
    assert leaf.not_after == tls_of(result).earliest_expiry
    assert (days - 0.01) * DAY < leaf.not_after - time.time() <= days * DAY


async def test_an_expired_certificate_is_tls_error(ca: Authority, make_deps: DepsFactory) -> None:
    """A certificate that expired yesterday fails verification: tls_error naming the expiry, no TLS facts."""
    with serve_tls(server_context(ca.issue(-1))) as url:
        result = await probe(url, make_deps, ca_file=str(ca.ca_file))
    assert Outcome.TLS_ERROR == result.outcome, result.message
    assert "certificate has expired" in result.message
    assert result.http is not None
    assert None is result.http.tls


@pytest.mark.process
async def test_an_untrusted_certificate_is_tls_error(ca: Authority, tmp_path: Path, make_deps: DepsFactory) -> None:
    """A self-signed certificate, and one from a CA the target does not trust: tls_error saying which, whether the
    target trusts its own ca_file or the system CAs."""
    _, self_signed = self_signed_tls(tmp_path)
    (tmp_path / "other").mkdir()
    stranger = Authority(tmp_path / "other", name="someone else's CA")
    with serve_tls(self_signed) as url:
        own = await probe(url, make_deps, ca_file=str(ca.ca_file))
        system = await probe(url, make_deps)
    with serve_tls(server_context(stranger.issue(30))) as url:
        unknown = await probe(url, make_deps, ca_file=str(ca.ca_file))
    for result, reason in ((own, "self-signed certificate"), (system, "self-signed certificate"),
                           (unknown, "unable to get local issuer certificate")):
        assert (Outcome.TLS_ERROR, True) == (result.outcome, reason in result.message), result.message


async def test_a_tls_1_2_only_server_reports_tls_1_2(ca: Authority, make_deps: DepsFactory) -> None:
    """A server capped at TLS 1.2: the run is ok and the version reads "TLS 1.2" (blackbox_exporter's label)."""
    with serve_tls(server_context(ca.issue(30), maximum=ssl.TLSVersion.TLSv1_2)) as url:
        result = await probe(url, make_deps, ca_file=str(ca.ca_file))
    assert Outcome.OK == result.outcome, result.message
    assert ("TLSv1.2", "TLS 1.2") == (tls_of(result).version, tls_of(result).version_label)


async def test_an_intermediate_that_expires_first_is_the_earliest_expiry(
        ca: Authority, make_deps: DepsFactory) -> None:
    """Leaf 60 days, intermediate 4 days: the earliest expiry of the presented chain is the intermediate's (what
    blackbox_exporter reports), and so is the verified chain's; notAfter stays the leaf's."""
    leaf = ca.issue(60, intermediate_days_left=4)
    assert leaf.earliest < leaf.not_after
    with serve_tls(server_context(leaf)) as url:
        result = await probe(url, make_deps, ca_file=str(ca.ca_file))
    assert Outcome.OK == result.outcome, result.message
    tls = tls_of(result)
    assert (leaf.not_after, leaf.earliest, leaf.earliest) == (tls.not_after, tls.earliest_expiry, tls.chain_expiry)


async def test_with_verification_off_the_expiry_is_still_reported(ca: Authority, make_deps: DepsFactory) -> None:
    """verify_tls: false accepts an expired certificate (ok) and still reads it: its expiry (in the past), subject
    and issuer; no chain was verified."""
    leaf = ca.issue(-2)
    with serve_tls(server_context(leaf)) as url:
        result = await probe(url, make_deps, verify_tls=False)
    assert Outcome.OK == result.outcome, result.message
    tls = tls_of(result)
    assert (leaf.not_after, None, "CN=api.pam.test,O=PAM Backend") == (tls.earliest_expiry, tls.chain_expiry,
                                                                      tls.subject)
    assert tls.earliest_expiry is not None
    assert tls.earliest_expiry < time.time() - DAY


async def test_a_renewed_certificate_is_seen_at_the_next_run(ca: Authority, make_deps: DepsFactory) -> None:
    """Loading a new chain into the server (a renewal) shows at the next run: each run opens its own connection."""
    old, new = ca.issue(2), ca.issue(90)
    context = server_context(old)
    with serve_tls(context) as url:
        before = await probe(url, make_deps, ca_file=str(ca.ca_file))
        context.load_cert_chain(new.chain, new.key)
        after = await probe(url, make_deps, ca_file=str(ca.ca_file))
    assert (old.not_after, new.not_after) == (tls_of(before).earliest_expiry, tls_of(after).earliest_expiry)
