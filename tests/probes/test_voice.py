"""The `voice` prober: health with http's `expect`, then a real synthesis request judged on its audio."""

from __future__ import annotations

from typing import Any

import pytest

from monitor.core.config import VoiceCheck
from monitor.core.results import Outcome
from tests.support.targets import TIMING, DepsFactory, run_probe


def make_check(health: dict[str, str] | None = None, audio: dict[str, str] | None = None,
               **fields: Any) -> VoiceCheck:
    spec: dict[str, Any] = {"name": "v", "kind": "voice", "target": "t", "path": "/voice/health",
                            "query": health or {}, **TIMING, **fields}
    if audio is not None:
        spec["synthesize"] = {"path": "/audio", "query": audio, "json": {"text": "health check"},
                              "min_bytes": 1000, **spec.get("synthesize", {})}
    return VoiceCheck.model_validate(spec)


async def test_healthy_with_real_wav(base_url: str, make_deps: DepsFactory) -> None:
    """Healthy voice plus a real WAV answer is ok; phases time both steps; details give bytes and format."""
    check = make_check(audio={"kind": "wav"}, expect={"json": {"status": "healthy"}})
    result = await run_probe(check, make_deps(base_url))
    assert Outcome.OK == result.outcome
    assert {"health", "synthesis"} == set(result.phases)
    assert ("wav", "audio/wav", 1644) == (result.details["format"], result.details["content_type"],
                                          result.details["bytes"])
    assert "synthesized 1644 bytes of wav (audio/wav)" in result.message


async def test_health_only(base_url: str, make_deps: DepsFactory) -> None:
    """Without synthesize, a healthy health endpoint is ok and only the health phase is timed."""
    result = await run_probe(make_check(), make_deps(base_url))
    assert Outcome.OK == result.outcome
    assert ["health"] == list(result.phases)


@pytest.mark.parametrize(("kind", "ctype"), [("mp3", "audio/mpeg"), ("ogg", "audio/ogg")])
async def test_mp3_and_ogg_are_accepted(base_url: str, make_deps: DepsFactory, kind: str, ctype: str) -> None:
    """Hand-built MP3 (ID3 + MPEG frames) and OGG pages served as audio are ok and named by format."""
    result = await run_probe(make_check(audio={"kind": kind, "ctype": ctype}), make_deps(base_url))
    assert (Outcome.OK, kind) == (result.outcome, result.details["format"])


async def test_limited_health_is_invalid_response(base_url: str, make_deps: DepsFactory) -> None:
    """A 200 health whose JSON says "limited" fails expect json status healthy, and synthesis is not tried."""
    check = make_check(health={"status": "limited"}, audio={"kind": "wav"}, expect={"json": {"status": "healthy"}})
    result = await run_probe(check, make_deps(base_url))
    assert (Outcome.INVALID_RESPONSE, 200) == (result.outcome, result.status_code)
    assert "voice health: json field status: expected 'healthy', got 'limited'" == result.message
    assert ["health"] == list(result.phases)


async def test_voice_down_is_server_error(base_url: str, make_deps: DepsFactory) -> None:
    """A 503 from voice health is server_error."""
    result = await run_probe(make_check(health={"code": "503", "status": "unavailable"}), make_deps(base_url))
    assert (Outcome.SERVER_ERROR, 503) == (result.outcome, result.status_code)
    assert result.message.startswith("voice health: expected 200, got 503 after ")


async def test_synthesis_5xx_is_server_error(base_url: str, make_deps: DepsFactory) -> None:
    """Healthy voice but a 503 from synthesis is server_error saying it was the synthesis."""
    result = await run_probe(make_check(audio={"status": "503"}), make_deps(base_url))
    assert (Outcome.SERVER_ERROR, 503) == (result.outcome, result.status_code)
    assert result.message.startswith("synthesis: expected 2xx, got 503 after ")


async def test_short_audio(base_url: str, make_deps: DepsFactory) -> None:
    """200 bytes of zeros as audio/wav is invalid_response stating the byte count and the missing format."""
    result = await run_probe(make_check(audio={"kind": "zeros", "size": "200"}), make_deps(base_url))
    assert Outcome.INVALID_RESPONSE == result.outcome
    assert result.message.startswith(
        "synthesis: expected at least 1000 bytes; got audio/wav, 200 bytes, format unknown"
    )


async def test_wrong_content_type(base_url: str, make_deps: DepsFactory) -> None:
    """Real WAV bytes labelled text/html fail the content-type assertion."""
    result = await run_probe(make_check(audio={"kind": "wav", "ctype": "text/html"}), make_deps(base_url))
    assert Outcome.INVALID_RESPONSE == result.outcome
    assert result.message.startswith("synthesis: expected content-type audio/; got text/html, 1644 bytes, format wav")


async def test_bytes_that_are_not_audio(base_url: str, make_deps: DepsFactory) -> None:
    """5000 bytes of text labelled audio/mpeg are invalid_response: no audio header."""
    check = make_check(audio={"kind": "text", "ctype": "audio/mpeg", "size": "5000"})
    result = await run_probe(check, make_deps(base_url))
    assert (Outcome.INVALID_RESPONSE, None) == (result.outcome, result.details["format"])
    assert "expected mp3/wav/ogg audio; got audio/mpeg, 5000 bytes, format unknown" in result.message


async def test_format_not_allowed(base_url: str, make_deps: DepsFactory) -> None:
    """A valid WAV when only mp3 is allowed is invalid_response."""
    check = make_check(audio={"kind": "wav"}, synthesize={"formats": ["mp3"]})
    result = await run_probe(check, make_deps(base_url))
    assert Outcome.INVALID_RESPONSE == result.outcome
    assert "expected mp3 audio" in result.message


async def test_slow_synthesis(base_url: str, make_deps: DepsFactory) -> None:
    """Synthesis slower than synthesize.max_latency is slow, with the time and the budget."""
    check = make_check(audio={"kind": "wav", "delay": "0.2"}, synthesize={"max_latency": "50ms"})
    result = await run_probe(check, make_deps(base_url))
    assert Outcome.SLOW == result.outcome
    assert "over the 0.05 s budget" in result.message


async def test_synthesis_hang_is_timeout(base_url: str, make_deps: DepsFactory) -> None:
    """Healthy voice but a synthesis that never answers is timeout within the check's timeout."""
    check = make_check(timeout=0.4, synthesize={"path": "/hang"})
    result = await run_probe(check, make_deps(base_url))
    assert Outcome.TIMEOUT == result.outcome
    assert result.message.startswith("synthesis: timed out after")
