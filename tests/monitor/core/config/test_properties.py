"""Property tests of the config loader (hypothesis): any text, any YAML document and any mutation of the example
file gives a Config or a ConfigError whose problems are one line each, never another exception, and never a piece
of a value that came from a secret file or the environment."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.core.config import load_config
from monitor.core.errors import ConfigError

SECRET = "Sh4dow-Line:root:$6$PropSalt$HashyHashyHash0123:19000:0:99999"
ENV = {"PROP_SECRET": SECRET}
EXAMPLE = (Path(__file__).parents[4] / "examples" / "pam-monitor.yaml").read_text()
KEYS = ["service", "listen", "state_dir", "defaults", "targets", "checks", "alerts", "http", "identities",
        "interval", "timeout", "name", "kind", "target", "path", "expect", "status", "json", "base_url", "headers",
        "sinks", "url", "urls", "routing_key", "dsn", "steps", "method", "params", "depends_on", "max_rate"]
KINDS = ["http", "auth_contract", "voice", "db", "postgrest", "journey", "tenant_isolation", "alertmanager",
         "webhook", "slack", "pagerduty"]
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def place() -> Iterator[tuple[Path, str]]:
    """A config path to write each example to, and a ${file:} reference to a secret file beside it."""
    with tempfile.TemporaryDirectory() as directory:
        secret = Path(directory) / "secret"
        secret.write_text(SECRET + "\n")
        yield Path(directory) / "config.yaml", f"${{file:{secret}}}"


def _fragments() -> list[str]:
    pieces = {SECRET, *SECRET.split(":"), *SECRET.split("$")}
    return sorted(p.lower() for p in pieces if len(p) >= 6)


def _judge(path: Path, text: str) -> None:
    """Load `text`; the only acceptable failure is ConfigError with one-line problems quoting no secret."""
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    problems: list[str] = []
    try:
        load_config(path, environ=ENV)
    except ConfigError as exc:
        problems = exc.problems
        assert problems, "a ConfigError without a problem"
    for line in problems:
        assert [] == [c for c in "\r\n" if c in line], line
        assert line.startswith(str(path)), line
        lowered = line.lower()
        assert [] == [piece for piece in _fragments() if piece in lowered], line


# What hypothesis found, kept as named tests (the profile in tests/conftest.py stores no example database).


def test_a_yaml_reader_error_is_one_line(place: tuple[Path, str]) -> None:
    """A control character the YAML reader rejects ("\x1f"): its message used to span two lines."""
    _judge(place[0], "\x1f")


def test_a_top_level_null_key_is_a_config_error(place: tuple[Path, str]) -> None:
    """A document that is one null key ("?"): it used to escape as TypeError."""
    _judge(place[0], "?")


def test_a_key_with_a_carriage_return_stays_on_one_line(place: tuple[Path, str]) -> None:
    """A key holding a carriage return: it used to split the problem line."""
    _judge(place[0], 'defaults: {"\\r": 1}\n')


def test_a_newline_in_a_list_where_text_belongs_is_shown_escaped_on_one_line(place: tuple[Path, str]) -> None:
    """`service: ["\\n"]` (a list where text belongs, holding a newline): the value is shown the way JSON writes
    it, on the problem's one line (YAML's rendering folded it over two)."""
    path = place[0]
    path.write_text('service: ["\\n"]\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=ENV)
    assert [f'{path}:1: service: must be text (a string), got ["\\n"]'] == caught.value.problems
    _judge(path, 'service: ["\\n"]\n')


def test_a_problem_never_spans_two_lines_whoever_wrote_it() -> None:
    """ConfigError escapes every line break a problem carries (newline, carriage return, the Unicode ones), so no
    code path that builds a problem can print two lines."""
    error = ConfigError(["a\nb", "c\rd\u2028e\x85f"])
    assert ["a\\nb", "c\\rd\\u2028e\\x85f"] == error.problems
    assert 2 == len(str(error).splitlines())


@FAST
@given(st.text(max_size=400))
def test_any_text(place: tuple[Path, str], text: str) -> None:
    """Arbitrary text (mostly not YAML at all) is a Config or a clean ConfigError."""
    _judge(place[0], text)


def _values(reference: str) -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(-10, 100_000), st.floats(allow_nan=False), st.text(max_size=30),
        st.sampled_from([*KINDS, "1s", "500ms", "http://127.0.0.1:1", "/health", "GET", "x/m", reference,
                         "${PROP_SECRET}", f"pre {reference} post", "http://u:${PROP_SECRET}@h:1"]),
    )
    keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=12))
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)), max_leaves=25)


@FAST
@given(st.data())
def test_any_document_with_secret_references(place: tuple[Path, str], data: st.DataObject) -> None:
    """YAML documents built from the config's own key names, kinds and values, with ${file:} and ${VAR}
    references to a secret sprinkled in: every problem is one line and none quotes the secret."""
    path, reference = place
    document = data.draw(st.dictionaries(st.sampled_from(KEYS), _values(reference), max_size=6))
    _judge(path, yaml.safe_dump(document, allow_unicode=True))


@FAST
@given(st.data())
def test_mutations_of_the_example(place: tuple[Path, str], data: st.DataObject) -> None:
    """The example file with a few lines replaced, cut or duplicated (a mistyped edit) is handled cleanly."""
    path, reference = place
    lines = EXAMPLE.splitlines()
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(lines) - 1))
        action = data.draw(st.sampled_from(["replace", "cut", "duplicate", "secret"]))
        if action == "replace":
            lines[at] = data.draw(st.text(max_size=40))
        elif action == "cut":
            lines[at] = lines[at][: data.draw(st.integers(0, len(lines[at])))]
        elif action == "duplicate":
            lines.insert(at, lines[at])
        else:
            lines[at] = lines[at].split(":", 1)[0] + f": {reference}" if ":" in lines[at] else reference
    _judge(path, "\n".join(lines) + "\n")
