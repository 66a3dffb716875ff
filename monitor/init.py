"""`pam-monitor init`: write a commented starter config file that validates as written.

The starter is the example the package ships (`monitor/examples/pam-monitor.yaml`, package data, so a pip install
has it too). Its secrets are `${VAR}` references, never values; init lists the variables to set. With `--openapi`
the example's targets and checks are replaced by what `pam-monitor discover` finds in the API's OpenAPI document
(an auth_contract check per secured operation), keeping the example's settings and alert sinks. An existing file
is never overwritten without `--force`.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from importlib import resources
from typing import TextIO

EXAMPLE = "pam-monitor.yaml"
"""The starter's name under monitor/examples/ (package data)."""
_TOP_KEY = re.compile(r"^([A-Za-z_][\w-]*):")
_REFERENCE = re.compile(r"\$\{(?P<name>[A-Za-z_]\w*)(?P<default>:-[^}]*)?\}")
_REPLACED_BY_DISCOVER = ("targets", "checks")


def example_text(name: str = EXAMPLE) -> str:
    """The text of one shipped example (monitor/examples/NAME)."""
    return resources.files("monitor").joinpath("examples", name).read_text(encoding="utf-8")


def variables(text: str) -> list[str]:
    """The environment variables a config text reads (`${NAME}`, not `${NAME:-default}`), in order of first use;
    comment lines are skipped."""
    names: list[str] = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        for match in _REFERENCE.finditer(line.split(" #", 1)[0]):
            if match["default"] is None and match["name"] not in names:
                names.append(match["name"])
    return names


def _blocks(text: str) -> tuple[str, dict[str, str]]:
    """The text before the first top-level key (the header comment), and each top-level key's block: the comment
    lines right above it, its line and everything under it up to the next block."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if _TOP_KEY.match(line)]
    begins = []
    for start in starts:
        while start > 0 and lines[start - 1].startswith("#"):
            start -= 1
        begins.append(start)
    ends = [*begins[1:], len(lines)]
    blocks = {}
    for start, begin, end in zip(starts, begins, ends, strict=True):
        key = _TOP_KEY.match(lines[start])
        assert key is not None
        blocks[key.group(1)] = "".join(lines[begin:end])
    return "".join(lines[: begins[0] if begins else len(lines)]), blocks


def with_discovered(starter: str, discovered: str, source: str) -> str:
    """The starter with its targets and checks replaced by discover's output (its own header comment kept)."""
    header, blocks = _blocks(starter)
    keep = {key: block for key, block in blocks.items() if key not in _REPLACED_BY_DISCOVER}
    before = "".join(block for key, block in keep.items() if key != "alerts")
    note = (f"# Targets and checks below come from the OpenAPI document at {source} (pam-monitor discover). The\n"
            "# database, voice and signed-in checks of the full example are not here: `pam-monitor init OTHER.yaml`\n"
            "# writes that example, to copy from.\n")
    return header + before + note + discovered.rstrip("\n") + "\n" + keep.get("alerts", "")


def run_init(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """CLI handler: write the starter (or the discovered config) to args.path; 0 written, 1 not written (the file
    exists without --force, or cannot be written), 2 the OpenAPI document cannot be used."""
    out, err = out or sys.stdout, err or sys.stderr
    path = args.path
    if path.exists() and not args.force:
        print(f"pam-monitor init: {path} exists; pass --force to overwrite it, or name another file", file=err)
        return 1
    text = example_text()
    if args.openapi is not None:
        from monitor.discover import DiscoverError, base_url_for, find_document, render

        try:
            doc, found_at = find_document(args.openapi)
        except DiscoverError as exc:
            print(f"pam-monitor init: {exc}", file=err)
            return 2
        except UnicodeDecodeError:
            print(f"pam-monitor init: {args.openapi}: not UTF-8 text; pass an OpenAPI document (JSON or YAML)",
                  file=err)
            return 2
        discovered, _ = render(doc, found_at, "backend", base_url_for(doc, found_at, args.openapi, None))
        text = with_discovered(text, discovered, found_at)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"pam-monitor init: cannot write {path}: {exc.strerror or exc}", file=err)
        return 1
    names = variables(text)
    print(f"wrote {path}", file=out)
    if names:
        print("it reads these environment variables (secrets stay out of the file); set them first:", file=out)
        for name in names:
            print(f"  {name}{'' if os.environ.get(name) else '   (unset now)'}", file=out)
    print(f"then: pam-monitor validate --config {path} && pam-monitor check --config {path}", file=out)
    return 0
