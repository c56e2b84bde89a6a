"""Group "store": what history costs on disk, against `git gc --aggressive` in the same run.

Each workload is recorded twice from the same tree, into a store with deltas (the codec
``zstd-delta``) and into one with today's whole copies (``objects.DELTA_ENABLED`` off), and
committed to git beside it (``--git-dir`` outside the tree, so all three see the same bytes).
Writes are the recorder's scan in process (what `guardian snapshot` runs); reads are
`guardian show` / `guardian restore` of the oldest and the newest version as whole processes,
and ``Objects.get`` in process, each store against the other.
"""

from __future__ import annotations

import contextlib
import os
import random
import sysconfig
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.common import (
    BenchError,
    Config,
    Goal,
    Row,
    Table,
    Workspace,
    copy_tree,
    guardian_argv,
    median,
    progress,
    run,
)

CODECS = ("deltas", "whole")  # the new codec, and today's (each version compressed alone)


@contextlib.contextmanager
def _codec(name: str) -> Iterator[None]:
    from guardian.store import objects

    before = objects.DELTA_ENABLED
    objects.DELTA_ENABLED = name == "deltas"
    try:
        yield
    finally:
        objects.DELTA_ENABLED = before


class _Side:
    """One store recording the shared tree, with the time its writes took."""

    def __init__(self, name: str, store: Path, tree: Path) -> None:
        from guardian.store.db import Store
        from guardian.writer import writer_of

        self.name, self.path = name, store
        self.store = Store.open(store, write=True, create=True)
        self.writer = writer_of(self.store, [tree])
        self.root_id = next(iter(self.writer.roots.values())).id
        self.write_s = 0.0

    def record(self, *, timed: bool = True) -> None:
        with _codec(self.name):
            t0 = time.perf_counter()
            self.writer.recorder.reconcile(self.root_id, b"", origin="snapshot",
                                           confirm_missing=True)
            if timed:
                self.write_s += time.perf_counter() - t0

    def close(self) -> None:
        self.writer.close()
        self.store.close()


class _Git:
    def __init__(self, git_dir: Path, tree: Path, env: dict[str, str]) -> None:
        self.argv = ["git", "--git-dir", str(git_dir), "--work-tree", str(tree),
                     "-c", "user.name=bench", "-c", "user.email=bench@example.invalid",
                     "-c", "gc.auto=0", "-c", "core.autocrlf=false"]
        self.env = env
        run(["git", "init", "-q", "--bare", str(git_dir)], env=env)

    def commit(self, message: str) -> None:
        run([*self.argv, "add", "-A"], env=self.env)
        run([*self.argv, "commit", "-q", "--allow-empty", "-m", message], env=self.env)

    def gc(self) -> float:
        t0 = time.perf_counter()
        run([*self.argv, "gc", "--aggressive", "--prune=now", "-q"], env=self.env,
            timeout=3600)
        return time.perf_counter() - t0


def _du(path: Path) -> int:
    from guardian.store.db import store_size

    return store_size(path)


def _reads(ws: Workspace, sides: dict[str, Any], tree: Path, rel: bytes, rounds: int
           ) -> dict[tuple[str, str, str], float]:
    """(op, which, codec) -> median seconds: `show` and `restore` as processes, `get` in
    process, of the oldest and the newest version of ``rel``, the codecs interleaved."""
    from guardian.store.db import Store
    from guardian.store.objects import Objects

    env = ws.env()
    guardian = guardian_argv()
    path = str(tree / os.fsdecode(rel))
    ids: dict[str, dict[str, tuple[int, int]]] = {}
    for name, store in sides.items():
        with Store.open(store, write=False) as s:
            fid = s.file_id(s.roots()[0].id, rel, create=False)
            assert fid is not None
            vs = [v for v in s.versions_of(fid) if v.object_id is not None]
            ids[name] = {"oldest": (vs[-1].id, vs[-1].object_id or 0),
                         "newest": (vs[0].id, vs[0].object_id or 0)}
    times: dict[tuple[str, str, str], list[float]] = {}
    for r in range(rounds):
        for name in (CODECS if r % 2 == 0 else CODECS[::-1]):
            store = sides[name]
            for which, (vid, oid) in ids[name].items():
                t0 = time.perf_counter()
                run([*guardian, "show", path, "--version", str(vid), "--store", str(store)],
                    env=env)
                times.setdefault(("show", which, name), []).append(time.perf_counter() - t0)
                with Store.open(store, write=False) as s:
                    for _ in range(10):
                        t0 = time.perf_counter()
                        Objects(s).get(oid)  # a fresh Objects: nothing cached
                        times.setdefault(("get", which, name), []).append(
                            time.perf_counter() - t0)
    # restore writes the tree (and records what it replaces): after every size is taken.
    for r in range(rounds):
        for name in (CODECS if r % 2 == 0 else CODECS[::-1]):
            for which in ("oldest", "newest"):
                vid = ids[name][which][0]
                t0 = time.perf_counter()
                run([*guardian, "restore", path, "--version", str(vid), "--store",
                     str(sides[name])], env=env)
                times.setdefault(("restore", which, name), []).append(time.perf_counter() - t0)
    return {k: median(v) for k, v in times.items()}


def _table(ws: Workspace, table: Table, tree: Path, work: Callable[[int], None], rounds: int,
           focus: Callable[[Path], bytes], reads: int) -> Table:
    """Record round 0 (the tree as it is) and ``rounds`` rounds of ``work(round)`` into both
    stores and git; then sizes, write and read times."""
    top = tree.parent
    env = ws.env()
    git = _Git(top / "git", tree, env)
    sides = {name: _Side(name, top / f"store-{name}", tree) for name in CODECS}
    try:
        progress(f"{table.name}: first snapshot, into each store and git")
        for side in sides.values():
            side.record(timed=False)
        git.commit("round 0")
        for r in range(1, rounds + 1):
            work(r)
            for name in (CODECS if r % 2 == 0 else CODECS[::-1]):
                sides[name].record()
            git.commit(f"round {r}")
            if r % 10 == 0:
                progress(f"{table.name}: round {r} of {rounds}")
        counts = {name: s.store.counts() for name, s in sides.items()}
        codecs = dict(sides["deltas"].store.db.execute(
            "SELECT codec, COUNT(*) FROM objects GROUP BY codec").fetchall())
        depth = sides["deltas"].store.db.execute(
            "SELECT COALESCE(MAX(depth), 0) FROM objects").fetchone()[0]
        write_s = {name: s.write_s for name, s in sides.items()}
    finally:
        for side in sides.values():
            side.close()
    versions = counts["deltas"]["versions"]
    if counts["whole"]["versions"] != versions:
        raise BenchError(f"the stores recorded {versions} and {counts['whole']['versions']} "
                         "versions of the same tree")
    progress(f"{table.name}: git gc --aggressive")
    git_loose = _du(top / "git")
    git_gc_s = git.gc()
    git_bytes = _du(top / "git")
    size = {name: _du(s.path) for name, s in sides.items()}
    rel = focus(tree)
    progress(f"{table.name}: show / restore of the oldest and newest version of "
             f"{os.fsdecode(rel)}, {reads}x each")
    t = _reads(ws, {n: s.path for n, s in sides.items()}, tree, rel, reads)
    empty_store, empty_git = _empty_sizes(ws)
    per = {name: size[name] / versions for name in CODECS}
    history = {name: (size[name] - empty_store) / versions for name in CODECS}
    git_history = (git_bytes - empty_git) / versions
    table.rows += [
        Row("on disk per version: deltas vs git gc --aggressive", per["deltas"], "B",
            git_bytes / versions, Goal("<=", 2.0, "ratio")),
        Row("history per version (minus an empty store / repo): deltas vs git",
            history["deltas"], "B", git_history, Goal("<=", 2.0, "ratio")),
        Row("on disk per version: whole copies (today) vs git gc --aggressive", per["whole"],
            "B", git_bytes / versions),
        Row("store size: deltas vs whole copies (today)", size["deltas"] / 1e6, "MB",
            size["whole"] / 1e6),
        Row(f"write: {rounds} rounds recorded, deltas vs today (s)", write_s["deltas"], "s",
            write_s["whole"]),
    ]
    for which in ("oldest", "newest"):
        table.rows.append(Row(f"`guardian show` of the {which} version, deltas vs today",
                              t[("show", which, "deltas")], "s", t[("show", which, "whole")],
                              Goal("<=", 2.0, "ratio")))
    for which in ("oldest", "newest"):
        table.rows.append(Row(f"`guardian restore` of the {which} version, deltas vs today",
                              t[("restore", which, "deltas")], "s",
                              t[("restore", which, "whole")], Goal("<=", 2.0, "ratio")))
    for which in ("oldest", "newest"):
        table.rows.append(Row(f"read in process (Objects.get) of the {which}, deltas vs today",
                              t[("get", which, "deltas")] * 1e3, "ms",
                              t[("get", which, "whole")] * 1e3))
    table.notes += [
        f"{versions:,} versions ({counts['deltas']['objects']:,} objects) in each store; "
        f"deltas store: {', '.join(f'{k} {v:,}' for k, v in sorted(codecs.items()))}, "
        f"deepest chain {depth} links",
        f"on disk: deltas store {size['deltas']:,} B, whole-copy store {size['whole']:,} B, "
        f".git {git_loose:,} B before gc, {git_bytes:,} B after `git gc --aggressive` "
        f"({git_gc_s:.1f} s); stored object bytes: deltas "
        f"{counts['deltas']['stored_bytes']:,} B, whole {counts['whole']['stored_bytes']:,} B",
        f"an empty store takes {empty_store:,} B (SQLite: a 16 KiB page for each of its "
        f"{empty_store // 16384} tables and indexes, before any history; tables most stores "
        "never write are created when first written), an empty bare git repository "
        f"{empty_git:,} B; 'history' rows subtract them; sizes are the bytes of every file "
        "under the store / .git (st_size: the database, WAL and its index, loose objects; "
        "git: packs, indexes, refs, hooks' samples)",
        f"reads: median of {reads} processes each (show/restore, interpreter start included) "
        f"and of {reads * 10} in-process reads, the codecs interleaved; restore of the "
        "newest runs after the oldest was restored, so it writes the file back",
    ]
    return table


def _empty_sizes(ws: Workspace) -> tuple[int, int]:
    """Bytes of a new, empty store and of a new, empty bare git repository."""
    from guardian.store.db import Store

    top = ws.dir("store", "empty")
    Store.open(top / "store", write=True, create=True).close()
    run(["git", "init", "-q", "--bare", str(top / "git")], env=ws.env())
    return _du(top / "store"), _du(top / "git")


def _text(rnd: random.Random, size: int) -> list[str]:
    words = ["".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(2, 9)))
             for _ in range(5000)]
    lines: list[str] = []
    total = 0
    while total < size:
        lines.append(" ".join(rnd.choice(words) for _ in range(10)))
        total += len(lines[-1]) + 1
    return lines


def edits(ws: Workspace, cfg: Config) -> Table:
    n = 51 if cfg.quick else 201
    table = Table("store.edits",
                  f"{n} versions of a 141 KB text file, one line changed per version",
                  "git (`git gc --aggressive` of a commit per version) for size; the same "
                  "store with today's codec (each version compressed on its own) for times")
    tree = ws.dir("store", "edits", "tree")
    rnd = random.Random(10)
    lines = _text(rnd, 141_000)
    f = tree / "notes.txt"
    f.write_text("\n".join(lines))

    def work(r: int) -> None:
        lines[rnd.randrange(len(lines))] = f"line changed in version {r}: " + " ".join(
            rnd.choice(lines).split()[:5])
        f.write_text("\n".join(lines))

    return _table(ws, table, tree, work, n - 1, lambda _t: b"notes.txt", cfg.repeats)


def stdlib(ws: Workspace, cfg: Config) -> Table:
    src = Path(sysconfig.get_paths()["stdlib"])
    rounds = 10 if cfg.quick else 50
    subset = "" if cfg.snapshot_limit is None else f" (first {cfg.snapshot_limit:,} files)"
    table = Table("store.stdlib",
                  f"a copy of {src}{subset}, then {rounds} rounds of a one-line edit to 5 % of "
                  "its files (text files chosen at random each round)",
                  "git (`git gc --aggressive` of a commit per round) for size; the same store "
                  "with today's codec for times")
    tree = ws.dir("store", "stdlib", "tree")
    progress(f"store.stdlib: copying {src}")
    n_files = copy_tree(src, tree, exclude_top=frozenset({"site-packages"}),
                        limit=cfg.snapshot_limit)
    texts: list[Path] = []
    for top, _dirs, files in os.walk(tree):
        texts += [Path(top) / f for f in files if f.endswith((".py", ".txt", ".rst", ".cfg"))
                  and not os.path.islink(Path(top) / f)]
    texts.sort()
    rnd = random.Random(50)
    per_round = max(1, n_files * 5 // 100)
    edited: dict[Path, int] = {}

    def work(r: int) -> None:
        for p in rnd.sample(texts, min(per_round, len(texts))):
            data = p.read_bytes().split(b"\n")
            i = rnd.randrange(len(data))
            data[i] = b"# edited in round %d: " % r + data[i][:40]
            p.write_bytes(b"\n".join(data))
            edited[p] = edited.get(p, 0) + 1

    def focus(t: Path) -> bytes:
        most = max(sorted(edited), key=lambda p: edited[p])
        return os.fsencode(most.relative_to(t))

    table = _table(ws, table, tree, work, rounds, focus, cfg.repeats)
    table.notes.append(f"{n_files:,} files copied; {per_round} edited per round; reads are "
                       f"of the file edited most often ({max(edited.values())} times)")
    return table


BENCHMARKS: dict[str, Callable[[Workspace, Config], Table]] = {
    "store.edits": edits, "store.stdlib": stdlib}
