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


def _module(i: int, n: int, version: int, spare: bool) -> bytes:
    """Module ``i`` of ``n`` (~4 KiB): imports a name of the next module, defines its own;
    with ``spare``, also a function only this version has (so the next one removes it)."""
    body = "".join(f"def g{i}_{k}(x):\n    return x * {k} + {version}\n\n" for k in range(60))
    extra = f"def _spare_{i}_{version}():\n    return None\n\n" if spare else ""
    return (f"from pkg.m{(i + 1) % n:04d} import f{(i + 1) % n}\n\nVERSION = {version}\n\n"
            f"def f{i}():\n    return VERSION\n\n{extra}{body}").encode()


def imports(ws: Workspace, cfg: Config) -> Table:
    """What the dependency-consistency check (guardian.batch.imports) adds to a batch."""
    from guardian import benchmark
    from guardian.batch import imports as imports_mod
    from guardian.batch.manifest import Operation

    n = 100 if cfg.quick else 1000
    rounds = 1 if cfg.quick else 3
    table = Table("batch.imports",
                  f"{n} Python modules of ~4 KiB rewritten as one batch (each imports a name of "
                  "the next), with the import check: names kept (old and new top-level lines "
                  "compared, nothing parsed), and each module dropping a function nobody "
                  "imports (then every file is also searched for importers of the names "
                  f"dropped); median of {rounds}",
                  "the same batch with the import check turned off, in the same run "
                  "(alternating)")
    b = benchmark.Bench(Path(ws.dir("imports")))
    real_check = imports_mod.check
    version = 0
    try:
        b.seed({"pkg/__init__.py": b"", **{f"pkg/m{i:04d}.py": _module(i, n, 0, True)
                                           for i in range(n)}})
        for spare in (False, True):
            times: dict[bool, list[float]] = {True: [], False: []}
            for r in range(rounds):
                for on in (False, True):
                    progress(f"batch.imports: {'drop' if spare else 'keep'} names, check "
                             f"{'on' if on else 'off'}, round {r + 1} of {rounds}")
                    version += 1
                    ops = [Operation(i + 1, "write", f"pkg/m{i:04d}.py",
                                     content=_module(i, n, version, spare)) for i in range(n)]
                    imports_mod.check = real_check if on else (lambda _w, _t: [])
                    secs, _ok, bad = b.batch(ops)
                    if bad:
                        raise RuntimeError("the benchmark's batch was refused")
                    times[on].append(secs)
            on_s, off_s = statistics.median(times[True]), statistics.median(times[False])
            what = "a function dropped per module" if spare else "names kept"
            table.rows.append(Row(f"{what}: batch with check vs without (s)", on_s, "s", off_s,
                                  Goal("<=", 1.25, "ratio")))
            table.notes.append(f"{what}: check adds {(on_s - off_s) * 1e3:.0f} ms "
                               f"({(on_s - off_s) / n * 1e6:.0f} us per module)")
    finally:
        imports_mod.check = real_check
        b.close()
    table.notes.append("goal: the check costs at most a quarter of the batch it guards")
    return table


BENCHMARKS: dict[str, Callable[[Workspace, Config], Table]] = {"batch.large": large,
                                                               "batch.imports": imports}
