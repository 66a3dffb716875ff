"""In-process experiments: run `pam-monitor` with one change monkeypatched in, to measure it before editing core.

    python -m bench.variants NAME[+NAME...] run --config FILE --listen HOST:PORT   (bench.run --variant NAME does it)

Nothing here is used by the daemon itself; each variant is a measured proposal for a core change.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any


def _uvloop() -> None:
    """Run the daemon on uvloop instead of the default selector loop."""
    import uvloop

    def run_on_uvloop(main: Any, *, debug: bool | None = None) -> Any:
        with asyncio.Runner(debug=debug, loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main)

    asyncio.run = run_on_uvloop


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


def _nullprobe() -> None:
    """The http probe answers ok at once without touching the network: what a run costs besides its request."""
    import dataclasses

    import probes
    from monitor.core.results import Outcome, ProbeResult

    async def null(check: Any, deps: Any, deadline: float) -> ProbeResult:
        return ProbeResult(Outcome.OK, "200 after 0.00 s", status_code=200, details={"bytes": 20})

    kinds = dict(probes.REGISTRY)
    kinds["http"] = dataclasses.replace(kinds["http"], probe=null)
    probes.REGISTRY = kinds  # type: ignore[misc]


def _gcfreeze() -> None:
    """gc.freeze() once the runner's jobs are added: start-up objects leave the collector's generations."""
    import gc

    from monitor.runner import Runner

    original = Runner.start

    def start(self: Any, scheduler: Any) -> None:
        original(self, scheduler)
        gc.collect()
        gc.freeze()

    Runner.start = start  # type: ignore[method-assign]


VARIANTS: dict[str, Callable[[], None]] = {
    "gcfreeze": _gcfreeze,
    "nullprobe": _nullprobe,
    "noalerts": _noalerts,
    "uvloop": _uvloop,
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
