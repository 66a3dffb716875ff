"""Shared pytest configuration: fixture plugins used across the test packages, global-state resets, the test
tiers (`process` marks a test that starts a subprocess or external binary; `-m "not process"` is the quick tier,
and a test that starts one without the mark fails) and the Hypothesis profile (no example database on disk)."""

from __future__ import annotations

import logging
import platform
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from hypothesis import settings

pytest_plugins = ["tests.support.postgres", "pytester"]

# Found examples become named regular tests instead: a database in the working tree replays an old failure in every
# later run of that clone, red for a reason no diff shows.
settings.register_profile("pam-monitor", database=None)
settings.load_profile("pam-monitor")

PROCESS_FIXTURES = frozenset({"alertmanager"})
"""Fixtures that start a process: every test using one is marked `process` at collection."""

_SPAWN_EVENTS = frozenset({"subprocess.Popen", "os.posix_spawn", "os.spawn", "os.exec", "os.system", "os.fork",
                           "os.forkpty"})
_spawned: list[str] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    # Called for every audit event in the process, so it does as little as it can for the others.
    if event in _SPAWN_EVENTS:
        what = args[0] if args else ""
        if isinstance(what, list | tuple) and what:
            what = what[0]
        _spawned.append(f"{event} {what!s:.80}")


# platform.processor() runs `uname -p` once per process, on first use, and caches it: whichever test asks first
# (a library reading the platform) would be blamed for starting a process. Ask before the hook is installed.
platform.processor()
sys.addaudithook(_audit)  # an audit hook cannot be removed: it stays for the session, cheap for other events


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `process` every test that uses a fixture that starts one (PROCESS_FIXTURES), and every `e2e` test
    (those start real external binaries by definition)."""
    for item in items:
        if PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())) or item.get_closest_marker("e2e") is not None:
            item.add_marker(pytest.mark.process)


@pytest.fixture(autouse=True)
def _process_tier_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that started a subprocess (or an external binary) without the `process` mark, so the quick
    tier (`-m "not process"`) stays quick and stays right as tests are added. What a module- or session-scoped
    fixture starts (a throwaway PostgreSQL cluster when PAM_MONITOR_TEST_DSN is unset) counts against the first
    test that uses it: the record is cleared after each test, not before."""
    yield
    started = "; ".join(sorted(set(_spawned))[:3])
    _spawned.clear()
    if started and request.node.get_closest_marker("process") is None:
        pytest.fail(f"this test started a process ({started}) but is not marked `process`: add "
                    "`pytestmark = pytest.mark.process` to its module or @pytest.mark.process to it", pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """What a process-marked test's module or session fixtures start while they are torn down (after its
    `_process_tier_guard`, e.g. `podman rm` when an image test's module ends) is that test's, not the next one's."""
    try:
        return (yield)
    finally:
        if item.get_closest_marker("process") is not None:
            _spawned.clear()


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """Undo what configure_logging() did in a test: structlog's config and the root logger's handlers and level.

    Without this a test that configures logging at info decides whether a later test sees debug events.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
