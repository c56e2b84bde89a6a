"""Group "observe": `guardian metrics` on a store holding 1,000,000 operations.

The operations are spread over 30 days (a mix of batch writes, captures with latency
histograms, validations, reverts, snapshots); `guardian metrics --json` is timed as a user
runs it (a fresh process, median of several), once for the default 24-hour window and once
for the whole month, after the rows older than the last hour or two were rolled up into hours.
Beside each: the same metrics computed from the raw rows, as they were before rollups (in
process, plus the CLI's own start-up, so the two compare like for like).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import Config, Goal, Row, Table, Workspace, guardian_argv, progress, timed

N_OPS = 1_000_000
DAYS = 30
RUNS = 5


def _fill(path: Path, n: int) -> None:
    from guardian.observe import calibrate, record
    from guardian.store.db import Store

    now = time.time_ns()
    span = DAYS * 86400 * 10**9
    lat = record.Latency()
    for x in (0.01, 0.02, 0.03, 0.2):
        lat.add(x)
    latency = lat.to_json()
    with Store.open(path, write=True, create=True) as s:
        chunk = []
        for i in range(n):
            t = now - span + span * i // n  # oldest first, as they are appended
            k = i % 20
            if k < 12:
                row = record.row("write", 800_000 + (i % 997) * 1000, "ok" if k else "rejected",
                                 category=None if k else "validation",
                                 optimisation=["group_sync", "parallel_io"], nbytes=4096,
                                 time_ns=t)
            elif k < 15:
                row = record.row("capture", 3_000_000, "ok", optimisation=["group_commit"],
                                 items=4, nbytes=16384, latency=latency, time_ns=t)
            elif k < 18:
                row = record.row("validate", 2_000_000 + (i % 13) * 100_000, "ok",
                                 label="json", items=1, nbytes=4096, time_ns=t)
            elif k == 18:
                row = record.row("render", 900_000, "ok", optimisation=["template_cache"],
                                 label="sha256:0123456789ab", time_ns=t)
            else:
                row = record.row("snapshot", 5_000_000, "ok", items=3, time_ns=t)
            chunk.append(row)
            if len(chunk) >= 50_000:
                record.write_rows(s, chunk)
                chunk = []
        record.write_rows(s, chunk)
        calibrate.ensure(s)


def metrics_on_a_million(ws: Workspace, cfg: Config) -> Table:
    from guardian.observe import metrics, rollup
    from guardian.store.db import Store

    n = 200_000 if cfg.quick else N_OPS
    table = Table("observe.metrics",
                  f"`guardian metrics --json` on a store of {n:,} operations over {DAYS} days "
                  f"(median of {RUNS} runs, each a new process), after the hourly rollup",
                  "the same metrics from the raw rows (no rollup), in process, plus the CLI's "
                  "start-up (`guardian --version`)")
    env = ws.env()
    store = ws.dir("observe") / "store"
    progress(f"observe.metrics: writing {n:,} operation rows")
    t0 = time.perf_counter()
    _fill(store, n)
    fill_s = time.perf_counter() - t0
    guardian = guardian_argv()
    start = statistics.median(timed([*guardian, "--version"], env=env) for _ in range(RUNS))
    raw: dict[str, float] = {}
    with Store.open(store, write=False) as s:
        for label, days in (("24h", 1), ("31d", 31)):
            times = []
            for _ in range(3):
                t = time.perf_counter()
                metrics.compute(s, since_ns=time.time_ns() - days * 86400 * 10**9,
                                raw_only=True)
                times.append(time.perf_counter() - t)
            raw[label] = statistics.median(times)
    progress("observe.metrics: rolling up")
    with Store.open(store, write=True) as s:
        t = time.perf_counter()
        done = rollup.run(s)
        roll_s = time.perf_counter() - t
    for label, extra in (("24h", []), ("31d", ["--since", "31d"])):
        argv = [*guardian, "metrics", "--json", "--store", str(store), *extra]
        timed(argv, env=env)  # warm the page cache as a second call would find it
        cli = statistics.median(timed(argv, env=env) for _ in range(RUNS))
        table.rows.append(Row(f"guardian metrics --json, {label} window (ms)", cli * 1000, "ms",
                              (raw[label] + start) * 1000, Goal("<=", 200)))
    table.rows += [
        Row("guardian --version (ms)", start * 1000, "ms"),
        Row(f"rolling up {done['operations']:,} rows, once (s)", roll_s, "s"),
    ]
    table.notes += [
        f"writing the {n:,} rows took {fill_s:.1f} s; the rollup folds rows older than the "
        "start of the previous hour, so a window reads at most two hours of raw rows and one "
        "row per hour and kind of operation before that",
        "goal: <= 200 ms per `guardian metrics` (issue 12), whatever the store's history",
    ]
    return table


BENCHMARKS: dict[str, Callable[[Workspace, Config], Table]] = {
    "observe.metrics": metrics_on_a_million}
