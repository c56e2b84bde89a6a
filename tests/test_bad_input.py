"""Bad input never gives a traceback or a dead daemon: one-line errors at start-up, warnings
while running.

Permission errors are real: the daemon runs as ``nobody`` (CI runs as root, where mode bits
alone never cause EACCES). Disk-full and read-only stores are real small tmpfs mounts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Cli, Watch, sha256, wait_until

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def _can_run_as_nobody() -> str | None:
    if os.geteuid() != 0:
        return "needs root to switch to an unprivileged user"
    if shutil.which("setpriv") is None:
        return "needs setpriv (util-linux)"
    p = subprocess.run([*NOBODY, sys.executable, "-c", "import guardian"], capture_output=True,
                       check=False)
    if p.returncode != 0:
        return f"the interpreter is not usable by nobody: {p.stderr.decode()[-200:]}"
    return None


needs_nobody = pytest.mark.skipif(_can_run_as_nobody() is not None,
                                  reason=str(_can_run_as_nobody()))


@pytest.fixture
def shared(env: dict[str, str]) -> Iterator[tuple[Path, dict[str, str]]]:
    """A base dir nobody can reach, and an environment for a daemon running as nobody."""
    base = Path(tempfile.mkdtemp(prefix="gshared", dir="/tmp"))
    os.chmod(base, 0o755)
    runtime = base / "run"
    runtime.mkdir()
    state = base / "state"
    state.mkdir()
    for d in (runtime, state):
        os.chown(d, 65534, 65534)
    e = dict(env, XDG_RUNTIME_DIR=str(runtime), XDG_STATE_HOME=str(state), HOME=str(base))
    yield base, e
    shutil.rmtree(base, ignore_errors=True)


def _one_line_error(p: subprocess.CompletedProcess[bytes], *needles: bytes) -> None:
    err = p.stderr
    assert p.returncode == 2, (p.returncode, err)
    assert err.count(b"\n") == 1 and b"Traceback" not in err, err
    for n in needles:
        assert n in err, err


def test_nonexistent_root_and_file_root(cli: Cli, root: Path) -> None:
    _one_line_error(cli.run("watch", str(root / "missing")), b"no such directory")
    (root / "file").write_text("x")
    _one_line_error(cli.run("watch", str(root / "file")), b"not a directory")
    cli.run("snapshot", cwd=root, check=True)  # the store's root is now `root`
    _one_line_error(cli.run("snapshot", "/etc/hostname", cwd=root), b"outside the watched roots")


def test_nested_roots_are_refused(cli: Cli, root: Path) -> None:
    (root / "inner").mkdir()
    _one_line_error(cli.run("watch", str(root), str(root / "inner")), b"inside")


@needs_nobody
def test_unreadable_root_is_a_one_line_error(shared: tuple[Path, dict[str, str]]) -> None:
    base, env = shared
    secret = base / "secret"
    secret.mkdir(mode=0o700)
    store = base / "store"
    p = subprocess.run([*NOBODY, sys.executable, "-m", "guardian", "watch", str(secret),
                        "--store", str(store)], capture_output=True, env=env, timeout=60,
                       check=False)
    _one_line_error(p, b"permission denied")


@needs_nobody
def test_unreadable_files_and_dirs_are_warnings_not_deletions(
        shared: tuple[Path, dict[str, str]]) -> None:
    base, env = shared
    root = base / "root"
    root.mkdir()
    (root / "ok.txt").write_text("fine")
    (root / "sub").mkdir()
    (root / "sub" / "inside.txt").write_text("was readable")
    for p in (root, root / "ok.txt", root / "sub", root / "sub" / "inside.txt"):
        os.chown(p, 65534, 65534)
    (root / "private.txt").write_text("root only")
    os.chmod(root / "private.txt", 0o600)  # owned by root: EACCES for nobody
    store = base / "store"
    store.mkdir(mode=0o700)
    os.chown(store, 65534, 65534)
    w = Watch([root], store, env, argv_prefix=NOBODY)
    try:
        w.ready()
        w.wait(lambda e: e["event"] == "warning" and e.get("path") == str(root / "private.txt")
               and "Permission denied" in e["message"])
        # A directory that becomes unreadable keeps its history: no tombstones.
        os.chown(root / "sub", 0, 0)
        os.chmod(root / "sub", 0o700)
        m = w.mark()
        (root / "after.txt").write_text("still recording")
        os.chown(root / "after.txt", 65534, 65534)
        w.version(root / "after.txt", start=m)
        cli = Cli(env, store, base)
        # A full reconcile by the daemon, which cannot list sub/ now, must not tombstone it.
        cli.run("snapshot", check=True, env=env)
        assert w.proc.poll() is None
        assert cli.log(root / "sub" / "inside.txt")[0]["kind"] == "baseline"
    finally:
        assert w.stop() == 0
        w.close()
    assert not w.raw
    assert not [e for e in w.events if e["event"] == "error"]


def test_files_vanishing_mid_read_do_not_hurt(root: Path, cli: Cli, watch) -> None:
    w = watch(root)
    stop = threading.Event()

    def churn() -> None:
        i = 0
        while not stop.is_set():
            p = root / f"flash{i % 50}.tmp"
            with contextlib.suppress(OSError):
                p.write_bytes(os.urandom(2048))
                p.unlink()
            i += 1

    t = threading.Thread(target=churn)
    t.start()
    try:
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            assert w.proc.poll() is None
            (root / "steady.txt").write_text(str(time.monotonic()))
            time.sleep(0.05)  # pacing the writer, not synchronising with the daemon
    finally:
        stop.set()
        t.join()
    m = w.mark()
    (root / "final.txt").write_text("done")
    w.version(root / "final.txt", start=m)
    assert not [e for e in w.events if e["event"] == "error"]
    assert w.stop() == 0


def test_symlink_loops_and_fifos(root: Path, cli: Cli, watch) -> None:
    (root / "a").mkdir()
    (root / "a" / "up").symlink_to("..")
    (root / "self").symlink_to("self")
    os.mkfifo(root / "pipe")
    (root / "plain.txt").write_text("x")
    w = watch(root)
    assert w.wait(lambda e: e["event"] == "ready")["files"] == 3  # two links and the file
    assert cli.json("snapshot")["recorded"] == 0
    assert w.stop() == 0


def _mount_tmpfs(path: Path, size: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    path.mkdir(parents=True, exist_ok=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                        str(path)], capture_output=True, check=False)
    return p.returncode == 0


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "small"
    if not _mount_tmpfs(mnt, "4m"):
        pytest.skip("needs root and tmpfs mounts to make a real full or read-only filesystem")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_store_warns_and_catches_up(root: Path, small_fs: Path, env) -> None:
    store = small_fs / "store"
    w = Watch([root], store, env)
    try:
        w.ready()
        filler = small_fs / "filler"
        with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 65536)
        data = os.urandom(512 * 1024)  # incompressible, loose object: needs space
        (root / "big.bin").write_bytes(data)
        err = w.wait(lambda e: e["event"] == "error", timeout=30, what="a store error")
        assert "space" in err["message"].lower() or "full" in err["message"].lower()
        assert w.proc.poll() is None
        filler.unlink()
        w.version(root / "big.bin", sha256=sha256(data), timeout=90)
        cli = Cli(env, store, root.parent)
        assert cli.json("verify")["ok"] is True
    finally:
        assert w.stop() == 0
        w.close()


def test_read_only_store_is_a_start_up_error(root: Path, small_fs: Path, cli: Cli) -> None:
    store = small_fs / "store"
    cli.store = store
    (root / "f").write_text("x")
    cli.run("snapshot", check=True, cwd=root)
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    _one_line_error(cli.run("watch", str(root)), b"store", b"ead-only")
    # Readers still work on a read-only store.
    assert cli.log(root / "f")[0]["sha256"] == sha256(b"x")


def test_store_path_that_is_a_file(cli: Cli, root: Path, tmp_path: Path) -> None:
    bad = tmp_path / "not-a-dir"
    bad.write_text("x")
    cli.store = bad
    _one_line_error(cli.run("watch", str(root)), b"not-a-dir")


def test_malformed_control_requests_do_not_kill_the_daemon(root: Path, cli: Cli, watch,
                                                           store: Path) -> None:
    import json
    import socket

    from guardian.locations import socket_path

    w = watch(root)
    status = cli.json("status")
    path = status["socket"]
    assert Path(path) == socket_path(store) or path.endswith(".sock")
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    for payload in (b"not json\n", b"[1,2]\n", b'{"method": 5}\n', b'{"method":"nope"}\n',
                    b'{"method":"restore","params":{"path":"/etc/passwd"}}\n'):
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(path)
            s.sendall(payload)
            reply = json.loads(s.makefile("rb").readline())
            assert reply["ok"] is False and reply["error"]["message"]
    wait_until(lambda: cli.json("status")["running"], what="daemon still serving")
    assert w.proc.poll() is None
