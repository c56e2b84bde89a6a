"""Group "snapshot": `guardian snapshot` of real trees against git doing the same job."""

from __future__ import annotations

import contextlib
import os
import sys
import sysconfig
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.common import (
    Config,
    Goal,
    Row,
    Table,
    Workspace,
    copy_tree,
    guardian_argv,
    guardian_status,
    guardian_watch,
    is_ready,
    median,
    progress,
    run,
    timed,
)

#: The least any CPython re-scan can do: start, load the stat cache with sqlite3, walk with
#: ``os.scandir`` and compare each ``lstat``; no ignore rules, no fd anchoring, no output.
FLOOR_SCRIPT = """
import os, sqlite3, sys
con = sqlite3.connect("file:" + sys.argv[2] + "?mode=ro", uri=True)
cache = {bytes(r[0]): r[1:] for r in con.execute(
    "SELECT relpath, size, mtime_ns, ino FROM files WHERE live = 1")}
changed, stack, top = 0, [b""], os.fsencode(sys.argv[1])
while stack:
    d = stack.pop()
    with os.scandir(top + b"/" + d if d else top) as it:
        for e in it:
            rel = d + b"/" + e.name if d else e.name
            if e.is_dir(follow_symlinks=False):
                if e.name != b".git":
                    stack.append(rel)
            else:
                st = e.stat(follow_symlinks=False)
                changed += cache.get(rel) != (st.st_size, st.st_mtime_ns, st.st_ino)
"""


def _snapshot(ws: Workspace, cfg: Config, label: str, src: Path,
              exclude_top: frozenset[str]) -> Table:
    subset = "" if cfg.snapshot_limit is None else f", first {cfg.snapshot_limit:,} files"
    table = Table(
        f"snapshot.{label}",
        f"`guardian snapshot` of a fresh copy of {src}"
        + (f" without {', '.join(sorted(exclude_top))}" if exclude_top else "") + subset,
        "git on another fresh copy of the same tree: `git init -q` + `git add -A` for the "
        "first snapshot, `git status --porcelain` for a re-snapshot")
    env = ws.env()
    g_tree = ws.dir("snapshot", label, "guardian", "tree")
    git_tree = ws.dir("snapshot", label, "git", "tree")
    store = ws.root / "snapshot" / label / "guardian" / "store"
    progress(f"snapshot.{label}: copying {src} twice")
    n_files = copy_tree(src, g_tree, exclude_top=exclude_top, limit=cfg.snapshot_limit)
    copy_tree(src, git_tree, exclude_top=exclude_top, limit=cfg.snapshot_limit)
    os.sync()  # no writeback of the copies during the timings
    guardian = guardian_argv()
    # Warm each tool's executable and imports (not the trees: both copies are equally hot).
    run([*guardian, "--version"], env=env)
    run(["git", "--version"], env=env)

    progress(f"snapshot.{label}: first snapshot of {n_files:,} files (guardian, then git)")
    g_first = timed([*guardian, "snapshot", "--store", str(store)], env=env, cwd=g_tree)
    git_first = (timed(["git", "init", "-q"], env=env, cwd=git_tree)
                 + timed(["git", "add", "-A"], env=env, cwd=git_tree))
    before = guardian_status(store, env)
    git_files = run(["git", "ls-files", "-z"], env=env, cwd=git_tree,
                    capture=True).stdout.count("\0")

    progress(f"snapshot.{label}: re-snapshot of the unchanged tree, {cfg.repeats}x each")
    g_again: list[float] = []
    git_again: list[float] = []
    g_start: list[float] = []
    floor: list[float] = []
    for _ in range(cfg.repeats):  # interleaved, so both see the same machine
        g_again.append(timed([*guardian, "snapshot", "--store", str(store)], env=env,
                             cwd=g_tree))
        git_again.append(timed(["git", "status", "--porcelain"], env=env, cwd=git_tree))
        g_start.append(timed([*guardian, "--version"], env=env))
        floor.append(timed([sys.executable, "-c", FLOOR_SCRIPT, str(g_tree),
                            str(store / "guardian.db")], env=env))
    after = guardian_status(store, env)

    progress(f"snapshot.{label}: re-snapshot with a daemon watching the tree, {cfg.repeats}x")
    g_daemon: list[float] = []
    git_daemon: list[float] = []
    bare: list[float] = []  # the interpreter alone: what no Python client can go below
    with daemon(store, g_tree, env):
        for _ in range(cfg.repeats):
            g_daemon.append(timed([*guardian, "snapshot", "--store", str(store)], env=env,
                                  cwd=g_tree))
            git_daemon.append(timed(["git", "status", "--porcelain"], env=env, cwd=git_tree))
            bare.append(timed([sys.executable, "-c", "pass"], env=env))
    after_daemon = guardian_status(store, env)

    table.rows += [
        Row("first snapshot (new store)", g_first, "s", git_first, Goal("<=", 1.0, "ratio")),
        Row(f"re-snapshot, unchanged, no daemon (median of {cfg.repeats})", median(g_again),
            "s", median(git_again), Goal("<=", 1.5, "ratio")),
        Row(f"re-snapshot, unchanged, daemon running (median of {cfg.repeats})",
            median(g_daemon), "s", median(git_daemon), Goal("<=", 1.5, "ratio")),
        Row("(floor) bare CPython stat-cache re-scan, vs git status", median(floor), "s",
            median(git_again)),
        Row("re-snapshot, no daemon, vs that CPython floor", median(g_again), "s",
            median(floor)),
        Row("files recorded / indexed", before["files"], "", git_files),
        Row("(floor) python3 -c pass beside the daemon, vs git status", median(bare), "s",
            median(git_daemon)),
        Row("re-snapshot through the daemon vs python3 -c pass", median(g_daemon), "s",
            median(bare)),
    ]
    table.notes += [
        "(floor): python3 -c with sqlite3 loading the stat cache, os.scandir walk, one "
        "lstat compare per file; no ignore rules, no fd-anchored walk, no output: what no "
        "CPython re-scan can go below",
        "no daemon: a full stat scan against the store's stat cache; daemon running: the "
        "daemon answers from its watcher after a sync barrier (a cookie file through inotify), "
        "like git with fsmonitor",
        f"daemon-run spread: guardian {min(g_daemon):.3f}-{max(g_daemon):.3f} s",
        f"re-snapshot spread: guardian {min(g_again):.3f}-{max(g_again):.3f} s, "
        f"git {min(git_again):.3f}-{max(git_again):.3f} s; for reference, `guardian --version` "
        f"(interpreter + CLI start, no work) takes median {median(g_start):.3f} s",
        "wall time of the whole subprocess(es), interpreter start included; trees freshly "
        "copied (in page cache, synced first); each tool warmed once with --version; "
        "`guardian snapshot` stdout to /dev/null",
        f"{n_files:,} files copied; store {before['store_bytes'] / 1e6:.1f} MB; .git "
        f"{_du(git_tree / '.git') / 1e6:.1f} MB",
    ]
    if after_daemon["versions"] != before["versions"]:
        table.notes.append(f"ANOMALY: re-snapshots with the daemon added "
                           f"{after_daemon['versions'] - before['versions']} versions")
    if after["versions"] != before["versions"]:
        table.notes.append(f"ANOMALY: re-snapshots of the unchanged tree added "
                           f"{after['versions'] - before['versions']} versions")
    if before["files"] != n_files:
        table.notes.append(f"guardian recorded {before['files']:,} files of the {n_files:,} "
                           f"copied (git indexed {git_files:,})")
    return table


@contextlib.contextmanager
def daemon(store: Path, tree: Path, env: dict[str, str]) -> Iterator[None]:
    """`guardian watch` on the tree, ready (its baseline found nothing new), then stopped."""
    with guardian_watch(tree, store, env) as proc:
        proc.wait_for(is_ready, 300, "the daemon's ready event")
        yield


def _du(path: Path) -> int:
    return sum(os.lstat(os.path.join(top, f)).st_size
               for top, _, files in os.walk(path) for f in files)


def stdlib(ws: Workspace, cfg: Config) -> Table:
    return _snapshot(ws, cfg, "stdlib", Path(sysconfig.get_paths()["stdlib"]),
                     frozenset({"site-packages"}))


def site_packages(ws: Workspace, cfg: Config) -> Table:
    return _snapshot(ws, cfg, "site-packages", Path(sysconfig.get_paths()["purelib"]),
                     frozenset())


BENCHMARKS: dict[str, Callable[[Workspace, Config], Table]] = {
    "snapshot.stdlib": stdlib, "snapshot.site-packages": site_packages}
