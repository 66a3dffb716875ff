"""The ground floor every package stands on: config, results, clock, secrets, durations, time formatting, errors.

Nothing here imports from probes/, alerts/ or the rest of monitor/; they all import from here.
"""
