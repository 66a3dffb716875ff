"""The built-in demo: a stand-in PAM backend with fault switches, its PostgreSQL, and `pam-monitor demo`."""
