"""The `voice` prober: health with http's `expect` and a real synthesis request judged on its audio, both always
run and both reported; against the misbehave-on-demand target and a voice system whose parts break separately."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from monitor.core.config import VoiceCheck
from monitor.core.results import Outcome
from tests.support.backends import VoiceSystem
from tests.support.servers import serve_asgi
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
    """Healthy voice plus a real WAV answer is ok; phases time both parts; details summarise each part."""
    check = make_check(audio={"kind": "wav"}, expect={"json": {"status": "healthy"}})
    result = await run_probe(check, make_deps(base_url))
    assert Outcome.OK == result.outcome
    assert {"health", "synthesis"} == set(result.phases)
    synthesis = result.details["synthesis"]
    assert ("ok", 200, "wav", "audio/wav", 1644) == (synthesis["outcome"], synthesis["status_code"],
                                                     synthesis["format"], synthesis["content_type"], synthesis["bytes"])
    assert ("ok", 200) == (result.details["health"]["outcome"], result.details["health"]["status_code"])
    assert re.fullmatch(r"voice health: GET /voice/health: 200 after \d\.\d\d s; synthesis: POST \S+: "
                        r"synthesized 1644 bytes of wav "
                        r"\(audio/wav\) in \d\.\d\d s", result.message), result.message


async def test_health_only(base_url: str, make_deps: DepsFactory) -> None:
    """Without synthesize, a healthy health endpoint is ok and only the health phase is timed."""
    result = await run_probe(make_check(), make_deps(base_url))
    assert Outcome.OK == result.outcome
    assert ["health"] == list(result.phases)


@pytest.mark.parametrize(("kind", "ctype"), [("mp3", "audio/mpeg"), ("ogg", "audio/ogg")])
async def test_mp3_and_ogg_are_accepted(base_url: str, make_deps: DepsFactory, kind: str, ctype: str) -> None:
    """Hand-built MP3 (ID3 + MPEG frames) and OGG pages served as audio are ok and named by format."""
    result = await run_probe(make_check(audio={"kind": kind, "ctype": ctype}), make_deps(base_url))
    assert (Outcome.OK, kind) == (result.outcome, result.details["synthesis"]["format"])


async def test_limited_health_is_invalid_response(base_url: str, make_deps: DepsFactory) -> None:
    """A 200 health whose JSON says "limited" fails expect json status healthy; synthesis is tried all the same
    and its success reported beside the failure."""
    check = make_check(health={"status": "limited"}, audio={"kind": "wav"}, expect={"json": {"status": "healthy"}})
    result = await run_probe(check, make_deps(base_url))
    assert (Outcome.INVALID_RESPONSE, 200) == (result.outcome, result.status_code)
    assert result.message.startswith("voice health: GET /voice/health: json field status: expected "
                                     "'healthy', got 'limited'; "
                                     "synthesis: POST /audio: synthesized 1644 bytes of wav"), result.message
    assert ["health", "synthesis"] == list(result.phases)


async def test_voice_down_is_server_error(base_url: str, make_deps: DepsFactory) -> None:
    """A 503 from voice health is server_error."""
    result = await run_probe(make_check(health={"code": "503", "status": "unavailable"}), make_deps(base_url))
    assert (Outcome.SERVER_ERROR, 503) == (result.outcome, result.status_code)
    assert result.message.startswith("voice health: GET /voice/health: expected 200, got 503 after ")


async def test_synthesis_5xx_is_server_error(base_url: str, make_deps: DepsFactory) -> None:
    """Healthy voice but a 503 from synthesis is server_error saying it was the synthesis."""
    result = await run_probe(make_check(audio={"status": "503"}), make_deps(base_url))
    assert (Outcome.SERVER_ERROR, 503) == (result.outcome, result.status_code)
    assert re.fullmatch(r"voice health: GET /voice/health: 200 after \d\.\d\d s; synthesis: POST \S+: "
                        r"expected 2xx, got 503 after \d\.\d\d s",
                        result.message), result.message


async def test_short_audio(base_url: str, make_deps: DepsFactory) -> None:
    """200 bytes of zeros as audio/wav is invalid_response stating the byte count and the missing format."""
    result = await run_probe(make_check(audio={"kind": "zeros", "size": "200"}), make_deps(base_url))
    assert Outcome.INVALID_RESPONSE == result.outcome
    assert ("; synthesis: POST /audio: expected at least 1000 bytes; got audio/wav, 200 bytes, format "
            "unknown") in result.message


async def test_wrong_content_type(base_url: str, make_deps: DepsFactory) -> None:
    """Real WAV bytes labelled text/html fail the content-type assertion."""
    result = await run_probe(make_check(audio={"kind": "wav", "ctype": "text/html"}), make_deps(base_url))
    assert Outcome.INVALID_RESPONSE == result.outcome
    assert ("; synthesis: POST /audio: expected content-type audio/; got text/html, 1644 bytes, format "
            "wav") in result.message


async def test_bytes_that_are_not_audio(base_url: str, make_deps: DepsFactory) -> None:
    """5000 bytes of text labelled audio/mpeg are invalid_response: no audio header."""
    check = make_check(audio={"kind": "text", "ctype": "audio/mpeg", "size": "5000"})
    result = await run_probe(check, make_deps(base_url))
    assert (Outcome.INVALID_RESPONSE, None) == (result.outcome, result.details["synthesis"]["format"])
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
    assert "; synthesis: POST /hang: timed out after" in result.message


# ---------------------------------------------------------------------------------------------- both parts


@pytest.fixture(scope="module")
def voice_system() -> Iterator[tuple[VoiceSystem, str]]:
    system = VoiceSystem()
    with serve_asgi(system.app()) as url:
        yield system, url


def system_check() -> VoiceCheck:
    """A voice check as examples/pam-monitor.yaml writes it: health must say healthy, synthesis must give audio."""
    return VoiceCheck.model_validate({
        "name": "voice_health", "kind": "voice", "target": "t", "path": "/voice/health", **TIMING,
        "expect": {"json": {"status": "healthy"}},
        "synthesize": {"method": "POST", "path": "/voice/tts", "json": {"text": "health check"}, "min_bytes": 1000},
    })


# (health, synthesis, outcome, status_code, health part, synthesis part, sentence pattern)
PARTS = [
    ("healthy", "works", Outcome.OK, 200, "ok", "ok",
     r"voice health: GET /voice/health: 200 after \S+ s; synthesis: POST \S+: synthesized 1644 bytes of wav "
     r"\(audio/wav\) in \S+ s"),
    ("degraded", "works", Outcome.INVALID_RESPONSE, 200, "invalid_response", "ok",
     r"voice health: GET /voice/health: json field status: expected 'healthy', got 'degraded'; synthesis: "
     r"POST \S+: synthesized 1644 bytes .*"),
    ("healthy", "broken", Outcome.SERVER_ERROR, 500, "ok", "server_error",
     r"voice health: GET /voice/health: 200 after \S+ s; synthesis: POST \S+: expected 2xx, got 500 after \S+ s"),
    ("degraded", "broken", Outcome.SERVER_ERROR, 500, "invalid_response", "server_error",
     r"voice health: GET /voice/health: json field status: expected 'healthy', got 'degraded'; synthesis: "
     r"POST \S+: expected 2xx, got 500 .*"),
    ("down", "silent", Outcome.SERVER_ERROR, 503, "server_error", "invalid_response",
     r"voice health: GET /voice/health: expected 200, got 503 after \S+ s; synthesis: POST \S+: expected "
     r"content-type audio/; got "
     r"application/json, \d+ bytes, format unknown .*"),
]


@pytest.mark.parametrize(("health", "synthesis", "outcome", "status", "health_part", "synthesis_part", "says"),
                         PARTS, ids=[f"{case[0]}-{case[1]}" for case in PARTS])
async def test_both_parts_are_tried_and_reported(
    voice_system: tuple[VoiceSystem, str], make_deps: DepsFactory, health: Any, synthesis: Any, outcome: Outcome,
    status: int, health_part: str, synthesis_part: str, says: str,
) -> None:
    """Whatever the health endpoint says, synthesis is tried; the outcome is the worse part's by the fixed order
    (a server error outranks a body that does not match), its status code the deciding part's, and the sentence,
    details and phases report both parts."""
    system, url = voice_system
    system.health, system.synthesis = health, synthesis
    system.calls.clear()
    result = await run_probe(system_check(), make_deps(url))
    assert (outcome, status) == (result.outcome, result.status_code), result.message
    assert ["health", "tts"] == sorted(system.calls)
    assert (health_part, synthesis_part) == (result.details["health"]["outcome"],
                                             result.details["synthesis"]["outcome"])
    assert {"health", "synthesis"} == set(result.phases)
    assert re.fullmatch(says, result.message), result.message
