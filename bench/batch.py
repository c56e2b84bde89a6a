"""Group "batch": atomic batch writes against the naive safe loop and against no sync at all."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path

from bench.common import Config, Goal, Row, Table, Workspace, progress


def large(ws: Workspace, cfg: Config) -> Table:
    from guardian import benchmark

    n = 300 if cfg.quick else 1000
    rounds = 3
    table = Table("batch.large",
                  f"{n} new files of 4 KiB written as one Guardian batch (in process: lock, "
                  "validate, store old and new, temps, one syncfs, commit, renames, verify), "
                  f"median of {rounds}",
                  "the same files, the naive safe way (per file: backup, write, fsync, verify; "
                  "the seed's guarantee_safe_write), and with no sync at all (open, write, "
                  "close)")
    ours, naive, floor = [], [], []
    for r in range(rounds):
        progress(f"batch.large: round {r + 1} of {rounds}")
        b = benchmark.Bench(Path(ws.dir("batch", f"r{r}")))
        try:
            out = benchmark.large_batch(b, n, 4096)
        finally:
            b.close()
        ours.append(out["optimised_s"])
        naive.append(out["naive_s"])
        floor.append(out["unsynced_s"])
    o, nv, fl = statistics.median(ours), statistics.median(naive), statistics.median(floor)
    table.rows += [
        Row("batch vs naive loop (s)", o, "s", nv, Goal("<=", 1 / 5, "ratio")),
        Row("batch vs no sync at all (s)", o, "s", fl, Goal("<=", 1.5, "ratio")),
    ]
    table.notes += [
        f"goal: >= 5x faster than the naive loop (ratio <= 0.2) and within 1.5x of no sync; "
        f"spread: batch {min(ours):.3f}-{max(ours):.3f} s, naive {min(naive):.3f}-"
        f"{max(naive):.3f} s, no sync {min(floor):.3f}-{max(floor):.3f} s",
        "`guardian bench` runs the seed's batch/template/incremental scenarios with PASS/FAIL "
        "against its ACCEPTANCE_CRITERIA",
    ]
    return table


BENCHMARKS: dict[str, Callable[[Workspace, Config], Table]] = {"batch.large": large}
