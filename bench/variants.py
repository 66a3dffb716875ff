"""In-process experiments: run `pam-monitor` with one change monkeypatched in, to measure it before editing core.

    python -m bench.variants NAME[+NAME...] run --config FILE --listen HOST:PORT   (bench.run --variant NAME does it)

Nothing here is used by the daemon itself; each variant is a measured proposal for a core change.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

import httpx


def _uvloop() -> None:
    """Run the daemon on uvloop instead of the default selector loop."""
    import uvloop

    def run_on_uvloop(main: Any, *, debug: bool | None = None) -> Any:
        with asyncio.Runner(debug=debug, loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main)

    asyncio.run = run_on_uvloop


def _client_patch(make_transport: Callable[[], httpx.AsyncBaseTransport] | None, limits: httpx.Limits | None) -> None:
    """Replace Deps.client_for's AsyncClient construction with one using `make_transport` / `limits`."""
    from probes import deps as deps_module

    original = deps_module.Deps.client_for

    def client_for(self: Any, target: Any) -> httpx.AsyncClient:
        key = (target.verify_tls, str(target.ca_file) if target.ca_file else None)
        if key not in self._clients:
            kwargs: dict[str, Any] = {
                "verify": target.verify_tls, "follow_redirects": False, "trust_env": False,
                "headers": {"User-Agent": self.user_agent},
                "limits": limits or httpx.Limits(max_connections=None, max_keepalive_connections=64),
            }
            if make_transport is not None:
                kwargs["transport"] = make_transport()
            self._clients[key] = httpx.AsyncClient(**kwargs)
        return original(self, target)

    deps_module.Deps.client_for = client_for  # type: ignore[method-assign]


def _aiohttp() -> None:
    """httpx with the aiohttp transport (httpx-aiohttp)."""
    from httpx_aiohttp import AiohttpTransport

    _client_patch(lambda: AiohttpTransport(trust_env=False,
                                           limits=httpx.Limits(max_connections=64, max_keepalive_connections=64)),
                  None)


def _pool4() -> None:
    """At most 4 pooled keep-alive connections (combine with --max-in-flight 4)."""
    _client_patch(None, httpx.Limits(max_connections=4, max_keepalive_connections=4))


def _nolog() -> None:
    """Drop the per-run log call and its dict of fields (to price logging on the hot path)."""
    from monitor import runner

    class Quiet:
        def __getattr__(self, name: str) -> Callable[..., None]:
            return lambda *a, **k: None

    runner.log = Quiet()


def _noalerts() -> None:
    """No alert engine (to price AlertEngine.observe on the hot path)."""
    from monitor import cli

    cli._engine_factory = lambda: None


VARIANTS: dict[str, Callable[[], None]] = {
    "noalerts": _noalerts,
    "uvloop": _uvloop,
    "aiohttp": _aiohttp,
    "pool4": _pool4,
    "nolog": _nolog,
}


def main() -> int:
    """Apply the named variants, then hand the remaining arguments to monitor.cli.main."""
    if len(sys.argv) < 2:
        print(f"usage: python -m bench.variants {'|'.join(VARIANTS)}[+...] <pam-monitor args>", file=sys.stderr)
        return 2
    for name in sys.argv[1].split("+"):
        if name not in VARIANTS:
            print(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}", file=sys.stderr)
            return 2
        VARIANTS[name]()
    from monitor.cli import main as cli_main

    return cli_main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
