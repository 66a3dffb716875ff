"""An alert's life over time: the pure state machine, the per-check plans it runs under, what holds a notification
back (flapping, a failing root check, a maintenance window) and why, the states indexed in memory, and the firing
gauge with the watchdog. What comes out are actions and notifications, for alerts.persist to keep.
"""
