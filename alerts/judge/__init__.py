"""Judging a result: the built-in rules, their evaluation (a journey's step by step), the alerts judged across
results (MonitorBlocked, MonitorSaturated, CertificateExpiring's bands), and the README tables written from the rules.

Pure: an `Observation` per alert instance comes out (GOOD, BAD or nothing); alerts.lifecycle decides what it does.
"""
