"""pam-monitor: continuous health monitoring for the PAM backend, its voice system and its database."""

__version__ = "0.1.0"
