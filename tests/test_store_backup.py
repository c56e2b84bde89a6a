"""``guardian store backup DEST``: a consistent copy of a live store, checked by ``guardian
verify --store DEST`` and used to restore after the original store is gone."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from guardian.errors import UsageError
from guardian.store.backup import backup, check_dest

from .conftest import Cli, Watch, wait_until

BIG = 300 * 1024  # over the loose-object threshold (256 KiB): exercises objects/ab/cdef…


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return "?"


def _loose_files(store: Path) -> set[str]:
    base = store / "objects"
    return {f"{d.name}{f.name}" for d in base.iterdir() if d.is_dir() for f in d.iterdir()}


def test_backup_while_the_daemon_records_then_verify_and_restore_from_it(
        root: Path, store: Path, tmp_path: Path, cli: Cli, watch: Callable[..., Watch]) -> None:
    keep = os.urandom(BIG)
    (root / "keep.bin").write_bytes(keep)
    (root / "notes.txt").write_text("notes\n")
    w = watch(root)
    stop = threading.Event()
    written: list[str] = []
    errors: list[BaseException] = []

    def churn() -> None:  # a writer the daemon keeps up with: each write waits for its version
        i = 0
        try:
            while not stop.is_set() and i < 400:
                path = root / (f"big{i % 3}.bin" if i % 2 else f"small{i % 7}.txt")
                data = os.urandom(BIG) if i % 2 else f"small {i}\n".encode()
                path.write_bytes(data)
                w.version(path, sha256=hashlib.sha256(data).hexdigest())
                written.append(path.name)
                i += 1
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    t = threading.Thread(target=churn, daemon=True)
    t.start()
    try:
        wait_until(lambda: len(written) >= 6 or errors, what="the daemon recording writes")
        before = len(written)
        dest = tmp_path / "backup"
        out = cli.json("store", "backup", str(dest))
        during = len(written) - before
    finally:
        stop.set()
        t.join(60)
    assert not errors, errors
    assert out["ok"] and out["missing"] == [] and out["attempts"] >= 1
    assert out["loose_objects"] >= 2 and out["versions"] >= 8, out
    # A private store, whole: the database names exactly the loose objects copied.
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(dest / "guardian.db").st_mode) == 0o600
    assert not (dest / "guardian.db.partial").exists()
    assert len(_loose_files(dest)) == out["loose_objects"]
    report = Cli(cli.env, dest, cli.cwd).json("verify", "--full")
    assert report["ok"] and report["objects"] == out["objects"], report
    assert w.stop() == 0
    # Disaster: the store and a file are gone; the backup brings the file back.
    (root / "keep.bin").unlink()
    subprocess.run(["rm", "-rf", str(store)], check=True)
    from_backup = Cli(cli.env, dest, cli.cwd)
    from_backup.run("restore", str(root / "keep.bin"), check=True)
    assert (root / "keep.bin").read_bytes() == keep
    newest = from_backup.log(root / "big1.bin")[0]
    shown = from_backup.run("show", str(root / "big1.bin"), check=True).stdout
    assert hashlib.sha256(shown).hexdigest() == newest["sha256"]
    print(f"writes recorded while the backup ran: {during}")


def test_gc_between_the_snapshot_and_the_copy_takes_the_snapshot_again(
        root: Path, store: Path, tmp_path: Path, cli: Cli, env: dict[str, str]) -> None:
    big = root / "big.bin"
    big.write_bytes(os.urandom(BIG))
    cli.run("snapshot", str(root), check=True)
    big.write_bytes(os.urandom(BIG))
    cli.run("snapshot", str(root), check=True)
    assert len(_loose_files(store)) == 2
    dest = tmp_path / "backup"
    # The backup stops itself right after its first snapshot of the database...
    p = subprocess.Popen([sys.executable, "-m", "guardian", "store", "backup", str(dest),
                          "--store", str(store), "--json"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE,
                         env=dict(env, GUARDIAN_FAULT="backup.snapshot:stop"))
    try:
        wait_until(lambda: _proc_state(p.pid) == "T", what="the backup paused after its snapshot")
        # ...gc drops the older version, and its loose file, which that snapshot names.
        cli.run("gc", "--keep-versions", "1", "--keep-days", "0", check=True)
        assert len(_loose_files(store)) == 1
        os.kill(p.pid, signal.SIGCONT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    result = json.loads(out)
    assert result["attempts"] == 2 and result["ok"], result
    assert _loose_files(dest) == _loose_files(store)
    assert Cli(cli.env, dest, cli.cwd).json("verify")["ok"]


def test_dest_must_be_new_or_empty_and_outside_store_and_roots(
        root: Path, store: Path, tmp_path: Path, cli: Cli) -> None:
    (root / "a.txt").write_text("a")
    cli.run("snapshot", str(root), check=True)
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    (tmp_path / "file").write_text("f")
    cases = {
        full: "not empty",
        tmp_path / "file": "not a directory",
        root / "backup": "inside the watched root",
        store / "backup": "inside the store",
        tmp_path: "contains the store",
        tmp_path / "no" / "such": "parent directory does not exist",
    }
    for dest, why in cases.items():
        with pytest.raises(UsageError, match=why):
            check_dest(store, dest)
    assert check_dest(store, tmp_path / "new") is False
    # Through the CLI: one line, exit 2, nothing touched.
    p = cli.run("store", "backup", str(full))
    err = p.stderr.decode()
    assert p.returncode == 2 and "not empty" in err and err.count("\n") == 1, err
    assert sorted(os.listdir(full)) == ["x"]
    p = cli.run("store", "backup", str(tmp_path / "b"), "--store", str(tmp_path / "nostore"),
                store=False)
    assert p.returncode == 2 and "no Guardian store" in p.stderr.decode()
    assert not (tmp_path / "b").exists()
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o755)
    cli.run("store", "backup", str(empty), check=True)
    assert stat.S_IMODE(os.stat(empty).st_mode) == 0o700
    assert Cli(cli.env, empty, cli.cwd).json("verify")["ok"]


def test_without_syncfs_each_file_is_fsynced_instead(
        root: Path, store: Path, tmp_path: Path, cli: Cli,
        monkeypatch: pytest.MonkeyPatch) -> None:
    (root / "big.bin").write_bytes(os.urandom(BIG))
    cli.run("snapshot", str(root), check=True)
    monkeypatch.setenv("GUARDIAN_NO_SYNCFS", "1")
    result = backup(store, tmp_path / "b")
    assert result.ok and result.loose_objects == 1
    assert Cli(cli.env, tmp_path / "b", cli.cwd).json("verify")["ok"]


def test_a_failed_or_killed_backup_is_never_taken_for_a_store(
        root: Path, store: Path, tmp_path: Path, cli: Cli, env: dict[str, str]) -> None:
    (root / "big.bin").write_bytes(os.urandom(BIG))
    cli.run("snapshot", str(root), check=True)
    dest = tmp_path / "backup"
    p = cli.run("store", "backup", str(dest), env=dict(env, GUARDIAN_FAULT="backup.snapshot:EIO"))
    assert p.returncode == 2 and "backup to" in p.stderr.decode(), p.stderr
    assert not dest.exists()  # what it wrote is gone
    p = cli.run("store", "backup", str(dest), env=dict(env, GUARDIAN_FAULT="backup.snapshot:kill"))
    assert p.returncode == -signal.SIGKILL
    assert not (dest / "guardian.db").exists()
    p = Cli(cli.env, dest, cli.cwd).run("verify")
    assert p.returncode == 2 and "no Guardian store" in p.stderr.decode()
