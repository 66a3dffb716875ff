"""The test tiers hold: a test that starts a process without the `process` mark fails, a marked one passes, and
`-m "not process"` leaves the marked ones out (the guard and the marking live in tests/conftest.py)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.process  # the inner tests start a Python subprocess on purpose

INI = """[pytest]
asyncio_default_fixture_loop_scope = function
markers =
    process: starts a process
    e2e: starts binaries
"""

INNER = '''
import subprocess
import sys

import pytest


def test_unmarked_spawn():
    subprocess.run([sys.executable, "-c", "pass"], check=True)


@pytest.mark.process
def test_marked_spawn():
    subprocess.run([sys.executable, "-c", "pass"], check=True)


def test_no_spawn():
    assert True
'''


def test_a_process_started_without_the_mark_fails_the_test(pytester: pytest.Pytester) -> None:
    """Run with the repository's conftest: the unmarked test that starts a subprocess errors naming the event and
    the fix, the marked one and the one that starts nothing pass."""
    pytester.makeconftest('pytest_plugins = ["tests.conftest"]\n')
    pytester.makeini(INI)
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_unmarked_spawn*",
                                 "this test started a process (subprocess.Popen *) but is not marked `process`*"])


def test_the_quick_tier_leaves_marked_tests_out(pytester: pytest.Pytester) -> None:
    """`-m "not process"` deselects the marked test and runs the rest (where the unmarked one that starts a
    process still fails: the quick tier cannot quietly start one)."""
    pytester.makeconftest('pytest_plugins = ["tests.conftest"]\n')
    pytester.makeini(INI)
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-m", "not process")
    result.assert_outcomes(passed=2, errors=1, deselected=1)
