"""Run the benchmarks: ``python -m bench [--quick] [--json] [GROUP ...]``."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from bench import (
    backup,
    batch,
    capture,
    conformance,
    hooks,
    observe,
    resources,
    restore,
    rules,
    snapshot,
    startup,
    store,
    tui,
    validation,
)
from bench.common import Config, Table, Workspace, guardian_argv, progress

Bench = Callable[[Workspace, Config], Table]

GROUPS: dict[str, dict[str, Bench]] = {
    "capture": capture.BENCHMARKS,
    "snapshot": snapshot.BENCHMARKS,
    "resources": resources.BENCHMARKS,
    "validation": validation.BENCHMARKS,
    "conformance": conformance.BENCHMARKS,
    "batch": batch.BENCHMARKS,
    "rules": rules.BENCHMARKS,
    "restore": restore.BENCHMARKS,
    "observe": observe.BENCHMARKS,
    "hooks": hooks.BENCHMARKS,
    "backup": backup.BENCHMARKS,
    "startup": startup.BENCHMARKS,
    "tui": tui.BENCHMARKS,
    "store": store.BENCHMARKS,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Guardian's benchmarks: each figure beside a baseline measured in the same "
                    "run, the goal, and PASS/FAIL. Exit status 0 if every goal is met, 1 if not.")
    p.add_argument("groups", nargs="*", metavar="GROUP",
                   help=f"run only these groups ({', '.join(GROUPS)}), or one table of a "
                        "group by its name (batch.apply); default: all")
    p.add_argument("--quick", action="store_true",
                   help="smaller sizes, for a smoke run (under a minute)")
    p.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    args = p.parse_args(argv)
    unknown = [g for g in args.groups if g not in GROUPS and _table(g) is None]
    if unknown:
        p.error(f"unknown group(s): {', '.join(unknown)} (choose from {', '.join(GROUPS)})")
    return args


def _table(name: str) -> Bench | None:
    """The benchmark named ``name`` (``batch.apply``): one table of its group."""
    group = GROUPS.get(name.partition(".")[0], {})
    return group.get(name)


def environment() -> dict[str, Any]:
    version = subprocess.run([*guardian_argv(), "--version"], capture_output=True, text=True,
                             check=False).stdout.strip()
    return {"guardian": version, "python": sys.version.split()[0],
            "platform": platform.platform(), "cpus": os.cpu_count(),
            "loadavg_start": [round(x, 2) for x in os.getloadavg()]}


def run_one(name: str, fn: Bench, ws: Workspace, cfg: Config) -> Table:
    """One benchmark; a failure becomes a FAIL table naming the error, and the run goes on."""
    progress(f"{name}: start")
    try:
        table = fn(ws, cfg)
    except Exception as e:  # report it and go on with the other benchmarks
        traceback.print_exc(file=sys.stderr)
        table = Table(name, "did not complete", "-", error=f"{type(e).__name__}: {e}")
    finally:
        ws.clear()
    progress(f"{name}: done" + (" (FAIL)" if table.failed else ""))
    return table


def compile_guardian() -> None:
    """Byte-compile the installed package, as `pip install` does for a wheel."""
    import compileall

    import guardian

    compileall.compile_dir(os.path.dirname(guardian.__file__), quiet=1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    compile_guardian()
    cfg = Config.make(args.quick)
    env = environment()
    mode = "quick" if args.quick else "full"
    header = (f"Guardian benchmarks ({mode}): {env['guardian']}, Python {env['python']}, "
              f"{env['cpus']} CPUs, load average {env['loadavg_start']}")
    progress(header)
    t0 = time.perf_counter()
    tables: list[Table] = []
    ws = Workspace()
    try:
        for group in args.groups or list(GROUPS):
            chosen = GROUPS[group] if group in GROUPS else {group: _table(group)}
            for name, fn in chosen.items():
                assert fn is not None
                table = run_one(name, fn, ws, cfg)
                tables.append(table)
                if not args.json:
                    print(("\n" if len(tables) == 1 else "") + table.render() + "\n", flush=True)
    finally:
        ws.cleanup()
    env["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    env["elapsed_s"] = round(time.perf_counter() - t0, 1)
    failed = [t.name for t in tables if t.failed]
    if args.json:
        print(json.dumps({"mode": mode, "environment": env, "all_pass": not failed,
                          "tables": [t.to_json() for t in tables]}, indent=2))
    else:
        rows = [r for t in tables for r in t.rows if r.goal is not None]
        passed = sum(r.result == "PASS" for r in rows)
        print(f"{header}\n{passed} of {len(rows)} goals met"
              + (f"; FAIL in: {', '.join(failed)}" if failed else "")
              + f"; {env['elapsed_s']} s, load average at the end {env['loadavg_end']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
