"""Benchmarks of the pam-monitor daemon (run `python -m bench.run --help`)."""
