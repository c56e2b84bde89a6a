"""Group "restore": `restore DIR --at T` as one batch, against the per-file restore it replaced."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import BenchError, Config, Goal, Row, Table, Workspace, progress


def _setup(top: Path, n: int, size: int) -> tuple[Any, Any, int]:
    """A store and a directory of ``n`` files recorded at T, each rewritten (and recorded)
    since; (store, recorder, T)."""
    from guardian.store.db import Store
    from guardian.writer import writer_of

    d = top / "root" / "dir"
    d.mkdir(parents=True)
    for i in range(n):
        (d / f"f{i:05}.txt").write_bytes(b"v1 %d " % i + os.urandom(size // 2).hex().encode())
    store = Store.open(top / "store", write=True, create=True)
    writer = writer_of(store, [(top / "root").resolve()])
    rec, roots = writer.recorder, list(writer.roots.values())
    rec.reconcile(roots[0].id, b"", origin="snapshot", confirm_missing=True)
    at = time.time_ns()
    for i in range(n):
        (d / f"f{i:05}.txt").write_bytes(b"v2 %d " % i + os.urandom(size // 2).hex().encode())
    rec.reconcile(roots[0].id, b"", origin="snapshot", confirm_missing=True)
    return store, writer, at


def _batch_restore(rec: Any, at: int) -> None:
    from guardian.batch.restore import restore

    root = next(iter(rec.roots.values()))
    restore(rec, root, b"dir", at_ns=at)


def _per_file_restore(rec: Any, at: int) -> None:
    """The restore before it was a batch (kept here as the baseline): record the tree, then
    for each file a safe write of its own (temp, fsync, rename, fsync the directory) and a
    durable commit of its version."""
    from guardian.rootfs import RootFS
    from guardian.store.db import NewVersion
    from guardian.store.objects import Objects

    root = next(iter(rec.roots.values()))
    store = rec.store
    rec.recorder.reconcile(root.id, b"dir", origin="restore", confirm_missing=True)
    desired = store.states_at(root.id, b"dir", at)
    live = store.live_files(root.id, b"dir")
    fs = RootFS(root.bpath)
    objects = Objects(store)
    for rel, want in sorted(desired.items()):
        have = live.get(rel)
        if have is not None and have.hash == want.hash and have.mode == want.mode:
            continue
        assert want.object_id is not None
        data = objects.get(want.object_id)
        st = fs.write(rel, data, want.mode or 0o100644)
        with store.transaction():
            file_id = store.file_id(root.id, rel)
            assert file_id is not None
            store.add_version(NewVersion(file_id, want.object_id, True, "restored", "restore",
                                         st.st_mode, len(data), note="restored"), st=st)


def directory(ws: Workspace, cfg: Config) -> Table:
    from guardian.benchmark import quiesce

    n, size, rounds = (500 if cfg.quick else 2000), 4096, 3
    table = Table("restore.dir",
                  f"`restore DIR --at T` of {n:,} files of 4 KiB, each rewritten since T, in "
                  "process, from a quiet disk (one batch: plan under the locks, store, temps, "
                  f"one syncfs, renames, verify, record); median of {rounds}",
                  "the restore it replaced, on another copy: record the tree, then per file "
                  "a safe write (temp, fsync, rename, fsync the directory) and a durable "
                  "commit of its version")
    ours: list[float] = []
    theirs: list[float] = []
    impls: list[tuple[str, Callable[[Any, int], None], list[float]]] = [
        ("batch", _batch_restore, ours), ("per-file", _per_file_restore, theirs)]
    for r in range(rounds):
        for name, fn, times in (impls if r % 2 == 0 else impls[::-1]):
            progress(f"restore.dir: round {r + 1} of {rounds}, {name}")
            top = Path(ws.dir("restore", f"{name}-{r}"))
            store, rec, at = _setup(top, n, size)
            try:
                quiesce()
                t0 = time.perf_counter()
                fn(rec, at)
                times.append(time.perf_counter() - t0)
                d = top / "root" / "dir"
                wrong = [i for i in range(n)
                         if not (d / f"f{i:05}.txt").read_bytes().startswith(b"v1 ")]
                if wrong:
                    raise BenchError(f"{name} restore left {len(wrong)} files not restored")
            finally:
                rec.close()
                store.close()
    o, b = statistics.median(ours), statistics.median(theirs)
    table.rows += [
        Row(f"{n:,} files: batch restore vs per-file restore (s)", o, "s", b,
            Goal("<=", 0.5, "ratio")),
        Row(f"{n:,} files: batch restore (files/s)", n / o, "files/s", n / b),
    ]
    table.notes += [
        f"spread: batch {min(ours):.3f}-{max(ours):.3f} s, per-file {min(theirs):.3f}-"
        f"{max(theirs):.3f} s",
        "goal: at least 2x faster than the per-file restore (ratio <= 0.5), with its "
        "guarantees added (all or nothing, crash-safe, no concurrent write overwritten)",
    ]
    return table


BENCHMARKS: dict[str, Callable[[Workspace, Config], Table]] = {"restore.dir": directory}
