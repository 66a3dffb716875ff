"""The `voice` prober: the voice health endpoint (same `expect` as http) and, when configured, a real synthesis.

Both parts always run, concurrently, each with the whole deadline: a broken synthesizer behind a degraded health
endpoint is still tried, and the sentence reports both ("voice health: ...; synthesis: ..."). The outcome is the
worse of the two by the fixed order of probes/_verdict.py (WORST_FIRST); `status_code` and `body_excerpt` are
the deciding part's; `details` has one entry per part (`health`, `synthesis`) with its outcome, status and
duration; `phases` time both.

A health body whose JSON `status` field is outside `healthy_status` (default ok, healthy, up, pass;
case-insensitive) is `invalid_response` (VoiceDegraded) even without `expect.json`: `{"status": "limited"}` is a
degraded voice system however it is answered (an `expect.json` entry for `status` takes over). Each part's sentence
names its method and path; a refused synthesis names the layer that answered (the CSRF middleware, an owner check,
a blocker) when its body says so.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from typing import Any

from monitor.core.config import RequestSpec, Synthesize, VoiceCheck
from monitor.core.results import Outcome, ProbeResult
from probes import http
from probes._audio import sniff
from probes._http import Failed, Fetched, fetch, parse_json, request_headers, short_repr
from probes._verdict import rank
from probes.deps import Deps
from probes.identity import SignInFailed, credential_for
from probes.kind import Kind

# Observed values that are free text go at the top level of details (where the runner redacts secrets), and only
# the deciding part's; the per-part summaries hold numbers and short tokens.
_TEXT_KEYS = ("body_excerpt", "tables_missing", "code", "step", "identity", "foreign_refusal")


@dataclass(frozen=True, slots=True)
class _Part:
    """One request's verdict: `label` leads its sentence, `key` names it in details and phases."""

    key: str
    label: str
    result: ProbeResult
    seconds: float


async def probe(check: VoiceCheck, deps: Deps, deadline: float) -> ProbeResult:
    """Check voice health and, when configured, that synthesis returns real audio, both by `deadline`."""
    if check.synthesize is None:
        got = await fetch(deps, check.target, check, deadline=deadline)
        return combine([health_part(check, got)])
    spec = check.synthesize
    cap = max(spec.min_bytes * 4, deps.body_limit)
    got, audio = await asyncio.gather(
        fetch(deps, check.target, check, deadline=deadline),
        _synthesize(check, spec, deps, deadline, cap),
    )
    return combine([health_part(check, got), audio])


async def _synthesize(check: VoiceCheck, spec: Synthesize, deps: Deps, deadline: float, cap: int) -> _Part:
    """The synthesis request, sent with the identity's token when `synthesize.identity` names one."""
    headers = None
    if spec.identity is not None:
        signed = await credential_for(deps, spec.identity, deadline)
        if isinstance(signed, SignInFailed):
            return _Part("synthesis", "synthesis", _named(spec, signed.result(spec.identity)), 0.0)
        headers = signed[1].apply(request_headers(deps.targets[check.target], spec))
    audio = await fetch(deps, check.target, spec, deadline=deadline, cap=cap, headers=headers)
    return synthesis_part(spec, audio)


def health_part(check: VoiceCheck, got: Fetched | Failed) -> _Part:
    """The health endpoint's answer judged like an `http` check's, then its JSON `status` against healthy_status."""
    result = http.failed_result(got) if isinstance(got, Failed) else http.assess(check.expect, got)
    healthy = result.outcome in (Outcome.OK, Outcome.SLOW)
    if isinstance(got, Fetched) and healthy and "status" not in check.expect.json_fields:
        said = _unhealthy_status(check, got)
        if said is not None:
            result = ProbeResult(Outcome.INVALID_RESPONSE, said, status_code=got.status,
                                 details={**result.details, "health_status": said.split("'")[1]})
    return _Part("health", "voice health", _named(check, result), got.elapsed)


def _unhealthy_status(check: VoiceCheck, got: Fetched) -> str | None:
    """A sentence when the body's JSON `status` is a string outside healthy_status; None otherwise."""
    parsed, document, _ = parse_json(got)
    if not parsed or not isinstance(document, dict) or not isinstance(document.get("status"), str):
        return None
    value = document["status"]
    healthy = [h.lower() for h in check.healthy_status]
    if value.lower() in healthy:
        return None
    return (f"{got.status} but the body says status '{short_repr(value)[1:-1]}', not one of {', '.join(healthy)}: "
            f"{short_repr(got.excerpt())}")


def _named(spec: RequestSpec, result: ProbeResult) -> ProbeResult:
    """The result with its sentence led by the request's method and path template."""
    return dataclasses.replace(result, message=f"{spec.method} {spec.path}: {result.message}")


def synthesis_part(spec: Synthesize, audio: Fetched | Failed) -> _Part:
    """The synthesis answer judged: 2xx, audio content-type, enough bytes, a real audio header, in time."""
    return _Part("synthesis", "synthesis", _named(spec, synthesis_result(spec, audio)), audio.elapsed)


def synthesis_result(spec: Synthesize, audio: Fetched | Failed) -> ProbeResult:
    """The verdict on a synthesis answer, its sentence without the part's label."""
    if isinstance(audio, Failed):
        return http.failed_result(audio)
    if not 200 <= audio.status < 300:
        return http.status_failure([200], audio, shown="2xx")

    found = sniff(audio.body)
    details: dict[str, Any] = {"bytes": len(audio.body), "format": found.format, "content_type": audio.content_type}
    if audio.truncated:
        details["truncated"] = True
    observed = (
        f"got {audio.content_type or 'no content-type'}, {len(audio.body)}"
        f"{'+' if audio.truncated else ''} bytes, format {found.format or 'unknown'} ({found.reason})"
    )

    def verdict(outcome: Outcome, message: str) -> ProbeResult:
        return ProbeResult(outcome, message, status_code=audio.status, details=details)

    if not any(audio.content_type.startswith(prefix.lower()) for prefix in spec.content_types):
        return verdict(Outcome.INVALID_RESPONSE, f"expected content-type {' or '.join(spec.content_types)}; {observed}")
    if len(audio.body) < spec.min_bytes:
        return verdict(Outcome.INVALID_RESPONSE, f"expected at least {spec.min_bytes} bytes; {observed}")
    if found.format not in spec.formats:
        return verdict(Outcome.INVALID_RESPONSE, f"expected {'/'.join(spec.formats)} audio; {observed}")
    took = audio.elapsed
    what = f"{len(audio.body)} bytes of {found.format} ({audio.content_type})"
    if spec.max_latency is not None and took > spec.max_latency:
        return verdict(Outcome.SLOW, f"took {took:.2f} s for {what}, over the {spec.max_latency:.2f} s budget")
    return verdict(Outcome.OK, f"synthesized {what} in {took:.2f} s")


def combine(parts: list[_Part]) -> ProbeResult:
    """One result from the parts: the worst outcome (first part among equals), both sentences, both summaries."""
    deciding = min(parts, key=lambda part: rank(part.result.outcome))
    decided = deciding.result
    details: dict[str, Any] = {key: decided.details[key] for key in _TEXT_KEYS if key in decided.details}
    for part in parts:
        summary = {k: v for k, v in part.result.details.items() if k not in _TEXT_KEYS}
        details[part.key] = {"outcome": part.result.outcome.value, "status_code": part.result.status_code,
                             "seconds": round(part.seconds, 3), **summary}
    waits = [part.result.retry_after for part in parts if part.result.retry_after is not None]
    return ProbeResult(
        decided.outcome,
        "; ".join(f"{part.label}: {part.result.message}" for part in parts),
        status_code=decided.status_code,
        details=details,
        tables=decided.tables,
        phases={part.key: part.seconds for part in parts},
        retry_after=max(waits) if waits else None,
    )


def phases(check: VoiceCheck) -> tuple[str, ...]:
    """The phases a voice check times: health, and synthesis when configured."""
    return ("health", "synthesis") if check.synthesize is not None else ("health",)


def requests(check: VoiceCheck) -> int:
    """The health request, then the synthesis request when configured."""
    return 2 if check.synthesize is not None else 1


KIND = Kind(
    name="voice",
    model=VoiceCheck,
    probe=probe,
    outcomes=(*http.KIND.outcomes, Outcome.IDENTITY_FAILED),
    alerts=("ContractRegression", "TableMissing", "EndpointDown", "VoiceDegraded", "CertificateExpiring",
            "CheckFailed"),
    phases=phases,
    requests=requests,
)
