"""Hostile input, measured: a gzip bomb per HTTP kind (peak RSS growth), JSON nested 100,000 levels, a "billion
laughs" config, and the load time of ordinary config files. Prints one table.

    .venv/bin/python -m bench.hostile                    # this tree
    .venv/bin/python bench/hostile.py --tree /work/main  # another checkout (its code, this script), for before/after

Each bomb case runs in a fresh process, so its peak RSS (VmHWM) is its own: the figure is the peak during three runs
of one check minus the peak before them, with body_limit at its default 1 MiB. The bomb is 1 GiB of zeros gzip'd
to about 1 MB, streamed by a server in the same process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
KINDS = ("http", "auth_contract", "voice", "postgrest")

_CHILD = r'''
import asyncio, json, struct, sys, time, zlib
from starlette.applications import Starlette
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from monitor.core.config import AuthContractCheck, HttpCheck, PostgrestCheck, VoiceCheck
from tests.support.servers import serve_asgi
from tests.support.targets import DepsFactory, run_probe

kind = sys.argv[1]
z = b"\0" * (1 << 20)
c = zlib.compressobj(9, zlib.DEFLATED, 31)
first = c.compress(z) + c.flush(zlib.Z_FULL_FLUSH)
block = c.compress(z) + c.flush(zlib.Z_FULL_FLUSH)
tail = zlib.compressobj(9, zlib.DEFLATED, -15).flush() + struct.pack("<II", 0, 0)

async def bomb(request):
    async def chunks():
        yield first
        for _ in range(16):
            yield block * 64
        yield tail
    status = 500 if "rest" in request.url.path else int(request.query_params.get("status", "200"))
    return StreamingResponse(chunks(), status_code=status, media_type="application/json",
                             headers={"Content-Encoding": "gzip"})

async def deep(request):
    return Response("[" * 100_000 + "]" * 100_000, media_type="application/json")

def hwm():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024

timing = {"interval": 10.0, "timeout": 5.0, "failure_threshold": 2, "success_threshold": 2}
app = Starlette(routes=[Route("/bomb", bomb), Route("/rest/v1/{t}", bomb), Route("/deep", deep)])

async def main():
    with serve_asgi(app) as url:
        factory = DepsFactory()
        deps = factory(url, target={"api_key": "anon-key-0123456789"})
        if kind == "deep":
            check = HttpCheck.model_validate({"name": "c", "kind": "http", "target": "t", "path": "/deep",
                                              "expect": {"json": {"a": 1}}, **timing})
        else:
            check = {
                "http": lambda: HttpCheck.model_validate({"name": "c", "kind": "http", "target": "t", "path": "/bomb",
                                                          "expect": {"json": {"a": 1}}, **timing}),
                "auth_contract": lambda: AuthContractCheck.model_validate(
                    {"name": "a", "kind": "auth_contract", "target": "t", "path": "/bomb?status=401",
                     "expect": {"json": {"detail": {"exists": True}}}, **timing}),
                "voice": lambda: VoiceCheck.model_validate({"name": "v", "kind": "voice", "target": "t",
                                                            "path": "/bomb", "expect": {"json": {"a": 1}}, **timing}),
                "postgrest": lambda: PostgrestCheck.model_validate({"name": "p", "kind": "postgrest", "target": "t",
                                                                    "required_tables": ["t1"], **timing}),
            }[kind]()
        await run_probe(HttpCheck.model_validate({"name": "w", "kind": "http", "target": "t", "path": "/deep",
                                                  **timing}), deps)  # warm up imports and buffers
        before = hwm()
        started = time.perf_counter()
        outcomes = []
        for _ in range(3):
            try:
                result = await run_probe(check, deps)
                outcomes.append(result.outcome.value)
            except Exception as exc:
                outcomes.append(type(exc).__name__)
        took = (time.perf_counter() - started) / 3
        print(json.dumps({"growth_mb": hwm() - before, "outcome": outcomes[-1], "run_s": took}))
        await factory.aclose()

asyncio.run(main())
'''


def _bomb_case(tree: Path, kind: str) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, "-c", _CHILD, kind], capture_output=True, text=True, timeout=300,
                          env=env, cwd=tree, check=False)
    if done.returncode != 0:
        return {"growth_mb": float("nan"), "outcome": "crashed: " + done.stderr.strip().splitlines()[-1][:60],
                "run_s": float("nan")}
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _laughs() -> str:
    lines = ['lol0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"lol{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    return "\n".join(lines) + "\nservice: *a9\n"


def _validate(tree: Path, path: Path, timeout: float = 60) -> tuple[float, str, float]:
    """(seconds, first output line, peak RSS MB) of `pam-monitor validate` on `path`, under ulimit -v 4 GB."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    code = ("import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30)); "
            "sys.argv = ['pam-monitor', 'validate', '--config', sys.argv[1]]; runpy.run_module('monitor.cli', "
            "run_name='__main__')")
    started = time.perf_counter()
    try:
        done = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-c", code, str(path)],
                              capture_output=True, text=True, timeout=timeout, env=env, cwd=tree, check=False)
    except subprocess.TimeoutExpired:
        return timeout, f"(no answer in {timeout:g} s)", float("nan")
    took = time.perf_counter() - started
    lines = [x for x in (done.stdout + done.stderr).splitlines() if x.strip()]
    peak = float(lines[-1]) / 1024 if lines and lines[-1].strip().isdigit() else float("nan")
    first = next((x for x in lines if not x.strip().isdigit()), "")
    return took, first.replace(str(path), "<file>")[:90], peak


def _load_times(tree: Path, directory: Path) -> list[tuple[str, float]]:
    big = directory / "checks-1000.yaml"
    rows = ["targets:", "  backend: {base_url: 'http://127.0.0.1:8000'}", "checks:"]
    rows += [f"  - {{name: c{i}, kind: http, target: backend, path: /health/{i}, expect: {{status: [200]}}}}"
             for i in range(1000)]
    big.write_text("\n".join(rows) + "\n")
    code = """
import statistics, sys, time
from monitor.core.config import load_config
env = {"DATABASE_URL": "postgresql://u:p@127.0.0.1/db", "PAGERDUTY_ROUTING_KEY": "k" * 32,
       "SUPABASE_JWT_SECRET": "s" * 32}
for path in sys.argv[1:]:
    times = []
    for _ in range(9):
        t = time.perf_counter(); load_config(path, environ=env); times.append(time.perf_counter() - t)
    print(path.rsplit('/', 1)[1], statistics.median(times))
"""
    paths = [str(tree / "examples" / "pam-monitor.yaml"), str(tree / "examples" / "journeys.yaml"), str(big)]
    done = subprocess.run([sys.executable, "-c", code, *paths], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(tree)}, cwd=tree, check=True)
    return [(line.split()[0], float(line.split()[1])) for line in done.stdout.splitlines()]


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=HERE, help="the checkout whose code is measured")
    args = parser.parse_args()
    tree = args.tree.resolve()
    print(f"tree {tree}, load average {os.getloadavg()[0]:.2f}")
    print(f"{'case':44s} {'outcome':34s} {'RSS growth':>10s} {'time':>8s}")
    for kind in KINDS:
        row = _bomb_case(tree, kind)
        print(f"{'gzip bomb 1 MB -> 1 GiB, ' + kind:44s} {row['outcome']!s:34s} {row['growth_mb']:>7.1f} MB "
              f"{row['run_s']:>6.3f} s")
    row = _bomb_case(tree, "deep")
    print(f"{'JSON nested 100,000 levels, http':44s} {row['outcome']!s:34s} {row['growth_mb']:>7.1f} MB "
          f"{row['run_s']:>6.3f} s")
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        laughs = directory / "laughs.yaml"
        laughs.write_text(_laughs())
        took, said, peak = _validate(tree, laughs)
        print(f"{'validate billion laughs (10^9 values)':44s} {said[:34]:34s} {peak:>7.1f} MB {took:>6.2f} s")
        for name, seconds in _load_times(tree, directory):
            print(f"{'load_config ' + name + ' (median of 9)':44s} {'ok':34s} {'':>10s} {seconds * 1000:>5.1f} ms")


if __name__ == "__main__":
    main()
