"""The daemon captures every change kind and the save patterns of real tools.

Each test runs a real ``guardian watch`` subprocess on a temp tree with the real watchdog
observer and checks what a user would see: the versions in ``guardian log`` and their bytes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tarfile
from pathlib import Path

import pytest

from .conftest import Cli, sha256, wait_until


def kinds(cli: Cli, path: Path) -> list[str]:
    return [v["kind"] for v in reversed(cli.log(path))]


def contents(cli: Cli, path: Path) -> list[bytes]:
    """Every stored content of ``path``, oldest first (deletions skipped)."""
    out = []
    for v in reversed(cli.log(path)):
        if v["sha256"]:
            out.append(cli.run("show", str(path), "--version", str(v["id"]), check=True).stdout)
    return out


def test_baseline_then_create_modify_delete(root: Path, cli: Cli, watch) -> None:
    (root / "a.txt").write_text("one\n")
    (root / "d").mkdir()
    (root / "d" / "b.bin").write_bytes(bytes(range(256)) * 4)
    w = watch(root)
    ready = w.wait(lambda e: e["event"] == "ready")
    assert ready["files"] == 2
    assert [v["kind"] for v in cli.log(root / "a.txt")] == ["baseline"]

    m = w.mark()
    (root / "new.txt").write_text("fresh")
    w.version(root / "new.txt", "created", start=m)
    (root / "a.txt").write_text("two\n")
    w.version(root / "a.txt", "modified", start=m)
    (root / "d" / "b.bin").unlink()
    w.version(root / "d" / "b.bin", "deleted", start=m)

    assert contents(cli, root / "a.txt") == [b"one\n", b"two\n"]
    log = cli.log(root / "a.txt")
    assert log[0]["sha256"] == sha256(b"two\n")
    assert log[0]["origin"] == "watcher"
    deleted = cli.log(root / "d" / "b.bin")[0]
    assert deleted["kind"] == "deleted" and deleted["sha256"] is None and not deleted["present"]
    assert w.stop() == 0


def test_a_file_appended_after_its_close_and_left_open_is_recorded(root: Path, cli: Cli,
                                                                  watch) -> None:
    """A log written, closed, then appended to by a writer that keeps it open: the close's
    version and the appended content are both recorded, without another close."""
    w = watch(root)
    w.wait(lambda e: e["event"] == "ready")
    m = w.mark()
    log = root / "app.log"
    log.write_bytes(b"started\n")
    w.version(log, "created", start=m)
    with open(log, "ab") as f:
        f.write(b"working\n")
        f.flush()
        wait_until(lambda: contents(cli, log)[-1:] == [b"started\nworking\n"],
                   what="the appended content recorded while the file is open")
    assert contents(cli, log) == [b"started\n", b"started\nworking\n"]
    assert w.stop() == 0


def test_rename_records_both_paths(root: Path, cli: Cli, watch) -> None:
    (root / "old.txt").write_text("content")
    w = watch(root)
    m = w.mark()
    os.rename(root / "old.txt", root / "new.txt")
    w.version(root / "new.txt", "moved", start=m)
    w.version(root / "old.txt", "moved", start=m)
    src = cli.log(root / "old.txt")[0]
    dst = cli.log(root / "new.txt")[0]
    assert not src["present"] and "new.txt" in src["note"]
    assert dst["present"] and dst["sha256"] == sha256(b"content") and "old.txt" in dst["note"]


def test_directory_created_moved_deleted_with_contents(root: Path, cli: Cli, watch,
                                                       tmp_path: Path) -> None:
    w = watch(root)
    m = w.mark()
    (root / "a" / "b" / "c").mkdir(parents=True)  # mkdir -p a/b/c + files
    for i in range(5):
        (root / "a" / "b" / "c" / f"f{i}.txt").write_text(str(i))
    for i in range(5):
        w.version(root / "a" / "b" / "c" / f"f{i}.txt", start=m)

    m = w.mark()
    os.rename(root / "a", root / "z")
    for i in range(5):
        w.version(root / "z" / "b" / "c" / f"f{i}.txt", "moved", start=m)
        w.version(root / "a" / "b" / "c" / f"f{i}.txt", "moved", start=m)

    # Moved out of the tree: only the directory's own event arrives; its files are gone.
    m = w.mark()
    shutil.move(str(root / "z"), str(tmp_path / "outside"))
    for i in range(5):
        w.version(root / "z" / "b" / "c" / f"f{i}.txt", "deleted", start=m)

    # Moved into the tree from outside: every file inside is new.
    m = w.mark()
    shutil.move(str(tmp_path / "outside"), str(root / "back"))
    for i in range(5):
        w.version(root / "back" / "b" / "c" / f"f{i}.txt", "created", start=m)

    m = w.mark()
    shutil.rmtree(root / "back")
    for i in range(5):
        w.version(root / "back" / "b" / "c" / f"f{i}.txt", "deleted", start=m)


def test_save_patterns_are_one_new_version(root: Path, cli: Cli, watch) -> None:
    target = root / "notes.md"
    target.write_text("v0\n")
    w = watch(root)

    def saved(data: bytes) -> None:
        w.version(target, "modified", sha256=sha256(data))

    # In-place write.
    with open(target, "r+b") as f:
        f.write(b"v1\n")
    saved(b"v1\n")
    # Truncate + write.
    with open(target, "wb") as f:
        f.write(b"v2 longer\n")
    saved(b"v2 longer\n")
    # Temp file + rename over the target.
    tmp = root / ".notes.md.tmp123"
    tmp.write_bytes(b"v3\n")
    os.replace(tmp, target)
    saved(b"v3\n")
    # vim's default: rename the target to a backup, write a new file, delete the backup.
    os.rename(target, root / "notes.md~")
    target.write_bytes(b"v4\n")
    os.unlink(root / "notes.md~")
    saved(b"v4\n")
    # JetBrains safe write: write a temp, delete the target, rename the temp in.
    tmp = root / "notes.md___jb_tmp___"
    tmp.write_bytes(b"v5\n")
    os.unlink(target)
    os.rename(tmp, target)
    saved(b"v5\n")
    # sed -i
    subprocess.run(["sed", "-i", "s/v5/v6/", str(target)], check=True)
    saved(b"v6\n")

    assert contents(cli, target) == [b"v0\n", b"v1\n", b"v2 longer\n", b"v3\n", b"v4\n",
                                     b"v5\n", b"v6\n"]
    # An editor save is a new version of the target, never a deletion of it.
    assert "deleted" not in kinds(cli, target)
    # Temp files and backups that lived a moment leave no trace as live files.
    live = {v["relpath"] for v in cli.log(root) if v["present"]}
    assert live == {"notes.md"} or live <= {"notes.md", "notes.md~", ".notes.md.tmp123",
                                            "notes.md___jb_tmp___"}
    status = cli.json("status")
    assert status["running"] and status["files"] == 1


@pytest.mark.skipif(shutil.which("vim") is None, reason="vim is not installed")
def test_real_vim_save(root: Path, cli: Cli, watch) -> None:
    target = root / "edit.txt"
    target.write_text("hello\n")
    w = watch(root)
    subprocess.run(["vim", "-Es", "-u", "NONE", "-c", "%s/hello/bye/", "-c", "wq", str(target)],
                   check=True, timeout=30, stdin=subprocess.DEVNULL)
    w.version(target, "modified", sha256=sha256(b"bye\n"))
    assert "deleted" not in kinds(cli, target)


def test_git_checkout_and_switch(root: Path, cli: Cli, watch, env) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=root,
                       check=True, capture_output=True, env=env)

    git("init", "-q", "-b", "main")
    (root / "app.py").write_text("x = 1\n")
    git("add", "-A")
    git("commit", "-qm", "one")
    git("switch", "-qc", "feature")
    (root / "app.py").write_text("x = 2\n")
    (root / "extra.py").write_text("y = 1\n")
    git("add", "-A")
    git("commit", "-qm", "two")
    w = watch(root)
    m = w.mark()
    git("switch", "-q", "main")
    w.version(root / "app.py", "modified", sha256=sha256(b"x = 1\n"), start=m)
    w.version(root / "extra.py", "deleted", start=m)
    m = w.mark()
    git("checkout", "-q", "feature", "--", "app.py")
    w.version(root / "app.py", "modified", sha256=sha256(b"x = 2\n"), start=m)
    # Nothing under .git/ is recorded.
    assert not [v for v in cli.log(root) if v["relpath"].startswith(".git/")]


def test_tar_extract_cp_r_and_rsync(root: Path, cli: Cli, watch, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "deep" / "er").mkdir(parents=True)
    files = {f"deep/er/f{i}.txt": f"data {i}\n".encode() for i in range(20)}
    files["top.bin"] = os.urandom(5000)
    for rel, data in files.items():
        (src / rel).write_bytes(data)
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as t:
        t.add(src, arcname="untarred")
    w = watch(root)
    subprocess.run(["tar", "-xf", str(archive), "-C", str(root)], check=True)
    subprocess.run(["cp", "-r", str(src), str(root / "copied")], check=True)
    if shutil.which("rsync"):
        subprocess.run(["rsync", "-a", f"{src}/", str(root / "synced")], check=True)
        dests = ["untarred", "copied", "synced"]
    else:  # pragma: no cover - .ci/run installs rsync
        dests = ["untarred", "copied"]
    for d in dests:
        for rel, data in files.items():
            w.version(root / d / rel, sha256=sha256(data))
    # rsync updates an existing file by temp + rename.
    if "synced" in dests:
        (src / "top.bin").write_bytes(b"changed")
        m = w.mark()
        subprocess.run(["rsync", "-a", f"{src}/", str(root / "synced")], check=True)
        w.version(root / "synced" / "top.bin", "modified", sha256=sha256(b"changed"), start=m)


def test_symlinks_are_recorded_as_links_not_followed(root: Path, cli: Cli, watch,
                                                     tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not ours")
    (root / "link_to_dir").symlink_to(outside)
    (root / "loop").symlink_to("loop")
    w = watch(root)
    m = w.mark()
    (root / "link").symlink_to("target/elsewhere")
    v = w.version(root / "link", "created", start=m)
    assert v["sha256"] == sha256(b"target/elsewhere")
    assert cli.log(root / "link")[0]["type"] == "symlink"
    assert not cli.log(root / "link_to_dir" / "secret.txt")
    assert cli.log(root / "loop")[0]["type"] == "symlink"


def test_names_that_are_not_utf8(root: Path, cli: Cli, watch) -> None:
    w = watch(root)
    m = w.mark()
    name = os.path.join(os.fsencode(root), b"r\xe9sum\xe9.txt")
    with open(name, "wb") as f:
        f.write(b"cv")
    v = w.version(os.fsdecode(name), "created", start=m)
    assert os.fsencode(v["path"]) == name
    assert cli.log(os.fsdecode(name))[0]["sha256"] == sha256(b"cv")


def test_chmod_records_new_mode(root: Path, cli: Cli, watch) -> None:
    script = root / "run.sh"
    script.write_text("#!/bin/sh\n")
    os.chmod(script, 0o644)
    w = watch(root)
    m = w.mark()
    os.chmod(script, 0o755)
    w.version(script, "modified", start=m)
    assert cli.log(script)[0]["mode"] & 0o777 == 0o755


def test_gitignored_and_store_paths_are_not_recorded(root: Path, cli: Cli, watch, env,
                                                     tmp_path: Path) -> None:
    (root / ".gitignore").write_text("*.log\nbuild/\n!keep.log\n")
    (root / "build").mkdir()
    (root / "build" / "out.o").write_text("obj")
    (root / "x.log").write_text("noise")
    (root / "keep.log").write_text("kept")
    w = watch(root)
    m = w.mark()
    (root / "y.log").write_text("more noise")
    (root / "build" / "more.o").write_text("obj")
    (root / "real.txt").write_text("real")
    w.version(root / "real.txt", start=m)
    recorded = {v["relpath"] for v in cli.log(root)}
    assert recorded == {".gitignore", "keep.log", "real.txt"}
    # Un-ignoring a pattern takes effect at once: the next change is captured.
    m = w.mark()
    (root / ".gitignore").write_text("build/\n")
    w.version(root / ".gitignore", "modified", start=m)
    (root / "z.log").write_text("now tracked")
    w.version(root / "z.log", "created", start=m)


def test_restart_records_changes_made_while_stopped(root: Path, cli: Cli, watch) -> None:
    for i in range(50):
        (root / f"f{i}.txt").write_text(f"{i}")
    w = watch(root)
    assert w.stop() == 0
    (root / "f1.txt").write_text("changed while down")
    (root / "f2.txt").unlink()
    (root / "f3.txt").rename(root / "f3-renamed.txt")
    (root / "added.txt").write_text("new while down")
    w2 = watch(root)
    ready = w2.wait(lambda e: e["event"] == "ready")
    assert ready["recorded"] == 5  # modified, deleted, moved (2 sides), created
    assert kinds(cli, root / "f1.txt") == ["baseline", "modified"]
    assert kinds(cli, root / "f2.txt") == ["baseline", "deleted"]
    assert kinds(cli, root / "f3-renamed.txt") == ["moved"]
    assert kinds(cli, root / "added.txt") == ["created"]
    # Unchanged files were not recorded again.
    assert kinds(cli, root / "f10.txt") == ["baseline"]


def test_sigint_finishes_pending_work_and_exits_zero(root: Path, cli: Cli, watch) -> None:
    w = watch(root, extra=["--reconcile-interval", "3600"])
    for i in range(200):
        (root / f"burst{i}.txt").write_text(str(i))
    code = w.stop(signal.SIGINT)
    assert code == 0
    stopped = w.wait(lambda e: e["event"] == "stopped")
    assert stopped["versions"] == 200
    assert len([v for v in cli.log(root) if v["present"]]) == 200


def test_the_daemon_checkpoints_the_wal_once_writes_pause(root: Path, cli: Cli, watch,
                                                           store: Path) -> None:
    """No commit checkpoints the WAL itself: the daemon copies it into the database when the
    writes have paused (SQLite would have done it inside the commit crossing 1,000 pages)."""
    w = watch(root)
    w.ready()
    db = store / "guardian.db"
    before = db.stat().st_size
    m = w.mark()
    for i in range(40):  # ~2 MB of incompressible content
        (root / f"blob{i}.bin").write_bytes(os.urandom(50_000))
    for i in range(40):
        w.version(root / f"blob{i}.bin", "created", start=m)
    wait_until(lambda: db.stat().st_size >= before + 2_000_000,
               what="the WAL checkpointed into guardian.db while the daemon runs")
    assert w.stop() == 0


def test_two_daemons_on_one_store(root: Path, cli: Cli, watch, env, store: Path) -> None:
    watch(root)
    second = subprocess.run([os.sys.executable, "-m", "guardian", "watch", str(root), "--store",
                             str(store)], capture_output=True, env=env, timeout=30)
    assert second.returncode == 2
    err = second.stderr.decode()
    assert err.count("\n") == 1 and "in use by another guardian process" in err
    assert "Traceback" not in err


def test_tree_snapshot_through_the_daemon_sees_every_write_before_it(root: Path, cli: Cli,
                                                                       watch) -> None:
    w = watch(root, extra=["--reconcile-interval", "3600"])
    for round_ in range(3):
        for i in range(30):
            (root / f"x{i}.txt").write_text(f"{round_}-{i}")
        out = cli.json("snapshot")  # no sleep: the sync barrier must catch every write
        assert out["method"] == "events"
        latest: dict[str, str] = {}
        for v in reversed(cli.log(root)):
            latest[v["relpath"]] = v["sha256"]
        assert latest == {f"x{i}.txt": sha256(f"{round_}-{i}".encode()) for i in range(30)}
    full = cli.json("snapshot", "--full")
    assert full["method"] == "scan" and full["scanned"] == 30 and full["recorded"] == 0
    assert w.proc.poll() is None


def test_snapshot_goes_through_a_running_daemon(root: Path, cli: Cli, watch) -> None:
    w = watch(root)
    (root / "a.txt").write_text("x")
    out = cli.json("snapshot", str(root / "a.txt"))
    # Either the watcher or the snapshot recorded it; either way it is stored exactly once.
    versions = cli.log(root / "a.txt")
    assert len(versions) == 1 and versions[0]["sha256"] == sha256(b"x")
    assert out["recorded"] + out["unchanged"] == 1
    wait_until(lambda: w.proc.poll() is None, what="daemon alive")
