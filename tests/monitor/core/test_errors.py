"""monitor.core.errors: one exception tree, so a caller can catch everything pam-monitor raises on purpose."""

from __future__ import annotations

import inspect

import pytest

from monitor.core import errors
from monitor.core.errors import (
    ConfigError,
    PamMonitorError,
    StateDirBusyError,
    StateDirError,
    StoreError,
    StoreVanishedError,
)


def test_every_exception_of_the_module_derives_from_pam_monitor_error() -> None:
    """Each exception class errors.py defines is a PamMonitorError (and the set is the one its docstring draws)."""
    defined = {
        obj for _, obj in inspect.getmembers(errors, inspect.isclass)
        if issubclass(obj, BaseException) and obj.__module__ == errors.__name__
    }
    assert {PamMonitorError, ConfigError, StoreError, StateDirError, StateDirBusyError, StoreVanishedError} == defined
    assert [] == [cls.__name__ for cls in defined if not issubclass(cls, PamMonitorError)]
    assert Exception is PamMonitorError.__base__
    for cls in defined:
        assert cls.__name__ in (errors.__doc__ or ""), f"{cls.__name__} is missing from the drawn tree"


def test_config_error_keeps_one_line_per_problem() -> None:
    """ConfigError carries the problems as a list and prints them one per line; catching the base catches it."""
    with pytest.raises(PamMonitorError) as info:
        raise ConfigError(["a.yaml:1: first", "a.yaml:2: second"])
    assert isinstance(info.value, ConfigError)
    assert ["a.yaml:1: first", "a.yaml:2: second"] == info.value.problems
    assert "a.yaml:1: first\na.yaml:2: second" == str(info.value)


def test_store_error_is_caught_as_the_base() -> None:
    """A StoreError is caught by `except PamMonitorError` (the daemon's one handler for deliberate failures)."""
    with pytest.raises(PamMonitorError, match="disk I/O error"):
        raise StoreError("disk I/O error")
