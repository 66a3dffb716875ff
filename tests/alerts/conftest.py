"""Fixtures for the alert tests: a real Alertmanager."""

from tests.support.alertmanager import alertmanager

__all__ = ["alertmanager"]
