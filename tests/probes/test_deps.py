"""Tests for probes.deps: the shared transports."""

from __future__ import annotations

from monitor.core.config import Config
from probes.deps import build_deps


def _config(max_in_flight: int) -> Config:
    return Config.model_validate({
        "http": {"max_in_flight": max_in_flight},
        "targets": {"api": {"base_url": "http://127.0.0.1:9"}, "voice": {"base_url": "http://127.0.0.1:10"}},
    })


async def test_keep_alive_is_off_unless_configured() -> None:
    """http.keep_alive defaults to false (a fresh connection per probe) and reaches the transports when set;
    plain-HTTP targets share one transport, which has no TLS context to build."""
    default = build_deps(_config(3))
    kept = build_deps(Config.model_validate({
        "http": {"keep_alive": True}, "targets": {"api": {"base_url": "http://127.0.0.1:9"}},
    }))
    api, voice = default.targets["api"], default.targets["voice"]
    assert (False, True) == (default.transport_for(api).keep_alive, kept.transport_for(kept.targets["api"]).keep_alive)
    assert default.transport_for(api) is default.transport_for(voice)
    assert None is default.transport_for(api).ssl_context
    await default.aclose()
    await kept.aclose()
