"""The `voice` prober: the voice health endpoint (same `expect` as http), then optionally a real synthesis."""

from __future__ import annotations

from typing import Any

from monitor.core.config import Synthesize, VoiceCheck
from monitor.core.results import Outcome, ProbeResult
from probes import http
from probes._audio import sniff
from probes._http import Failed, Fetched, fetch
from probes.deps import Deps
from probes.kind import Kind


async def probe(check: VoiceCheck, deps: Deps, deadline: float) -> ProbeResult:
    """Check voice health, then (if configured and healthy) that synthesis returns real audio, by `deadline`."""
    got = await fetch(deps, check.target, check, deadline=deadline)
    health_s = got.elapsed
    phases = {"health": health_s}
    if isinstance(got, Failed):
        failed = http.failed_result(got)
        return _with(failed, message=f"voice health: {failed.message}", phases=phases)
    health = http.assess(check.expect, got)
    if health.outcome is not Outcome.OK or check.synthesize is None:
        prefix = "voice health" if health.outcome is not Outcome.OK else "voice healthy"
        return _with(health, message=f"{prefix}: {health.message}", phases=phases)

    spec = check.synthesize
    cap = max(spec.min_bytes * 4, deps.body_limit)
    audio = await fetch(deps, check.target, spec, deadline=deadline, cap=cap)
    phases["synthesis"] = audio.elapsed
    return synthesis_result(spec, audio, phases=phases)


def synthesis_result(spec: Synthesize, audio: Fetched | Failed, *, phases: dict[str, float]) -> ProbeResult:
    """Judge a synthesis answer: 2xx, audio content-type, enough bytes, a real audio header, in time."""
    if isinstance(audio, Failed):
        failed = http.failed_result(audio)
        return _with(failed, message=f"synthesis: {failed.message}", phases=phases)
    if not 200 <= audio.status < 300:
        failed = http.status_failure([200], audio)
        message = failed.message.replace("expected 200,", "expected 2xx,", 1)
        return _with(failed, message=f"synthesis: {message}", phases=phases)

    found = sniff(audio.body)
    details: dict[str, Any] = {
        "bytes": len(audio.body),
        "format": found.format,
        "content_type": audio.content_type,
    }
    if audio.truncated:
        details["truncated"] = True
    observed = (
        f"got {audio.content_type or 'no content-type'}, {len(audio.body)}"
        f"{'+' if audio.truncated else ''} bytes, format {found.format or 'unknown'} ({found.reason})"
    )

    def invalid(problem: str) -> ProbeResult:
        return ProbeResult(
            Outcome.INVALID_RESPONSE,
            f"synthesis: {problem}; {observed}",
            status_code=audio.status,
            details=details,
            phases=phases,
        )

    if not any(audio.content_type.startswith(prefix.lower()) for prefix in spec.content_types):
        return invalid(f"expected content-type {' or '.join(spec.content_types)}")
    if len(audio.body) < spec.min_bytes:
        return invalid(f"expected at least {spec.min_bytes} bytes")
    if found.format not in spec.formats:
        return invalid(f"expected {'/'.join(spec.formats)} audio")
    took = audio.elapsed
    if spec.max_latency is not None and took > spec.max_latency:
        return ProbeResult(
            Outcome.SLOW,
            f"synthesis took {took:.2f} s, over the {spec.max_latency:.2f} s budget ({len(audio.body)} bytes "
            f"of {found.format})",
            status_code=audio.status,
            details=details,
            phases=phases,
        )
    return ProbeResult(
        Outcome.OK,
        f"voice healthy in {phases['health']:.2f} s; synthesized {len(audio.body)} bytes of {found.format} "
        f"({audio.content_type}) in {took:.2f} s",
        status_code=audio.status,
        details=details,
        phases=phases,
    )


def _with(result: ProbeResult, *, message: str, phases: dict[str, float]) -> ProbeResult:
    return ProbeResult(
        result.outcome,
        message,
        status_code=result.status_code,
        details=result.details,
        tables=result.tables,
        phases=phases,
    )


def phases(check: VoiceCheck) -> tuple[str, ...]:
    """The phases a voice check times: health, then synthesis when configured."""
    return ("health", "synthesis") if check.synthesize is not None else ("health",)


def requests(check: VoiceCheck) -> int:
    """The health request, then the synthesis request when configured."""
    return 2 if check.synthesize is not None else 1


KIND = Kind(
    name="voice",
    model=VoiceCheck,
    probe=probe,
    outcomes=http.KIND.outcomes,
    alerts=("ContractRegression", "TableMissing", "EndpointDown", "VoiceDegraded"),
    phases=phases,
    requests=requests,
)
