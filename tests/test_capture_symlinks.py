"""Capture never reads through a symlink: a directory swapped for a link to somewhere outside
the root is recorded as a link, nothing outside is ever read into the store, and a protected
directory replaced that way is put back (issue 9, point 9)."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest

from guardian.capture.recorder import Recorder
from guardian.capture.scan import WalkReport, walk
from guardian.rules.ignore import IgnoreMatcher
from guardian.rules.rulefiles import RULE_FILE
from guardian.rules.settings import Settings
from guardian.store.db import Store

from .conftest import Cli, Watch, sha256

INSIDE = b'{"app": "inside", "n": 1}\n'
OUTSIDE = b'{"secret": "from outside the root"}\n'
ONLY_OUTSIDE = b"a file that exists only outside the root\n"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the root, with files a symlink swap would expose."""
    d = tmp_path / "outside"
    d.mkdir()
    (d / "app.json").write_bytes(OUTSIDE)
    (d / "only-outside.txt").write_bytes(ONLY_OUTSIDE)
    (d / "sub").mkdir()
    (d / "sub" / "only-deep.txt").write_bytes(ONLY_OUTSIDE + b"deep\n")
    return d


OUTSIDE_HASHES = {sha256(OUTSIDE), sha256(ONLY_OUTSIDE), sha256(ONLY_OUTSIDE + b"deep\n")}


def assert_nothing_from_outside(versions: list[dict]) -> None:
    leaked = [v for v in versions if v["sha256"] in OUTSIDE_HASHES
              or v["relpath"].endswith(("only-outside.txt", "only-deep.txt"))]
    assert not leaked, f"bytes or names from outside the root were recorded: {leaked}"


def settle(cli: Cli) -> None:
    """A barrier: the daemon has seen and recorded everything written before this call."""
    cli.json("snapshot")


# ------------------------------------------------------------------ the walk, in process
def test_a_directory_swapped_for_a_symlink_while_the_walk_runs_is_not_entered(
        root: Path, outside: Path) -> None:
    # Ten directories listed at once (the root holds no file, so the walk yields nothing
    # before it has pushed all ten); once it is inside one, the nine others become symlinks.
    for k in range(10):
        (root / f"d{k}").mkdir()
        (root / f"d{k}" / "app.json").write_bytes(INSIDE)
    base = os.fsencode(root)
    outside_inode = (outside / "app.json").stat().st_ino
    gen = walk(base, b"", IgnoreMatcher(base), WalkReport())
    first, _ = next(gen)
    entered = first.split(b"/")[0]
    swapped = [f"d{k}".encode() for k in range(10) if f"d{k}".encode() != entered]
    for name in swapped:
        os.rename(root / os.fsdecode(name), root.parent / f"moved-{os.fsdecode(name)}")
        os.symlink(outside, root / os.fsdecode(name))
    rest = dict(gen)
    assert not [r for r, st in rest.items() if st.st_ino == outside_inode], \
        "the walk listed a directory outside the root through a symlink"
    assert not [r for r in rest if b"only-" in r]
    # What took each directory's place is seen as what it is: a symlink.
    assert sorted(r for r, st in rest.items() if stat.S_ISLNK(st.st_mode)) \
        == sorted(swapped)


@pytest.fixture
def rec(tmp_path: Path, root: Path):
    store = Store.open(tmp_path / "store", write=True, create=True)
    r = Recorder(store, store.add_roots([root]), Settings())
    yield r
    r.close()
    store.close()


def test_reconcile_of_a_directory_now_a_symlink_records_the_link_not_what_it_points_at(
        root: Path, outside: Path, rec: Recorder) -> None:
    # What the daemon does when a directory event names conf/ (here without a daemon).
    (root / "conf").mkdir()
    (root / "conf" / "app.json").write_bytes(INSIDE)
    rec.reconcile(1, origin="scan", confirm_missing=True, baseline=True)
    os.rename(root / "conf", root / "conf.bak")
    os.symlink("../outside", root / "conf")
    for prefix in (b"conf", b""):
        rec.reconcile(1, prefix, origin="scan", confirm_missing=True)
    store = rec.store
    heads = store.live_files(1)
    assert set(heads) == {b"conf", b"conf.bak/app.json"}
    assert heads[b"conf"].hash == bytes.fromhex(sha256(b"../outside"))  # a link, as a link
    assert stat.S_ISLNK(heads[b"conf"].mode or 0)
    every = [v for rel in (b"conf", b"conf/app.json", b"conf/only-outside.txt",
                           b"conf.bak/app.json")
             for fid in [store.file_id(1, rel, create=False)] if fid is not None
             for v in store.versions_of(fid)]
    assert {v.relpath for v in every} == {b"conf", b"conf/app.json", b"conf.bak/app.json"}
    assert not [v for v in every if v.sha256 in OUTSIDE_HASHES]


# Guards of the anchored walk and reads themselves (they hold directory fds: none may be lost,
# leaked or exhausted, whatever the tree's shape).
def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_deep_tree_with_a_subdirectory_pending_at_every_level_is_walked_whole(
        root: Path) -> None:
    # 400 levels, each with a leaf directory still to walk when the walk goes deeper: far
    # more directories with pending subdirectories than the walk keeps fds for.
    expected = set()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    rel = b""
    for _ in range(400):
        os.mkdir("leaf", dir_fd=fd)
        os.close(os.open("leaf/f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
        expected.add(rel + b"leaf/f")
        os.mkdir("d", dir_fd=fd)
        nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd, rel = nfd, rel + b"d/"
    os.close(fd)
    base = os.fsencode(root)
    before = _open_fds()
    most = 0
    got = set()
    for r, _st in walk(base, b"", IgnoreMatcher(base), WalkReport()):
        got.add(r)
        most = max(most, _open_fds())
    assert got == expected
    assert most - before <= 70 and _open_fds() == before


def test_one_capture_across_many_directories_records_all_and_keeps_no_fd(
        root: Path, rec: Recorder) -> None:
    keys = []
    for k in range(300):  # more directories than a batch keeps fds for
        (root / f"d{k}" / "in").mkdir(parents=True)
        (root / f"d{k}" / "in" / "f.txt").write_bytes(b"%d\n" % k)
        keys.append((1, f"d{k}/in/f.txt".encode()))
    before = _open_fds()
    res = rec.capture(keys, origin="snapshot", confirm_missing=True)
    assert sorted(r.relpath for r in res.recorded) == sorted(k for _, k in keys)
    assert {r.sha256 for r in res.recorded} == {sha256(b"%d\n" % k) for k in range(300)}
    assert _open_fds() == before


# ------------------------------------------------------------------ the daemon
def test_swapping_a_directory_for_a_symlink_never_records_outside_bytes(
        root: Path, outside: Path, cli: Cli, watch) -> None:
    conf, bak = root / "conf", root / "conf.bak"
    conf.mkdir()
    (conf / "app.json").write_bytes(INSIDE)
    (conf / "sub").mkdir()
    (conf / "sub" / "deep.txt").write_bytes(b"inside deep\n")
    w: Watch = watch(root)
    for i in range(60):
        # A write the daemon is about to read, then the swap, back to back.
        (conf / "app.json").write_bytes(b'{"i": %d}\n' % i)
        os.rename(conf, bak)
        os.symlink("../outside", conf)
        if i % 2:  # half the rounds: the daemon records the symlinked state before the swap back
            settle(cli)
        os.unlink(conf)
        os.rename(bak, conf)
    settle(cli)
    versions = cli.log()
    assert_nothing_from_outside(versions)
    assert any(v["relpath"] == "conf" and v["type"] == "symlink"
               and v["sha256"] == sha256(b"../outside") for v in versions)
    # Capture kept working: every write the daemon was given time to see is recorded.
    seen = {v["sha256"] for v in versions}
    assert not [i for i in range(1, 60, 2) if sha256(b'{"i": %d}\n' % i) not in seen]
    assert w.proc.poll() is None
    assert not [e for e in w.events if e["event"] == "error"]


def test_a_directory_flipping_to_a_symlink_while_capture_reads_never_leaks_outside_bytes(
        root: Path, outside: Path, cli: Cli, watch) -> None:
    # The window between "is the parent a directory?" and the read: one thread flips conf/
    # between the real directory and a symlink to outside as fast as it can, while writes
    # (through the real directory's fd, so none lands outside) keep the daemon reading it.
    conf, bak = root / "conf", root / "conf.bak"
    conf.mkdir()
    (conf / "app.json").write_bytes(INSIDE)
    w: Watch = watch(root)
    stop = threading.Event()
    flips = 0

    def flip() -> None:
        nonlocal flips
        while not stop.is_set():
            os.rename(conf, bak)
            os.symlink("../outside", conf)
            os.unlink(conf)
            os.rename(bak, conf)
            flips += 1

    dfd = os.open(conf, os.O_RDONLY | os.O_DIRECTORY)
    t = threading.Thread(target=flip)
    t.start()
    try:
        deadline = time.monotonic() + 3
        i = 0
        while time.monotonic() < deadline:
            fd = os.open("app.json", os.O_WRONLY | os.O_TRUNC, dir_fd=dfd)
            os.write(fd, b'{"i": %d}\n' % i)
            os.close(fd)
            i += 1
            time.sleep(0.002)  # a writer's pace, not synchronisation
    finally:
        stop.set()
        t.join()
        os.close(dfd)
    assert flips > 100 and conf.is_dir() and not conf.is_symlink()
    settle(cli)
    assert_nothing_from_outside(cli.log())
    assert w.proc.poll() is None


def test_a_protected_directory_replaced_by_a_symlink_is_put_back_and_alerted(
        root: Path, outside: Path, cli: Cli, watch) -> None:
    (root / RULE_FILE).write_text('[[rule]]\npaths = ["conf/**"]\nprotect = true\n')
    conf = root / "conf"
    (conf / "deep").mkdir(parents=True)
    (conf / "app.json").write_bytes(INSIDE)
    (conf / "deep" / "db.yaml").write_bytes(b"url: db\n")
    w = watch(root)
    m = w.mark()
    os.rename(conf, root / "conf.bak")  # mv conf conf.bak; ln -s ../outside conf
    os.symlink("../outside", conf)
    alerts = [w.wait(lambda e, p=p: e["event"] == "alert" and e["kind"] == "reverted"
                     and e["path"] == str(p), what=f"a reverted alert for {p}", start=m)
              for p in (conf / "app.json", conf / "deep" / "db.yaml")]
    # The first revert says it removed the symlink standing where conf/ was.
    assert [a for a in alerts if f"symlink at {conf} was removed first" in a["message"]]
    settle(cli)
    # conf/ is a real directory again, with its protected files as they were.
    assert conf.is_dir() and not conf.is_symlink()
    assert (conf / "app.json").read_bytes() == INSIDE
    assert (conf / "deep" / "db.yaml").read_bytes() == b"url: db\n"
    assert not (conf / "only-outside.txt").exists()
    # Outside is untouched; conf.bak (new and unprotected) stays.
    assert sorted(p.name for p in outside.iterdir()) == ["app.json", "only-outside.txt", "sub"]
    assert (outside / "app.json").read_bytes() == OUTSIDE
    assert (root / "conf.bak" / "app.json").read_bytes() == INSIDE
    versions = cli.log()
    assert_nothing_from_outside(versions)
    # The link is kept as a link version, then its removal; the file is reverted.
    link = [v for v in reversed(versions) if v["relpath"] == "conf"]
    assert any(v["type"] == "symlink" and v["sha256"] == sha256(b"../outside") for v in link)
    assert link[-1]["present"] is False and link[-1]["origin"] == "guardian"
    app = [v for v in versions if v["relpath"] == "conf/app.json"]
    assert app[0]["kind"] == "reverted" and app[0]["sha256"] == sha256(INSIDE)
    stored = cli.json("alerts")["alerts"]
    assert any(a["kind"] == "reverted" and a["path"] == str(conf / "app.json") for a in stored)
    assert not [e for e in w.events if e["event"] in ("error", "alert")
                and e.get("kind") == "revert-failed"]
