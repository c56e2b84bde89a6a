"""Group "backup": ``guardian store backup`` against copying the store's directory as it is.

The baseline, ``cp -a`` of the store (``shutil.copytree``, then one ``syncfs``-equivalent
``os.sync``), is what an operator does without the command: fast, but not consistent while a
daemon writes (a copy of the database and its WAL taken at different moments can be torn).
The backup adds a single-snapshot SQLite backup and one ``syncfs`` before the database is
renamed into place; the ratio says what consistency costs.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import BenchError, Config, Goal, Row, Table, Workspace, progress


def _store(top: Path, small: int, loose: int) -> Path:
    """A store holding ``small`` 4 KiB files (in the database) and ``loose`` 300 KiB ones."""
    from guardian.store.db import Store
    from guardian.writer import writer_of

    root = top / "root"
    root.mkdir(parents=True)
    for i in range(small):
        (root / f"s{i:05}.txt").write_bytes(os.urandom(2048).hex().encode())
    for i in range(loose):
        (root / f"b{i:04}.bin").write_bytes(os.urandom(300 * 1024))
    store = Store.open(top / "store", write=True, create=True)
    writer = writer_of(store, [root.resolve()])
    rid = next(iter(writer.roots.values())).id
    writer.recorder.reconcile(rid, b"", origin="snapshot", confirm_missing=True)
    writer.close()
    store.close()
    return top / "store"


def _size(path: Path) -> int:
    total = 0
    stack = [path]
    while stack:
        for e in os.scandir(stack.pop()):
            if e.is_dir(follow_symlinks=False):
                stack.append(Path(e.path))
            else:
                total += e.stat(follow_symlinks=False).st_size
    return total


def store_backup(ws: Workspace, cfg: Config) -> Table:
    from guardian.benchmark import quiesce
    from guardian.store.backup import backup
    from guardian.store.db import Store

    small, loose, rounds = (1000, 20, 3) if cfg.quick else (5000, 100, 3)
    table = Table("backup.store",
                  f"`guardian store backup` of a store of {small:,} 4 KiB files and {loose} "
                  f"of 300 KiB (loose objects), in process, from a quiet disk; median of "
                  f"{rounds}",
                  "copying the store directory as it is (shutil.copytree + os.sync): not "
                  "consistent while a daemon writes")
    src = _store(ws.dir("backup", "src"), small, loose)
    ours: list[float] = []
    theirs: list[float] = []

    def ours_fn(dest: Path) -> None:
        result = backup(src, dest)
        if not result.ok:
            raise BenchError(f"backup reported missing objects: {result.missing[:3]}")

    def theirs_fn(dest: Path) -> None:
        shutil.copytree(src, dest, symlinks=True)
        os.sync()

    impls: list[tuple[str, Callable[[Path], None], list[float]]] = [
        ("backup", ours_fn, ours), ("copytree", theirs_fn, theirs)]
    for r in range(rounds):
        for name, fn, times in (impls if r % 2 == 0 else impls[::-1]):
            progress(f"backup.store: round {r + 1} of {rounds}, {name}")
            dest = ws.root / "backup" / f"{name}-{r}"
            quiesce()
            t0 = time.perf_counter()
            fn(dest)
            times.append(time.perf_counter() - t0)
    with Store.open(ws.root / "backup" / "backup-0", write=False) as copy:
        versions = copy.counts()["versions"]
    if versions != small + loose:
        raise BenchError(f"the backup holds {versions} versions, not {small + loose}")
    size = _size(src) / 1e6
    o, b = statistics.median(ours), statistics.median(theirs)
    table.rows += [
        Row(f"{size:.0f} MB store: backup vs copytree (s)", o, "s", b, Goal("<=", 3.0, "ratio")),
        Row("backup throughput (MB/s)", size / o, "MB/s", size / b),
    ]
    table.notes += [
        f"spread: backup {min(ours):.3f}-{max(ours):.3f} s, copytree {min(theirs):.3f}-"
        f"{max(theirs):.3f} s",
        "goal: consistency (one SQLite snapshot, one syncfs, the database renamed into "
        "place last) costs at most 3x a plain copy",
    ]
    return table


BENCHMARKS: dict[str, Callable[[Workspace, Config], Table]] = {"backup.store": store_backup}
