"""Time to page: fault injected -> alert visible in a real Alertmanager, through `pam-monitor run`.

One command: `.venv/bin/python bench/time_to_page.py [--interval 5] [--runs 3]`. Starts a real Alertmanager,
a stand-in backend (settings route 403, or 500 when broken) and the daemon, then per run: break the backend,
time until ContractRegression shows in GET /api/v2/alerts, heal, time until it is gone. Prints a table of
medians. Expected: about one interval (the next scheduled run) plus confirm_delay plus delivery.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.alerts.test_daemon_e2e import Backend, last_outcome, start_daemon, write_config
from tests.support.alertmanager import Alertmanager
from tests.support.poll import until
from tests.support.servers import serve_asgi


def main() -> int:
    """Run the measurement and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=5.0, help="check interval in seconds (default 5)")
    parser.add_argument("--runs", type=int, default=3, help="fault/heal cycles (default 3)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pam-ttp-"))
    am = Alertmanager(work / "am")
    am.start()
    backend = Backend()
    fire: list[float] = []
    resolve: list[float] = []
    try:
        with serve_asgi(backend.app()) as url:
            config = work / "pam-monitor.yaml"
            base = write_config(config, url, am, work / "state")
            text = config.read_text().replace("interval: 1s, timeout: 500ms",
                                              f"interval: {args.interval}s, timeout: {min(2.0, args.interval / 2)}s")
            config.write_text(text)
            daemon = start_daemon(config, work / "daemon.log")
            try:
                limit = 3 * args.interval + 30
                until(lambda: last_outcome(base) == "ok", timeout=limit)
                for _ in range(max(1, min(args.runs, 20))):
                    backend.broken = True
                    t0 = time.monotonic()
                    until(lambda: am.alerts_named("ContractRegression"), timeout=limit, interval=0.02)
                    fire.append(time.monotonic() - t0)
                    backend.broken = False
                    t0 = time.monotonic()
                    until(lambda: not am.alerts_named("ContractRegression"), timeout=limit, interval=0.02)
                    resolve.append(time.monotonic() - t0)
            finally:
                daemon.terminate()
                try:
                    daemon.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    daemon.kill()
    except (AssertionError, httpx.HTTPError) as exc:
        print(f"measurement failed: {exc}; logs in {work}", file=sys.stderr)
        return 1
    finally:
        am.stop()
    print(f"pam-monitor run, interval {args.interval:g} s, confirm_delay 0.2 s, failure/success threshold 2, "
          f"{len(fire)} runs, real Alertmanager 0.25 on 127.0.0.1")
    print(f"{'what':<38}{'median s':>10}{'min s':>9}{'max s':>9}")
    for label, values in (("fault -> alert visible in Alertmanager", fire),
                          ("heal -> alert gone from Alertmanager", resolve)):
        print(f"{label:<38}{statistics.median(values):>10.2f}{min(values):>9.2f}{max(values):>9.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
