"""Hostile config files: a billion laughs, an alias loop, deep nesting and duplicate keys are each one line, fast and
in bounded memory; secret files and environment values are never quoted in a problem; size limits on files."""

from __future__ import annotations

import os
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from monitor.core.config import load_config
from monitor.core.config.yamlfile import MAX_ALIAS_NODES, MAX_DEPTH, MAX_FILE_BYTES, MAX_SECRET_FILE_BYTES

Problems = Callable[..., list[str]]
Write = Callable[[str], Path]
CHECKS = """\
targets:
  backend: {base_url: "http://127.0.0.1:8000"}
checks:
  - {name: a, kind: http, target: backend, path: /health}
"""
SHADOW = ("root:$6$Zq3xSALTsalt$9fHashyHashHashValueXYZ0123456789abcdefABCDEF:19000:0:99999:7:::\n"
          "daemon:*:19000:0:99999:7:::\n")


def laughs(levels: int = 9) -> str:
    """The "billion laughs" document: each level an anchored list of ten aliases of the level below."""
    lines = ['lol0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"lol{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + f"\nservice: *a{levels}\n"


def test_billion_laughs_fails_fast_with_one_line_in_bounded_memory(write_config: Write,
                                                                   config_problems: Problems) -> None:
    """10^9 values by aliases: one problem line naming the alias limit and the line, in well under a second and a
    few MB (it used to take 3 GB and die of MemoryError)."""
    path = write_config(laughs())
    tracemalloc.start()
    started = time.perf_counter()
    try:
        problems = config_problems(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - started
    assert [f'{path}:4: aliases repeat more than {MAX_ALIAS_NODES:,} values in all (a "billion laughs" file?); '
            "write the values out or use fewer aliases"] == problems
    # Expanded, the aliases would take minutes and gigabytes: a generous bound (a busy machine) still tells them apart.
    assert elapsed < 10.0, f"{elapsed:.2f} s"
    assert peak < 20 * 1024 * 1024, f"{peak} bytes"


def test_ordinary_anchors_and_merge_keys_still_work(write_config: Write) -> None:
    """Anchors shared by a few checks, merge keys included, load as before: aliases are limited, not banned."""
    path = write_config("""\
targets:
  backend: {base_url: "http://127.0.0.1:8000"}
checks:
  - &first {name: a, kind: http, target: backend, path: /a, interval: 10s}
  - {<<: *first, name: b, path: /b, interval: 20s, expect: {json: &j {status: ok}}}
  - {<<: *first, name: c, path: /c, expect: {json: *j}}
""")
    config = load_config(path, environ={})
    got = [(c.name, c.interval, c.expect.json_fields) for c in config.checks]  # type: ignore[union-attr]
    assert [("a", 10.0, {}), ("b", 20.0, {"status": "ok"}), ("c", 10.0, {"status": "ok"})] == got


def test_an_alias_loop_is_one_line(write_config: Write, config_problems: Problems) -> None:
    """An anchor whose value contains its own alias is refused with the line, never a RecursionError."""
    path = write_config(CHECKS + "service: &s [*s]\n")
    assert [f"{path}:5: an alias refers to a value that contains it (a loop); write the value out"] == \
        config_problems(path)


@pytest.mark.parametrize("body", ["service: " + "[" * 100_000 + "]" * 100_000 + "\n",
                                  "service: " + "{a: " * 2_000 + "1" + "}" * 2_000 + "\n",
                                  "".join(f"{'  ' * i}k{i}:\n" for i in range(MAX_DEPTH + 5)) + f"{'  ' * 70}v\n"])
def test_deep_nesting_is_one_line(write_config: Write, config_problems: Problems, body: str) -> None:
    """Lists, flow mappings or block mappings nested past the limit: one line, never a RecursionError."""
    problems = config_problems(write_config(body))
    assert 1 == len(problems), problems
    assert f"nested more than {MAX_DEPTH} levels deep" in problems[0]


@pytest.mark.parametrize(("body", "line", "key"), [
    (CHECKS + "service: a\nservice: b\n", 6, "service"),
    (CHECKS.replace("path: /health}", "path: /health, path: /other}"), 4, "path"),
    (CHECKS + "defaults:\n  interval: 10s\n  timeout: 1s\n  interval: 20s\n", 8, "interval"),
])
def test_duplicate_keys_are_an_error_naming_key_and_line(write_config: Write, config_problems: Problems,
                                                         body: str, line: int, key: str) -> None:
    """A key written twice in one mapping (block or flow) is refused with the key and both lines; YAML alone
    would keep the last one silently."""
    path = write_config(body)
    problems = config_problems(path)
    assert 1 == len(problems), problems
    assert problems[0].startswith(f"{path}:{line}: duplicate key {key!r} (first at line ")


def test_an_oversized_config_file_is_refused(tmp_path: Path, config_problems: Problems) -> None:
    """A config file over the size limit is refused before parsing, saying so."""
    path = tmp_path / "huge.yaml"
    path.write_text("# padding\n" * (MAX_FILE_BYTES // 10 + 1))
    assert [f"{path}: the config file is larger than 16 MiB; pass the YAML config file with --config"] == \
        config_problems(path)


@pytest.mark.parametrize("kind", ["big", "device", "fifo"])
def test_a_secret_file_that_is_not_a_small_regular_file_is_refused(tmp_path: Path, write_config: Write,
                                                                   config_problems: Problems, kind: str) -> None:
    """${file:} refuses a file over 64 KiB, /dev/zero (never ends) and a FIFO (would block the load forever)."""
    target = {"big": tmp_path / "big", "device": Path("/dev/zero"), "fifo": tmp_path / "fifo"}[kind]
    if kind == "big":
        target.write_text("x" * (MAX_SECRET_FILE_BYTES + 1))
    elif kind == "fifo":
        os.mkfifo(target)
    path = write_config(CHECKS.replace('{base_url: "http://127.0.0.1:8000"}',
                                       f'{{base_url: "http://127.0.0.1:8000", bearer_token: "${{file:{target}}}"}}'))
    problems = config_problems(path)
    assert 1 == len(problems), problems
    reason = "is larger than 64 KiB" if kind == "big" else "is not a regular file"
    assert f"the secret file {reason}; point it at a file holding only the secret" in problems[0]


LEAKY = """\
service: "{ref}"
listen: "{ref}"
defaults: {{interval: "{ref}", timeout: 1s}}
targets:
  t: {{base_url: "{ref}"}}
  u: {{base_url: "http://127.0.0.1:1", max_rate: "{ref}"}}
checks:
  - {{name: "{ref}", kind: http, target: t, path: /}}
  - {{name: c2, kind: http, target: "{ref}", path: "{ref}", method: "{ref}", expect: {{status: ["{ref}"]}}}}
  - {{name: c3, kind: "{ref}", target: t}}
  - {{name: c4, kind: http, target: u, path: /, depends_on: ["{ref}"], timeout: "{ref}"}}
alerts:
  sinks:
    - {{kind: alertmanager, url: "{ref}"}}
    - {{kind: webhook, url: "{ref}", headers: "{ref}"}}
    - {{kind: pagerduty, routing_key: "{ref}", url: "{ref}"}}
"""


def _fragments(secret: str) -> list[str]:
    """Every piece of `secret` that must not appear: each line and each ':' field of 6 characters or more, in
    any case, raw or escaped."""
    pieces = set(secret.splitlines()) | set(secret.replace("\n", ":").split(":"))
    return sorted(p.lower() for p in pieces if len(p) >= 6)


@pytest.mark.parametrize("source", ["file", "env"])
def test_values_from_secret_files_and_the_environment_are_never_quoted(
    tmp_path: Path, write_config: Write, config_problems: Problems, source: str
) -> None:
    """A fake /etc/shadow read through ${file:} (or the same text in an environment variable) used in every
    kind of field: a dozen problems, and not one of them quotes any piece of it."""
    shadow = tmp_path / "shadow"
    shadow.write_text(SHADOW)
    ref = f"${{file:{shadow}}}" if source == "file" else "${LEAKED}"
    path = write_config(LEAKY.format(ref=ref))
    problems = config_problems(path, environ={"LEAKED": SHADOW})
    assert len(problems) >= 10, problems
    text = "\n".join(problems).lower().replace("\\n", "\n")
    leaked = [piece for piece in _fragments(SHADOW) if piece in text]
    assert [] == leaked, problems


def test_pam_monitor_override_values_are_never_quoted(write_config: Write, config_problems: Problems,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad PAM_MONITOR_* value is named by its variable, never quoted."""
    monkeypatch.setenv("PAM_MONITOR_LISTEN", SHADOW)
    problems = config_problems(write_config(CHECKS))
    assert 1 == len(problems), problems
    assert "PAM_MONITOR_LISTEN" in problems[0]
    assert [] == [piece for piece in _fragments(SHADOW) if piece in problems[0].lower()]


def test_url_credentials_are_hidden_in_errors(write_config: Write, config_problems: Problems) -> None:
    """An Alertmanager URL with a password, refused for its scheme: the problem names the URL's place, not its
    password."""
    path = write_config(CHECKS + 'alerts:\n  sinks:\n    - {kind: alertmanager, urls: ["ftp://am:Sup3rSecretPw@host"]}\n')
    problems = config_problems(path)
    assert 1 == len(problems), problems
    assert "is not an http(s) URL" in problems[0]
    assert "Sup3rSecretPw" not in problems[0]
