"""Guardian measuring itself: metrics, alerts, health, reports, suggestions, Prometheus.

Built on the store's ``operations`` table (one row per operation, with its duration, outcome,
error category and the optimisations it used) and its versions. Nothing here imports the UI;
the daemon, the CLI and the TUI's dashboard read the same JSON shapes (see README, *Metrics*).
Importing this package is free: each module imports what it needs when it is used.
"""
