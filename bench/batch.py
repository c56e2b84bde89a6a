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
                  f"{n} files of 4 KiB (random bytes) written as one Guardian batch, in process "
                  "(lock, validate, store old and new, temps, commit, one syncfs, link/rename, "
                  f"check), new files and rewrites of existing ones; median of {rounds}, after "
                  "a warm-up batch",
                  "the same files, the naive safe way (per file: validate, backup, write, "
                  "fsync, verify; the seed's guarantee_safe_write), and with no sync at all "
                  "(open, write, close); each timed section starts after a sync")
    runs: dict[str, list[dict[str, float]]] = {"new": [], "rewrite": []}
    b = benchmark.Bench(Path(ws.dir("batch")))
    try:
        # Every round of new files first: a rewrite frees the files it replaces, and on ext4
        # without a journal each file created in the next minutes skips past those inodes
        # (see benchmark.quiesce) whichever way it is written.
        for kind in ("new", "rewrite"):
            for r in range(rounds):
                progress(f"batch.large: {kind} round {r + 1} of {rounds}")
                runs[kind].append(benchmark.large_batch(b, n, 4096, existing=kind == "rewrite",
                                                        rounds=1))
        fsync = benchmark.fsync_latency(b.dir)
    finally:
        b.close()
    for kind, what in (("new", "new files"), ("rewrite", "rewrites")):
        ours = [x["optimised_s"] for x in runs[kind]]
        naive = [x["naive_s"] for x in runs[kind]]
        floor = [x["unsynced_s"] for x in runs[kind]]
        o, nv, fl = (statistics.median(ours), statistics.median(naive),
                     statistics.median(floor))
        table.rows += [
            Row(f"{what}: batch vs naive loop (s)", o, "s", nv, Goal("<=", 1 / 5, "ratio")),
            Row(f"{what}: batch vs no sync at all (s)", o, "s", fl, Goal("<=", 1.5, "ratio")),
        ]
        if kind == "new":  # what no implementation of these guarantees can go below here
            for key, label in (("io_floor_s", "I/O floor"),
                               ("io_rows_floor_s", "I/O floor + hashes and rows")):
                if all(key in x for x in runs[kind]):
                    table.rows.append(Row(f"{what}: {label} vs no sync at all (s)",
                                          statistics.median(x[key] for x in runs[kind]), "s",
                                          fl))
        table.notes.append(
            f"{what}: spread batch {min(ours):.3f}-{max(ours):.3f} s, naive {min(naive):.3f}-"
            f"{max(naive):.3f} s, no sync {min(floor):.3f}-{max(floor):.3f} s")
    table.notes += [
        "goal: >= 5x faster than the naive loop (ratio <= 0.2) and within 1.5x of no sync",
        "I/O floor: the new contents into a store's WAL, unnamed files, one syncfs, links, no "
        "logic; + hashes and rows: also each content's SHA-256 and its file, version and "
        "operation rows (no compression, validation, locks or checks)",
        f"an fsync of a new 4 KiB file on this disk: {fsync * 1e3:.2f} ms (median of 50, last "
        "round): what each naive write pays",
        "`guardian bench` runs the seed's batch/template/incremental scenarios with PASS/FAIL "
        "against its ACCEPTANCE_CRITERIA",
    ]
    return table


BENCHMARKS: dict[str, Callable[[Workspace, Config], Table]] = {"batch.large": large}
