"""Summarise a py-spy `--format raw` profile (collapsed stacks): top functions, self and inclusive, and by package.

    python -m bench.profile_summary PROFILE.txt [--top 25]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^:()]*)(?::\d+)?\)$")


def _package(file: str) -> str:
    """The library or our package a source file belongs to."""
    parts = file.split("/")
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1]
    if parts[0] in ("monitor", "probes", "alerts", "bench"):
        return parts[0] + "/" + parts[-1] if len(parts) > 1 else parts[0]
    return parts[0] if len(parts) > 1 else "stdlib:" + parts[0]


def summarise(path: Path, top: int) -> str:
    """A plain-text report of where the samples went."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    own_pkg: Counter[str] = Counter()
    incl_pkg: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        samples += count
        frames = []
        for raw in stack.split(";"):
            m = _FRAME.match(raw.strip())
            frames.append((m.group("func"), m.group("file")) if m else (raw.strip(), "?"))
        names = {f"{func} ({file})" for func, file in frames}
        for name in names:
            inclusive[name] += count
        for pkg in {_package(file) for _, file in frames}:
            incl_pkg[pkg] += count
        leaf_func, leaf_file = frames[-1]
        own[f"{leaf_func} ({leaf_file})"] += count
        own_pkg[_package(leaf_file)] += count
    out = [f"{samples} samples (py-spy, active threads only)", "", "self time by package:"]
    out += [f"  {100 * n / samples:5.1f}%  {name}" for name, n in own_pkg.most_common(top)]
    out += ["", "inclusive time by package (a sample counts once per package on its stack):"]
    out += [f"  {100 * n / samples:5.1f}%  {name}" for name, n in incl_pkg.most_common(top)]
    out += ["", "self time by function:"]
    out += [f"  {100 * n / samples:5.1f}%  {name}" for name, n in own.most_common(top)]
    out += ["", "inclusive time by function:"]
    out += [f"  {100 * n / samples:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(out)


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(summarise(args.profile, args.top))


if __name__ == "__main__":
    main()
