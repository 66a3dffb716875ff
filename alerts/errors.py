"""Exceptions raised by the alerting package.

    AlertingError
    └── StoreError      the state database could not be opened or written
"""

from __future__ import annotations


class AlertingError(Exception):
    """Base of every exception this package raises on purpose."""


class StoreError(AlertingError):
    """The SQLite state database could not be opened, read or written."""
