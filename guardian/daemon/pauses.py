"""The daemon's interpreter, tuned so that none of its own pauses makes it miss a write.

At 2,000 writes/s over 64 files a version stays on disk for 32 ms: if the thread that reads it
waits longer, it is overwritten unseen. Two waits were measured in the daemon at that rate:
the GIL, handed between threads every 5 ms by default; and the cyclic collector's full passes,
23-87 ms each (``gc.callbacks``), each walking every object the daemon holds, most of them made
at start (its imports, the store, the baseline). So the switch interval is 1 ms; the young
generation is collected every 10,000 allocations instead of 700 and the old ones rarely; and
once the baseline is done, what exists then is collected once and frozen (``gc.freeze``): the
collector never walks it again, reference counting still frees it. Measured after: the longest
pass 9-20 ms at that rate (freezing alone left 23-53 ms ones).

The collector is the process's, not the daemon's: only ``guardian watch``, which owns its
process, tunes it (a daemon embedded in a test or another program leaves it alone).
"""

from __future__ import annotations

import gc
import sys

#: The interpreter's thread switch interval while the daemon runs (default 5 ms).
SWITCH_INTERVAL_S = 0.001
#: ``gc.set_threshold`` while the daemon runs (default 700, 10, 10).
COLLECTOR_THRESHOLDS = (10_000, 50, 100)


def tune(*, collector: bool) -> None:
    """At start: shorter GIL turns; with ``collector``, rarer collections."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    if collector:
        gc.set_threshold(*COLLECTOR_THRESHOLDS)


def freeze_start() -> None:
    """Once started (baseline done, before "ready"): what the start made is collected once,
    then left out of every later pass."""
    gc.collect()
    gc.freeze()
