"""`voice.synthesize.identity`: the synthesis request carries the identity's token (synthesis is for signed-in
users), and a failed sign-in is reported as the synthesis part's failure at step sign_in."""

from __future__ import annotations

from typing import Any

from monitor.core.config import VoiceCheck
from monitor.core.results import Outcome
from tests.probes.signed_in import Made, minted, signed_in
from tests.support.servers import free_port
from tests.support.signed_in import MONITOR_SUB, Backend
from tests.support.targets import TIMING, run_probe

Server = tuple[Backend, str]


def voice(**synthesize: Any) -> VoiceCheck:
    """A voice check on target `backend` whose synthesis request takes `synthesize` fields."""
    return VoiceCheck.model_validate({
        "name": "voice_health", "kind": "voice", "target": "backend", **TIMING, "path": "/api/v1/pam/voice/health",
        "synthesize": {"path": "/api/v1/pam/voice/tts", "json": {"text": "health check"}, **synthesize}})


async def test_synthesis_is_sent_signed_in(backend: Server, made: Made) -> None:
    """With synthesize.identity the TTS endpoint gets the identity's token and returns audio: ok. Without it
    the same endpoint refuses (401), which is what an anonymous synthesis check would see."""
    state, url = backend
    deps = made(url, {"monitor_user": minted(MONITOR_SUB)})
    signed = await run_probe(voice(identity="monitor_user"), deps)
    assert Outcome.OK == signed.outcome, signed.message
    assert 1 == len(state.tokens)
    anonymous = await run_probe(voice(), deps)
    assert (Outcome.UNEXPECTED_STATUS, 401) == (anonymous.outcome, anonymous.status_code), anonymous.message


async def test_failed_sign_in_fails_the_synthesis_part(backend: Server, made: Made) -> None:
    """The identity's Auth server is down: the synthesis part fails at step sign_in; health was still probed."""
    _, url = backend
    deps = made(url, {"monitor_user": signed_in(f"http://127.0.0.1:{free_port()}")})
    result = await run_probe(voice(identity="monitor_user"), deps)
    assert (Outcome.CONNECTION_ERROR, "sign_in") == (result.outcome, result.details["step"])
    assert result.message.startswith("voice health: GET /api/v1/pam/voice/health: 200 after "), result.message
    assert ("; synthesis: POST /api/v1/pam/voice/tts: step sign_in: sign-in as monitor@example.com "
            "failed: ") in result.message
    assert "health" in result.phases
