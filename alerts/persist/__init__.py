"""What survives a restart: the SQLite database of alert states and the notification outbox (`database`), its rows
read back strictly (`rows`), the in-memory copy written through to it with retries (`mirror`), and the one-daemon
lock on `state_dir` (`lock`).
"""
