"""Group "startup": what every CLI call and every hook pays before it does anything.

Each figure is the wall time of a whole process against ``python3 -c pass`` (the same
interpreter, same environment) measured interleaved in the same run.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from bench.common import (
    Config,
    Goal,
    Row,
    Table,
    Workspace,
    guardian_argv,
    guardian_watch,
    is_ready,
    median,
    progress,
    run,
    timed,
)


def startup(ws: Workspace, cfg: Config) -> Table:
    repeats = 5 if cfg.quick else 15
    table = Table(
        "startup.cli",
        f"whole-process wall time of one CLI call (median of {repeats}, interleaved): "
        "`guardian --version`, `guardian status` with no daemon, `guardian snapshot FILE` "
        "of a one-line edit through a running daemon",
        "`python3 -c pass` with the same interpreter and environment, interleaved")
    env = ws.env()
    g = guardian_argv()
    tree = ws.dir("startup", "tree")
    store = ws.root / "startup" / "store"
    for i in range(50):
        (tree / f"f{i}.txt").write_text(f"file {i}\n")
    run([*g, "snapshot", "--store", str(store)], env=env, cwd=tree)  # the store exists
    py = [sys.executable, "-c", "pass"]
    run(py, env=env)
    run([*g, "--version"], env=env)
    cmds: dict[str, Sequence[str]] = {
        "version": [*g, "--version"],
        "status": [*g, "status", "--store", str(store)],
        "floor_re": [sys.executable, "-c", "import re"],
        "floor_sqlite": [sys.executable, "-c", "import sqlite3"],
    }
    times: dict[str, list[float]] = {"python": [], "version": [], "status": [], "snapshot": [],
                                     "python_d": [], "floor_re": [], "floor_sqlite": []}
    progress(f"startup.cli: no daemon, {repeats}x each")
    for _ in range(repeats):
        times["python"].append(timed(py, env=env))
        for k, argv in cmds.items():
            times[k].append(timed(argv, env=env, cwd=tree))
    progress(f"startup.cli: daemon running, {repeats}x")
    target = tree / "f0.txt"
    with guardian_watch(tree, store, env) as proc:
        proc.wait_for(is_ready, 300, "the daemon's ready event")
        for i in range(repeats):
            target.write_text(f"file 0, edit {i}\n")
            times["snapshot"].append(timed([*g, "snapshot", str(target), "--store", str(store)],
                                           env=env, cwd=tree))
            times["python_d"].append(timed(py, env=env))
    base = median(times["python"])
    table.rows += [
        Row("guardian --version (s)", median(times["version"]), "s", base),
        Row("guardian status, no daemon (s)", median(times["status"]), "s", base,
            Goal("<=", 2.5, "ratio")),
        Row("guardian snapshot FILE, daemon running (s)", median(times["snapshot"]), "s",
            median(times["python_d"]), Goal("<=", 3.0, "ratio")),
        # No goal: what pip's console-script wrapper (which imports re) cost every call,
        # before `guardian` became a script of its own; a status without a daemon needs
        # sqlite3 too.
        Row("reference: python3 -c 'import re' (pip's console-script wrapper) (s)",
            median(times["floor_re"]), "s", base),
        Row("floor: python3 -c 'import sqlite3' (status without a daemon) (s)",
            median(times["floor_sqlite"]), "s", base),
    ]
    for k, label in (("python", "python3 -c pass"), ("version", "--version"),
                     ("status", "status"), ("snapshot", "snapshot FILE"),
                     ("python_d", "python3 -c pass beside the daemon")):
        table.notes.append(f"{label}: {min(times[k]):.3f}-{max(times[k]):.3f} s")
    table.notes.append("audit the imports of a call with `python -X importtime -m guardian ...`")
    return table


BENCHMARKS: dict[str, Callable[[Workspace, Config], Table]] = {"startup.cli": startup}
