"""Restore goes through the batch engine: conflict-checked, journaled, all or nothing.

A directory restore (or a file's) is one batch: what is on disk is read under the targets'
locks and stored first; a target another program changes after that read is never
overwritten (the restore is refused, naming it, and their bytes are recorded); a kill at any
step leaves, after ``guardian recover``, the tree wholly as before or wholly as at TIME.
Removals come before writes, so a file that became a directory (or the reverse) is restored;
a file Guardian found at its start is left alone by a restore to before that start.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import Cli, sha256, wait_until

Tree = dict[str, tuple[Any, ...]]


def snap(cli: Cli, *paths: Path) -> dict[str, Any]:
    return cli.json("snapshot", *map(str, paths), cwd=cli.cwd / "root")


def now_spec() -> str:
    """TIME meaning "now", after every version recorded so far."""
    return f"@{time.time_ns() / 1e9:.6f}"


def tree(top: Path) -> Tree:
    """Everything under ``top`` as a user sees it: files with bytes and mode, links with
    their target, directories (iteratively: no recursion on depth)."""
    out: Tree = {}
    stack = [top]
    while stack:
        d = stack.pop()
        with os.scandir(d) as entries:
            for entry in entries:
                rel = os.path.relpath(entry.path, top)
                if entry.is_symlink():
                    out[rel] = ("link", os.readlink(entry.path))
                elif entry.is_dir():
                    out[rel] = ("dir",)
                    stack.append(Path(entry.path))
                elif entry.is_file():
                    out[rel] = ("file", Path(entry.path).read_bytes(),
                                entry.stat().st_mode & 0o777)
                else:
                    out[rel] = ("special",)
    return out


def temps(root: Path) -> list[str]:
    return [str(p) for p in root.rglob(".~guardian.*")]


def stored(cli: Cli, path: Path) -> set[str]:
    return {v["sha256"] for v in cli.log(path) if v["sha256"]}


def rmtree_deep(top: Path) -> None:
    """shutil.rmtree recurses on depth; this does not."""
    stack = [str(top)]
    while stack:
        d = stack[-1]
        subdirs = []
        with os.scandir(d) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    subdirs.append(entry.path)
                else:
                    os.unlink(entry.path)
        if subdirs:
            stack += subdirs
        else:
            os.rmdir(stack.pop())


# ----------------------------------------------------------------------------- a scenario
def make_then(d: Path) -> None:
    """The tree at TIME: files, a file `x`, a directory `a/`, a symlink, a deep file."""
    (d / "a").mkdir(parents=True)
    (d / "keep.txt").write_text("keep\n")
    (d / "edit.txt").write_text("edit v1\n")
    (d / "gone.txt").write_text("gone v1\n")
    (d / "tool.sh").write_text("#!/bin/sh\n")
    os.chmod(d / "tool.sh", 0o750)
    (d / "x").write_text("x was a file\n")
    (d / "a" / "f.txt").write_text("a/f v1\n")
    (d / "link").symlink_to("keep.txt")
    (d / "deep" / "er").mkdir(parents=True)
    (d / "deep" / "er" / "file.txt").write_text("deep\n")


def make_now(d: Path) -> None:
    """The tree since: edits, a deletion, type changes both ways, a new file, a relinked
    symlink, a removed subtree."""
    (d / "edit.txt").write_text("edit v2\n")
    (d / "gone.txt").unlink()
    os.chmod(d / "tool.sh", 0o644)
    (d / "x").unlink()
    (d / "x").mkdir()
    (d / "x" / "y.txt").write_text("x/y is new\n")
    (d / "a" / "f.txt").unlink()
    (d / "a").rmdir()
    (d / "a").write_text("a is a file now\n")
    (d / "link").unlink()
    (d / "link").symlink_to("edit.txt")
    (d / "deep" / "er" / "file.txt").unlink()
    (d / "deep" / "er").rmdir()
    (d / "deep").rmdir()
    (d / "new").mkdir()
    (d / "new" / "made.txt").write_text("created after TIME\n")


def scenario(cli: Cli, root: Path) -> tuple[Path, str, Tree, Tree]:
    d = root / "d"
    make_then(d)
    snap(cli)
    at = now_spec()
    then = tree(d)
    make_now(d)
    snap(cli)
    return d, at, then, tree(d)


def restore(cli: Cli, *args: str, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[bytes]:
    return cli.run("restore", *args, env=env, cwd=cli.cwd / "root")


# ----------------------------------------------------------------------------- 8. type changes
def test_type_changes_are_restored_removals_first(cli: Cli, root: Path) -> None:
    """At TIME: file `x`, dir `a/`; now: dir `x/` (x/y.txt) and file `a`. The restore
    removes x/y.txt, the emptied x/, and `a`, then writes `a/f.txt` and `x`."""
    d, at, then, now = scenario(cli, root)
    dry = json.loads(restore(cli, str(d), "--at", at, "--dry-run", "--json").stdout)
    assert tree(d) == now  # a dry run changes nothing
    p = restore(cli, str(d), "--at", at, "--json", "--session", "s-8")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert tree(d) == then
    actions = {c["relpath"]: c["action"] for c in out["changes"]}
    assert actions == {c["relpath"]: c["action"] for c in dry["changes"]}
    assert actions == {"d/edit.txt": "write", "d/gone.txt": "write", "d/tool.sh": "write",
                       "d/x": "write", "d/x/y.txt": "delete", "d/a": "delete",
                       "d/a/f.txt": "write", "d/link": "write", "d/deep/er/file.txt": "write",
                       "d/new/made.txt": "delete"}
    assert sorted(out["removed_dirs"]) == [str(d / "new"), str(d / "x")]
    # Nothing lost: every content the restore replaced or removed is in the store.
    for rel, entry in now.items():
        if entry[0] == "file":
            assert sha256(entry[1]) in stored(cli, d / rel), rel
    x = cli.log(d / "x")
    assert (x[0]["kind"], x[0]["origin"], x[0]["session"]) == ("restored", "restore", "s-8")
    assert x[0]["note"].startswith("restored to ")
    y = cli.log(d / "x" / "y.txt")[0]
    assert (y["kind"], y["origin"], y["present"]) == ("deleted", "restore", False)
    assert not temps(root) and cli.json("verify")["ok"] is True
    # Restoring again changes nothing.
    again = json.loads(restore(cli, str(d), "--at", at, "--json").stdout)
    assert again["changes"] == [] and again["removed_dirs"] == []


def test_a_directory_restore_through_the_daemon(cli: Cli, root: Path, watch) -> None:
    """The same restore inside a running daemon: its watcher sees every change of the
    restore as already recorded (no version of its own follows), and it keeps running."""
    d = root / "d"
    make_then(d)
    w = watch(root)
    at = now_spec()
    then = tree(d)
    make_now(d)
    cli.json("snapshot", "--full", str(d))  # every change recorded (a scan, not the events)
    before = max(v["id"] for v in cli.log(root))
    m = w.mark()
    out = cli.json("restore", str(d), "--at", at)
    assert tree(d) == then
    w.version(d / "x", "restored", start=m)
    cli.json("snapshot", str(d))  # the watcher has seen the restore's renames and removals
    after = [v for v in cli.log(root) if v["id"] > before]
    assert {v["origin"] for v in after} == {"restore"}, [
        (v["relpath"], v["kind"], v["origin"], v["note"]) for v in after]
    assert len(after) == len(out["changes"])
    assert sorted(out["removed_dirs"]) == [str(d / "new"), str(d / "x")]
    assert w.proc.poll() is None


@pytest.mark.parametrize("blocker", ["ignored", "fifo"])
def test_a_directory_to_replace_holding_untracked_files_is_refused(cli: Cli, root: Path,
                                                                   blocker: str) -> None:
    d = root / "d"
    d.mkdir()
    (d / ".gitignore").write_text("*.log\n")
    (d / "x").write_text("x was a file\n")
    snap(cli)
    at = now_spec()
    (d / "x").unlink()
    (d / "x").mkdir()
    (d / "x" / "y.txt").write_text("tracked\n")
    if blocker == "ignored":
        (d / "x" / "junk.log").write_text("ignored: never recorded\n")
        name = "junk.log"
    else:
        os.mkfifo(d / "x" / "pipe")
        name = "pipe"
    snap(cli)
    before = tree(d)
    for dry in ([], ["--dry-run"]):
        p = restore(cli, str(d), "--at", at, *dry)
        assert p.returncode == 1, (dry, p.returncode, p.stderr)
        err = p.stderr.decode()
        assert str(d / "x" / name) in err and err.count("\n") == 1, err
        assert tree(d) == before
    p = restore(cli, str(d), "--at", at, "--json")
    error = json.loads(p.stdout)["error"]
    assert p.returncode == 1 and error["category"] == "conflict"
    assert error["path"] == str(d / "x" / name) and error["rolled_back"] is False
    assert not temps(root)


# ----------------------------------------------------------------------------- symlinks
def test_a_symlink_version_is_restored_as_a_link(cli: Cli, root: Path) -> None:
    (root / "target.txt").write_text("t\n")
    link = root / "link"
    link.symlink_to("target.txt")
    snap(cli)
    [v] = cli.log(link)
    assert v["type"] == "symlink"
    # Now a directory stands where the link was.
    link.unlink()
    link.mkdir()
    (link / "inner.txt").write_text("inside the directory\n")
    snap(cli)
    p = restore(cli, str(link), "--version", str(v["id"]), "--json")
    assert p.returncode == 0, p.stderr
    assert link.is_symlink() and os.readlink(link) == "target.txt"
    top = cli.log(link)[0]
    assert (top["kind"], top["type"], top["origin"]) == ("restored", "symlink", "restore")
    assert top["note"] == f"from version {v['id']}"
    assert sha256(b"inside the directory\n") in stored(cli, root)
    # A regular file where the link was, and a kill right after the commit point: `recover`
    # completes the restore, with a link.
    link.unlink()
    link.write_text("a file now\n")
    snap(cli)
    env = dict(cli.env, GUARDIAN_FAULT="batch.committed:kill")
    assert restore(cli, str(link), "--version", str(v["id"]), env=env).returncode == -9
    [b] = cli.json("recover")["batches"]
    assert b["outcome"] == "completed"
    assert link.is_symlink() and os.readlink(link) == "target.txt"
    assert cli.log(link)[0]["kind"] == "restored" and not temps(root)


# ----------------------------------------------------------------------------- crash safety
BEFORE_COMMIT = ["batch.start", "batch.locked", "batch.prepare", "batch.temp_write@2",
                 "batch.commit"]
AFTER_COMMIT = ["batch.synced", "batch.committed", "batch.rename@2", "batch.rename@7",
                "batch.applied", "batch.verify", "batch.done"]


def _fault(point: str, action: str) -> str:
    name, _, nth = point.partition("@")
    return f"{name}:{action}" + (f"@{nth}" if nth else "")


@pytest.mark.parametrize("sync", ["syncfs", "fsync"])
@pytest.mark.parametrize("point", BEFORE_COMMIT + AFTER_COMMIT)
def test_a_kill_at_any_step_of_a_directory_restore(cli: Cli, root: Path, point: str,
                                                    sync: str) -> None:
    d, at, then, now = scenario(cli, root)
    env = dict(cli.env, GUARDIAN_FAULT=_fault(point, "kill"))
    if sync == "fsync":
        env["GUARDIAN_NO_SYNCFS"] = "1"
    p = restore(cli, str(d), "--at", at, env=env)
    assert p.returncode == -signal.SIGKILL, (p.returncode, p.stderr)
    cli.json("recover")
    assert tree(d) == (then if point in AFTER_COMMIT else now)
    assert not temps(root) and cli.json("verify")["ok"] is True
    for rel, entry in now.items():  # nothing lost from the store
        if entry[0] == "file":
            assert sha256(entry[1]) in stored(cli, d / rel), rel
    # Once recovered, the restore runs (or finds nothing to do).
    assert restore(cli, str(d), "--at", at).returncode == 0
    assert tree(d) == then


@pytest.mark.parametrize("point", BEFORE_COMMIT + AFTER_COMMIT)
def test_a_failure_at_any_step_of_a_restore_changes_nothing(cli: Cli, root: Path,
                                                             point: str) -> None:
    d, at, _then, now = scenario(cli, root)
    env = dict(cli.env, GUARDIAN_FAULT=_fault(point, "EIO"))
    p = restore(cli, str(d), "--at", at, env=env)
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert b"injected at" in p.stderr and p.stderr.count(b"\n") == 1, p.stderr
    assert tree(d) == now
    assert not temps(root) and cli.json("verify")["ok"] is True


# ------------------------------------------------------------------------- 7. before the store
def test_a_restore_to_before_the_store_existed_refuses(cli: Cli, root: Path, watch) -> None:
    (root / "src").mkdir()
    for i in range(5):
        (root / "src" / f"m{i}.py").write_text(f"x = {i}\n")
    (root / "README").write_text("readme\n")
    watch(root)  # a new store: everything is a baseline
    before = tree(root)
    for dry in ([], ["--dry-run"]):
        p = cli.run("restore", ".", "--at", "1h", *dry, cwd=root)
        assert p.returncode == 2, (dry, p.returncode, p.stdout, p.stderr)
        err = p.stderr.decode()
        assert "no version recorded at or before" in err and "earliest" in err, err
        assert err.count("\n") == 1
        assert tree(root) == before
    assert [v["kind"] for v in cli.log(root / "README")] == ["baseline"]


def test_files_found_at_guardians_start_are_left_alone(cli: Cli, root: Path, watch) -> None:
    """A file whose first version is the baseline existed before Guardian started: a restore
    to before that start leaves it (and says so); a file created after TIME goes."""
    (root / "early.txt").write_text("early v1\n")
    (root / "base.txt").write_text("was there before guardian\n")
    (root / "sub").mkdir()
    (root / "sub" / "base2.txt").write_text("so was this\n")
    snap(cli, root / "early.txt")  # the store begins with this one file
    at = now_spec()
    w = watch(root)  # its baseline: base.txt and sub/base2.txt
    assert {v["kind"] for v in cli.log(root / "sub")} == {"baseline"}
    m = w.mark()
    (root / "new.txt").write_text("created after TIME\n")
    (root / "early.txt").write_text("early v2\n")
    w.version(root / "new.txt", "created", start=m)
    w.version(root / "early.txt", "modified", start=m)
    assert w.stop() == 0
    dry = cli.json("restore", ".", "--at", at, "--dry-run", cwd=root)
    out = cli.json("restore", ".", "--at", at, cwd=root)
    for res in (dry, out):
        assert {c["relpath"]: c["action"] for c in res["changes"]} == {
            "early.txt": "write", "new.txt": "delete"}
        assert {s["path"]: s["reason"] for s in res["skipped"]} == {
            str(root / p): "existed before Guardian started recording; left as is"
            for p in ("base.txt", "sub/base2.txt")}
    assert (root / "base.txt").read_text() == "was there before guardian\n"
    assert (root / "sub" / "base2.txt").read_text() == "so was this\n"
    assert (root / "early.txt").read_text() == "early v1\n" and not (root / "new.txt").exists()
    text = cli.run("restore", ".", "--at", at, "--dry-run", cwd=root)
    assert b"base.txt: existed before Guardian started recording; left as is" in text.stderr


# ----------------------------------------------------------------------------- 18. messages
def test_restoring_a_path_with_no_versions_says_so(cli: Cli, root: Path) -> None:
    (root / "dir").mkdir()
    (root / "dir" / "f.txt").write_text("f\n")
    snap(cli)
    p = restore(cli, str(root / "nonexist.txt"))
    assert p.returncode == 2
    assert p.stderr.decode().endswith("nonexist.txt: no recorded versions\n"), p.stderr
    p = restore(cli, str(root / "nonexist.txt"), "--at", "1m")
    assert p.returncode == 2 and b"no recorded versions" in p.stderr, p.stderr
    p = restore(cli, str(root / "dir"))
    assert p.returncode == 2 and b"is a directory: restoring it needs --at TIME" in p.stderr
    p = restore(cli, str(root / "dir"), "--version", "1")
    assert p.returncode == 2, p.stderr
    assert b"is a directory: --version names a file's version; use --at TIME" in p.stderr


def test_recover_sweeps_temps_in_a_very_deep_tree(cli: Cli, root: Path) -> None:
    snap(cli)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(1200):  # pathlib's mkdir(parents=True) recurses on depth too
            os.mkdir("d", dir_fd=fd)
            fd, up = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd), fd
            os.close(up)
        temp = ".~guardian.f.txt.b7.0a1b2c3d"
        os.close(os.open(temp, os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd))
        out = cli.json("recover", "--sweep")
        assert out["temps_removed"] == 1
        assert temp not in os.listdir(fd)
    finally:
        os.close(fd)
        rmtree_deep(root / "d")


def _stopped(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "T"


@pytest.mark.parametrize("action", ["write", "delete"])
def test_a_file_replaced_right_after_the_last_check_is_kept(cli: Cli, root: Path,
                                                             action: str) -> None:
    """Another program replaces the file between the restore's last check of it and its
    rename (the restore is stopped right there): theirs is never replaced or deleted."""
    d = root / "d"
    d.mkdir()
    f = d / "f.txt"
    (d / "other.txt").write_text("other v1\n")
    if action == "write":
        f.write_text("v1\n")
    snap(cli)
    at = now_spec()
    (d / "other.txt").write_text("other v2\n")
    f.write_text("v2, created or changed since\n")
    snap(cli)
    env = dict(cli.env, GUARDIAN_FAULT="batch.replace:stop")
    proc = subprocess.Popen([sys.executable, "-m", "guardian", "restore", str(d), "--at", at,
                             "--store", str(cli.store)], env=env, stderr=subprocess.PIPE)
    theirs = b"theirs, saved at the worst moment\n"
    try:
        wait_until(lambda: _stopped(proc.pid), what="the restore to stop before its rename")
        tmp = d / "f.txt.saving"
        tmp.write_bytes(theirs)
        os.replace(tmp, f)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    assert proc.stderr is not None
    with proc.stderr:
        err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 1, err
    assert "changed while the restore ran" in err and str(f) in err, err
    assert f.read_bytes() == theirs
    assert (d / "other.txt").read_text() == "other v2\n"  # all or nothing
    assert sha256(theirs) in stored(cli, f)
    assert not temps(root)


def test_a_file_open_for_writing_is_not_replaced(cli: Cli, root: Path) -> None:
    """A write in progress (the file opened and truncated, its bytes still to come) would
    land in the replaced file and be lost: the restore is refused instead."""
    f = root / "f.txt"
    f.write_text("v1\n")
    snap(cli)
    [v1] = cli.log(f)
    f.write_text("v2\n")
    snap(cli)
    with open(f, "wb") as writer:  # an editor writing in place, mid-save
        p = cli.run("restore", str(f), "--version", str(v1["id"]))
        writer.write(b"the editor's save\n")
    assert p.returncode == 1, p.stderr
    assert b"open for writing" in p.stderr and p.stderr.count(b"\n") == 1, p.stderr
    assert f.read_bytes() == b"the editor's save\n"
    assert sha256(b"v2\n") in stored(cli, f)


# ------------------------------------------------------------------------- 6. concurrent writers
class Writer(threading.Thread):
    """Writes unique content to files (each at most once, so no write of its own can hide
    another), at a steady pace, until stopped."""

    def __init__(self, paths: list[Path], pace_s: float) -> None:
        super().__init__(daemon=True)
        self.paths = paths
        self.pace_s = pace_s
        self.stop = threading.Event()
        self.wrote: dict[Path, bytes] = {}

    def run(self) -> None:
        token = secrets.token_hex(4)
        for n, path in enumerate(self.paths):
            if self.stop.is_set():
                return
            data = f"writer {token} {n}\n".encode()
            path.write_bytes(data)
            self.wrote[path] = data
            self.stop.wait(self.pace_s)  # a steady pace, not a synchronisation


def test_a_writer_during_a_directory_restore_loses_nothing(cli: Cli, root: Path,
                                                            watch) -> None:
    """2,000 files, the daemon running, a writer writing some of them while the restore
    runs: every content it wrote is in the store afterwards, and the restore either
    completed or was refused naming what changed (all or nothing either way)."""
    big = root / "big"
    big.mkdir()
    files = [big / f"f{i:04}.txt" for i in range(2000)]
    for i, f in enumerate(files):
        f.write_text(f"v1 {i}\n")
    watch(root)
    at = now_spec()
    for i, f in enumerate(files):
        f.write_text(f"v2 {i}\n")
    cli.json("snapshot", str(big))  # through the daemon: every v2 is recorded
    order = list(files)
    random.Random(6).shuffle(order)
    writer = Writer(order, 0.003)
    proc = subprocess.Popen([sys.executable, "-m", "guardian", "restore", str(big), "--at",
                             at, "--store", str(cli.store)], env=cli.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    writer.start()
    try:
        _out, err = proc.communicate(timeout=120)
    finally:
        writer.stop.set()
        writer.join(30)
    cli.json("snapshot", str(big))  # the daemon has recorded everything written so far
    assert writer.wrote, "the writer wrote nothing"
    have = stored(cli, big)
    lost = [p.name for p, data in writer.wrote.items() if sha256(data) not in have]
    assert not lost, f"{len(lost)} of {len(writer.wrote)} writes lost, e.g. {lost[:5]}"
    assert proc.returncode in (0, 1), err
    completed = proc.returncode == 0
    if not completed:
        text = err.decode()
        assert "changed while the restore ran" in text and str(big) in text, text
        assert "run the restore again" in text and text.count("\n") == 1, text
    for i, f in enumerate(files):  # all or nothing: theirs, or every file at one time
        expect = {writer.wrote.get(f), f"{'v1' if completed else 'v2'} {i}\n".encode()}
        assert f.read_bytes() in expect, (f, completed)
    assert not temps(root)
    if not completed:  # retried without the writer, it completes
        p = cli.run("restore", str(big), "--at", at)
        assert p.returncode == 0, p.stderr
        assert all(f.read_text() == f"v1 {i}\n" for i, f in enumerate(files))


def _recorded_as(db: Path, relpath: str, data: bytes) -> bool:
    """Whether a version of ``relpath`` holds ``data`` (read from the store directly: a
    reader while the daemon writes)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute(
            "SELECT 1 FROM versions v JOIN files f ON f.id = v.file_id JOIN objects o"
            " ON o.id = v.object_id WHERE f.relpath = ? AND o.hash = ?",
            (os.fsencode(relpath), bytes.fromhex(sha256(data)))).fetchone() is not None
    finally:
        con.close()


def test_a_restore_loop_against_an_editor_loses_no_save(cli: Cli, root: Path, watch) -> None:
    """An editor saves (temp + rename) while a loop restores the file again and again
    through the daemon: every save ends up in the store."""
    from guardian.control import Connection
    from guardian.errors import DaemonError

    doc = root / "doc.txt"
    doc.write_text("v1\n")
    w = watch(root)
    sock = w.ready()["socket"]
    [v1] = cli.log(doc)
    stop = threading.Event()
    results = {"restored": 0, "refused": 0}
    errors: list[str] = []

    def loop() -> None:
        with Connection(sock, timeout=60) as conn:
            while not stop.is_set():
                try:
                    conn.call("restore", {"path": str(doc), "version": v1["id"]})
                    results["restored"] += 1
                except DaemonError as e:
                    results["refused"] += 1
                    if "changed while the restore ran" not in str(e):
                        errors.append(str(e))

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    rng = random.Random(66)
    saves = []
    lost = 0
    try:
        for n in range(60):
            data = f"save {n} {secrets.token_hex(4)}\n".encode()
            stop.wait(rng.uniform(0, 0.01))  # a random moment of the loop's cycle
            if n % 2:  # a safe save (temp + rename), or in place (truncate + write)
                tmp = root / "doc.txt.saving"
                tmp.write_bytes(data)
                os.replace(tmp, doc)
            else:
                doc.write_bytes(data)
            saves.append(data)
            try:
                # Recorded as doc.txt's (the temp's version does not count): only then
                # may the next save replace it.
                wait_until(lambda d=data: _recorded_as(cli.store / "guardian.db", "doc.txt",
                                                       d), 3, "the save to be recorded")
            except AssertionError:
                lost += 1
    finally:
        stop.set()
        thread.join(60)
    assert not errors, errors[:3]
    assert results["restored"] > 10, results  # it did restore, over saves it had stored
    cli.json("snapshot", str(doc))
    have = stored(cli, doc)
    missing = [s for s in saves if sha256(s) not in have]
    assert not missing and not lost, f"{len(missing)} of {len(saves)} saves lost"


# ----------------------------------------------------------------------------- stress
def _recover_or_explain(cli: Cli, timeout: float = 60) -> None:
    proc = subprocess.run([sys.executable, "-m", "guardian", "recover", "--json", "--store",
                           str(cli.store)], env=cli.env, capture_output=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.stress
@pytest.mark.timeout(3600)  # ~150 rounds of a second or two each: not the suite's 120 s
def test_random_kills_during_directory_restores(cli: Cli, root: Path) -> None:
    """Real SIGKILLs at random moments of real `guardian restore DIR --at T` processes,
    restoring alternately to two times with type changes, links and deletions between."""
    rng = random.Random(4321)
    d = root / "d"
    make_then(d)
    for i in range(40):
        (d / f"f{i}.txt").write_text(f"gen A {i}\n")
    snap(cli)
    at_a, tree_a = now_spec(), tree(d)
    make_now(d)
    for i in range(40):
        (d / f"f{i}.txt").write_text(f"gen B {i}\n")
    snap(cli)
    at_b, tree_b = now_spec(), tree(d)
    # How long a whole restore takes here (there and back): the kills land anywhere in it.
    t0 = time.monotonic()
    assert restore(cli, str(d), "--at", at_a).returncode == 0 and tree(d) == tree_a
    assert restore(cli, str(d), "--at", at_b).returncode == 0 and tree(d) == tree_b
    span = (time.monotonic() - t0) / 2
    outcomes = {"done": 0, "not done": 0}
    want = "a"
    for _ in range(int(os.environ.get("GUARDIAN_STRESS_ROUNDS", "150"))):
        at = at_a if want == "a" else at_b
        proc = subprocess.Popen([sys.executable, "-m", "guardian", "restore", str(d), "--at",
                                 at, "--store", str(cli.store)], env=cli.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.0, span))  # a random moment: this is the point of the test
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        _recover_or_explain(cli)
        now = tree(d)
        assert now in (tree_a, tree_b), sorted(set(now.items()) ^ set(tree_a.items()))[:6]
        assert not temps(root)
        if now == (tree_a if want == "a" else tree_b):
            outcomes["done"] += 1
            want = "b" if want == "a" else "a"
        else:
            outcomes["not done"] += 1
    assert cli.json("verify")["ok"] is True
    for rel, entry in {**tree_a, **tree_b}.items():
        if entry[0] == "file":
            assert sha256(entry[1]) in stored(cli, d / rel), rel
    assert outcomes["done"] and outcomes["not done"], outcomes
    print(f"restore kills: {outcomes}")  # shown with -s


def test_the_restore_benchmark_group_runs(cli: Cli, tmp_path: Path) -> None:
    """`python -m bench --quick restore`: the row is measured beside its baseline."""
    repo = Path(__file__).resolve().parent.parent
    env = {**cli.env, "TMPDIR": str(tmp_path), "PYTHONPATH": str(repo)}
    p = subprocess.run([sys.executable, "-m", "bench", "--quick", "--json", "restore"],
                       capture_output=True, env=env, cwd=repo, timeout=300)
    assert p.returncode in (0, 1), p.stderr.decode()[-2000:]
    (table,) = json.loads(p.stdout)["tables"]
    assert table["name"] == "restore.dir" and not table.get("error"), table
    row = table["rows"][0]
    assert row["metric"] == "500 files: batch restore vs per-file restore (s)"
    assert row["value"] > 0 and row["baseline"] > 0 and row["result"] in ("PASS", "FAIL")
