"""Shared pytest configuration: fixture plugins used across the test packages."""

pytest_plugins = ["tests.support.postgres"]
