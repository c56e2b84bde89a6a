"""Trees deeper than Python's recursion limit, and a watcher whose threads die.

Python 3.11's ``os.walk`` recurses once per level: a tree ~1,000 levels deep used to kill
watchdog's thread (raw traceback, nothing recorded until the 600 s reconcile, ``degraded``
false). Nothing may recurse on a tree's depth, and a watcher thread that dies anyway must be
reported and replaced at once.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Cli, Watch, sha256, wait_until

DEPTH = 1_200


def remove_tree(top: Path) -> None:
    """``rm -rf`` with an explicit stack: shutil.rmtree recurses on depth in Python 3.11, so a
    deep tree left in pytest's temp dirs would crash the next session's clean-up."""
    stack: list[tuple[bytes, bool]] = [(os.fsencode(top), False)]
    while stack:
        d, emptied = stack.pop()
        if emptied:
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(d)
            continue
        stack.append((d, True))
        try:
            it = os.scandir(d)
        except (FileNotFoundError, NotADirectoryError):
            continue
        with it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((entry.path, False))
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)


@pytest.fixture(autouse=True)
def _no_deep_tree_left(tmp_path: Path) -> Iterator[None]:
    yield
    for parent in (tmp_path, *(p for p in tmp_path.iterdir() if p.is_dir())):
        tree = parent / "tree"
        if tree.is_dir() and not tree.is_symlink():
            remove_tree(tree)


def make_deep_tree(base: Path, depth: int = DEPTH, leaf: bytes = b"deep leaf\n") -> Path:
    """``base/d/d/…/d/leaf.txt`` ``depth`` levels down, made through directory fds (a path
    this long would do too, but this is how a hostile tarball or a script would do it)."""
    base.mkdir(parents=True, exist_ok=True)
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        f = os.open("leaf.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(f, leaf)
        os.close(f)
    finally:
        os.close(fd)
    return base.joinpath(*(["d"] * depth), "leaf.txt")


def test_deep_tree_moved_in_is_recorded_promptly(root: Path, cli: Cli, watch,
                                                 tmp_path: Path) -> None:
    (root / "a.txt").write_text("before")
    outside = tmp_path / "outside"
    make_deep_tree(outside / "tree")
    w = watch(root)  # the default reconcile interval (600 s): only the watcher can be this fast
    m = w.mark()
    t0 = time.monotonic()
    (outside / "tree").rename(root / "tree")
    leaf = root.joinpath("tree", *(["d"] * DEPTH), "leaf.txt")
    w.version(leaf, "created", start=m, timeout=30)
    # The watcher is still alive: an ordinary write right after is recorded by it too.
    (root / "b.txt").write_text("after")
    assert w.version(root / "b.txt", "created", start=m, timeout=30)["origin"] == "watcher"
    elapsed = time.monotonic() - t0
    assert elapsed < 30, elapsed
    # Below the deep tree too: a new file at the bottom is an event on a watch there.
    (leaf.parent / "new.txt").write_bytes(b"new at the bottom")
    assert w.version(leaf.parent / "new.txt", "created", start=m)["origin"] == "watcher"
    status = cli.json("status")
    assert status["degraded"] is False and status["degraded_causes"] == []
    assert cli.log(leaf)[0]["sha256"] == sha256(b"deep leaf\n")
    assert not [e for e in w.events if e["event"] in ("error", "alert")], w.events[-5:]
    assert w.stop() == 0


def test_watch_starts_with_a_deep_tree_present(root: Path, cli: Cli, env: dict[str, str],
                                               store: Path) -> None:
    leaf = make_deep_tree(root / "tree")
    for i in range(2):  # a new store, then a restart on it (the stat cache walk)
        w = Watch([root], store, env)
        try:
            assert w.ready()["files"] == 1
            m = w.mark()
            leaf.write_bytes(f"changed at depth, run {i}".encode())
            w.version(leaf, "modified", start=m)
            assert cli.json("status")["degraded"] is False
            assert w.stop() == 0
        finally:
            w.close()
        assert not w.raw, w.raw[:5]


def test_restore_of_a_directory_deep_in_a_tree(root: Path, cli: Cli, watch) -> None:
    leaf = make_deep_tree(root / "tree")
    cli.run("snapshot", check=True, cwd=root)
    leaf.write_bytes(b"overwritten")
    cli.run("snapshot", check=True, cwd=root)
    first = cli.log(leaf)[-1]["id"]
    p = cli.run("restore", str(leaf), "--version", str(first), cwd=root)
    assert p.returncode == 0, p.stderr
    assert leaf.read_bytes() == b"deep leaf\n"
    wait_until(lambda: cli.log(leaf)[0]["kind"] == "restored", what="restore recorded")


@pytest.mark.parametrize("point", ["watcher.event", "watcher.emit"])
def test_a_dead_watcher_thread_is_reported_restarted_and_reconciled(
        root: Path, cli: Cli, watch, env: dict[str, str], point: str) -> None:
    """A real exception in one of watchdog's threads (the inotify reader, or the emitter),
    injected at the first event it handles: before, the thread died with a traceback on
    stderr and nothing more was recorded until the 600 s reconcile, with ``degraded`` false."""
    w = watch(root, env=dict(env, GUARDIAN_FAULT=f"{point}:EIO@0"))
    m = w.mark()
    (root / "lost.txt").write_text("written as the watcher died")
    warning = w.wait(lambda e: e["event"] == "warning" and e.get("source") == "watcher"
                     and "file watcher failed" in e["message"], start=m, what="a warning")
    assert "EIO" in warning["message"] or "Input/output error" in warning["message"]
    alert = w.wait(lambda e: e["event"] == "alert" and e["kind"] == "watcher", start=m)
    assert alert["severity"] == "critical"
    w.wait(lambda e: e["event"] == "health" and e["degraded"] is True
           and [c["cause"] for c in e["causes"]] == ["watcher"], start=m)
    # The write the dead thread never delivered: found by the reconcile after the restart.
    w.version(root / "lost.txt", "created", start=m)
    w.wait(lambda e: e["event"] == "reconcile" and e["reason"] == "watcher-restart", start=m)
    w.wait(lambda e: e["event"] == "health" and e["degraded"] is False, start=m,
           what="healthy again")
    status = cli.json("status")
    assert status["degraded"] is False and status["degraded_causes"] == []
    # The new observer delivers events: a write now is the watcher's, not a rescan's.
    m2 = w.mark()
    (root / "after.txt").write_text("after the restart")
    assert w.version(root / "after.txt", "created", start=m2)["origin"] == "watcher"
    (root / "sub").mkdir()
    (root / "sub" / "deeper.txt").write_text("in a new directory")
    w.version(root / "sub" / "deeper.txt", start=m2)
    stored = cli.json("alerts")["alerts"]
    assert [a["kind"] for a in stored] == ["watcher"], stored
    assert w.stop() == 0
