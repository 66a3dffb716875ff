"""Tests for probes.deps: per-target request slots and the shared clients' lifecycle."""

from __future__ import annotations

from monitor.core.config import Config
from probes.deps import Deps, build_deps


def _config(max_in_flight: int) -> Config:
    return Config.model_validate({
        "http": {"max_in_flight": max_in_flight},
        "targets": {"api": {"base_url": "http://127.0.0.1:9"}, "voice": {"base_url": "http://127.0.0.1:10"}},
    })


async def test_limiter_for_has_max_in_flight_slots_per_target() -> None:
    """build_deps gives each target its own semaphore of http.max_in_flight slots: filling one target's slots
    leaves another's free."""
    deps = build_deps(_config(3))
    api = deps.limiter_for("api")
    locked_after = []
    for _ in range(3):
        await api.acquire()
        locked_after.append(api.locked())
    assert [False, False, True] == locked_after
    assert False is deps.limiter_for("voice").locked()
    await deps.aclose()


async def test_limiter_for_is_made_once_per_name() -> None:
    """The same name always gets the same semaphore (slots are shared by all checks of a target); names differ."""
    deps = Deps(targets={}, body_limit=1024, user_agent="t", max_in_flight=2)
    assert deps.limiter_for("a") is deps.limiter_for("a")
    assert deps.limiter_for("a") is not deps.limiter_for("b")
    await deps.aclose()


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
