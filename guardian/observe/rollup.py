"""Bounded cost: old operation and version rows folded into per-hour rows.

Rows older than the start of the previous hour are folded into ``operation_hours`` and
``version_hours`` (counts, sums, maxima and histograms per operation, outcome, category,
optimisation and label; versions per kind and origin), so a metrics window reads the last one
or two hours' raw rows and one row per hour and kind before that. Raw operation rows stay
:data:`KEEP_RAW_DAYS` days (suggestions and reports read them), then only their hours remain.
The daemon rolls up every few minutes; ``guardian metrics`` does it itself, under the store's
writer lock, when no daemon runs and many rows wait.
"""

from __future__ import annotations

import time
from typing import Any

HOUR_NS = 3_600_000_000_000
KEEP_RAW_DAYS = 14
#: Rows folded per step (one transaction), so a writer never stalls long.
STEP = 200_000
#: ``guardian metrics`` rolls up first when more rows than this wait (and it can).
CLI_THRESHOLD = 20_000


def cutoff(now_ns: int | None = None) -> int:
    """Rows before this are folded: the start of the previous hour."""
    now = time.time_ns() if now_ns is None else now_ns
    return (now // HOUR_NS - 1) * HOUR_NS


def step(store: Any, now_ns: int | None = None) -> dict[str, int]:
    """One bounded rollup step, in one commit (without an fsync of its own)."""
    now = time.time_ns() if now_ns is None else now_ns
    with store.transaction(durable=False):
        return dict(store.rollup(cutoff(now), limit=STEP,
                                 keep_raw_ns=now - KEEP_RAW_DAYS * 86400 * 10**9))


def run(store: Any, now_ns: int | None = None, *, max_steps: int = 1000) -> dict[str, int]:
    """Roll up everything due (several steps)."""
    total = {"operations": 0, "versions": 0, "deleted": 0}
    for _ in range(max_steps):
        done = step(store, now_ns)
        for k in total:
            total[k] += done[k]
        if done["operations"] < STEP and done["versions"] < STEP:
            break
    return total


def sample_size(store: Any) -> dict[str, int]:
    """Record the store's size now (hourly samples: growth over any window)."""
    from guardian.observe.metrics import disk_bytes

    size = disk_bytes(store)
    with store.transaction(durable=False):
        return dict(store.add_size_sample(size))
