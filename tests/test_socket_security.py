"""The control socket cannot be impersonated by another user.

Without ``XDG_RUNTIME_DIR`` the socket's directory is the predictable ``/tmp/guardian-UID``.
Before, another user who created it first received every manifest ``apply`` sent and answered
in the daemon's place (``apply`` exited 0 and wrote nothing). The other user here is real:
``nobody``, through ``setpriv`` (CI runs as root), running a fake daemon that logs whatever it
is sent and answers "ok".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Cli, Watch, sha256, wait_until
from .test_bad_input import NOBODY, needs_nobody

NOBODY_UID = 65534


def socket_name(store: Path) -> str:
    """The daemon's socket file name for ``store`` (as guardian.locations computes it; the
    impostor needs it to sit at the exact path)."""
    import hashlib

    return hashlib.sha256(os.fsencode(store.resolve())).hexdigest()[:16] + ".sock"

#: A daemon impostor: listens on argv[1], logs each request line to argv[2], answers "ok".
IMPOSTOR = r"""
import json, os, socket, sys
path, log = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX)
s.bind(path)
os.chmod(path, 0o666)
s.listen()
print("listening", flush=True)
while True:
    c, _ = s.accept()
    f = c.makefile("rwb")
    for line in f:
        with open(log, "ab") as out:
            out.write(line)
        req = json.loads(line)
        result = {"ok": True, "batch": 1, "dry_run": False, "files": [], "duration_ms": 1.0,
                  "optimisations": {}, "versions": [], "running": True, "pid": 1}
        f.write(json.dumps({"v": 1, "id": req.get("id"), "ok": True,
                            "result": result}).encode() + b"\n")
        f.flush()
    c.close()
"""


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A sticky, world-writable directory standing in for /tmp (as TMPDIR)."""
    base = Path(tempfile.mkdtemp(prefix="gsock", dir="/tmp"))
    os.chmod(base, 0o1777)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def _as_nobody(*argv: str, **kw: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*NOBODY, *argv], **kw)  # type: ignore[call-overload, no-any-return]


def _impostor(sock: Path, log: Path) -> subprocess.Popen[bytes]:
    p = _as_nobody(sys.executable, "-c", IMPOSTOR, str(sock), str(log),
                   stdout=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.readline() == b"listening\n"
    return p


def _stop(p: subprocess.Popen[bytes]) -> None:
    p.kill()
    p.wait(10)
    if p.stdout is not None:
        p.stdout.close()


def _plant(shared_tmp: Path, store: Path) -> tuple[Path, Path, subprocess.Popen[bytes]]:
    """As nobody: make root's predictable runtime directory first, with a fake daemon in it
    at the exact socket path of ``store``."""
    planted = shared_tmp / f"guardian-{os.geteuid()}"
    subprocess.run([*NOBODY, "mkdir", "-m", "0777", str(planted)], check=True)
    log = shared_tmp / "impostor.log"
    subprocess.run([*NOBODY, "touch", str(log)], check=True)
    return planted, log, _impostor(planted / socket_name(store), log)


def _env_without_runtime_dir(env: dict[str, str], shared_tmp: Path) -> dict[str, str]:
    e = dict(env, TMPDIR=str(shared_tmp))
    e.pop("XDG_RUNTIME_DIR", None)
    return e


def _manifest(tmp_path: Path) -> Path:
    m = tmp_path / "m.json"
    m.write_text(json.dumps({"operations": [
        {"op": "write", "path": "secret.txt", "content": "the manifest's secret"}]}))
    return m


@needs_nobody
def test_a_planted_runtime_dir_gets_no_manifest_and_apply_writes(
        root: Path, cli: Cli, env: dict[str, str], shared_tmp: Path, tmp_path: Path) -> None:
    env = _env_without_runtime_dir(env, shared_tmp)
    cli.env = env
    planted, log, impostor = _plant(shared_tmp, cli.store or Path())
    try:
        p = cli.run("apply", str(_manifest(tmp_path)), "--root", str(root), "--json")
        assert p.returncode == 0, p.stderr
        assert (root / "secret.txt").read_text() == "the manifest's secret"
        assert log.read_bytes() == b"", "the impostor received a request"
        assert str(planted).encode() in p.stderr and b"owned by uid 65534" in p.stderr, p.stderr
        assert cli.log(root / "secret.txt")[0]["sha256"] == sha256(b"the manifest's secret")
        assert cli.json("status")["running"] is False  # not the impostor's answer either
        assert log.read_bytes() == b""
    finally:
        _stop(impostor)


@needs_nobody
def test_a_daemon_does_not_use_a_planted_runtime_dir_and_clients_find_it(
        root: Path, cli: Cli, env: dict[str, str], shared_tmp: Path, tmp_path: Path,
        store: Path) -> None:
    env = _env_without_runtime_dir(env, shared_tmp)
    cli.env = env
    planted, log, impostor = _plant(shared_tmp, store)
    w = Watch([root], store, env)
    try:
        ready = w.ready()
        fallback = Path(env["XDG_STATE_HOME"]) / "guardian" / "run"
        assert ready["socket"] == str(fallback / socket_name(store)), ready
        w.wait(lambda e: e["event"] == "warning" and str(planted) in e["message"]
               and "not used" in e["message"])
        assert oct(os.stat(fallback).st_mode & 0o777) == "0o700"
        status = cli.json("status")
        assert status["running"] is True and status["pid"] == w.proc.pid
        m = w.mark()
        p = cli.run("apply", str(_manifest(tmp_path)), "--root", str(root), "--json")
        assert p.returncode == 0, p.stderr
        assert (root / "secret.txt").read_text() == "the manifest's secret"
        assert w.version(root / "secret.txt", start=m)["origin"] == "batch"  # the daemon's
        assert log.read_bytes() == b"", "the impostor received a request"
        assert w.stop() == 0
    finally:
        w.close()
        _stop(impostor)
    assert not w.raw


@needs_nobody
def test_a_socket_of_another_user_in_our_own_dir_is_refused(
        root: Path, cli: Cli, env: dict[str, str], shared_tmp: Path, tmp_path: Path,
        store: Path) -> None:
    """Our runtime directory passes every check, but the socket at the daemon's path is
    another user's (moved there, as a race between the check and the connect could do):
    only the peer's uid (SO_PEERCRED) tells, and nothing may be sent to it."""
    runtime = Path(env["XDG_RUNTIME_DIR"]) / "guardian"
    runtime.mkdir(mode=0o700)
    theirs = shared_tmp / "theirs"
    subprocess.run([*NOBODY, "mkdir", "-m", "0755", str(theirs)], check=True)
    log = shared_tmp / "impostor.log"
    subprocess.run([*NOBODY, "touch", str(log)], check=True)
    impostor = _impostor(theirs / "s.sock", log)
    try:
        os.rename(theirs / "s.sock", runtime / socket_name(store))
        p = cli.run("apply", str(_manifest(tmp_path)), "--root", str(root), "--json")
        assert p.returncode == 0, p.stderr
        assert (root / "secret.txt").read_text() == "the manifest's secret"
        assert log.read_bytes() == b"", "the impostor received a request"
        assert b"runs as uid 65534" in p.stderr, p.stderr
        wait_until(lambda: cli.json("status")["running"] is False, what="status not fooled")
    finally:
        _stop(impostor)


def test_a_socket_path_longer_than_sun_path_still_works(root: Path, cli: Cli,
                                                        env: dict[str, str], store: Path,
                                                        tmp_path: Path) -> None:
    """The fallback directory is under the state dir, whose path may be long: a socket path
    over sun_path's 107 bytes is bound and reached through /proc/self/fd."""
    runtime = Path(env["XDG_RUNTIME_DIR"])
    (runtime / "guardian").symlink_to(tmp_path)  # not a directory of ours: not used
    env = dict(env, XDG_STATE_HOME=str(tmp_path / ("s" * 80)))
    cli.env = env
    w = Watch([root], store, env)
    try:
        socket = w.ready()["socket"]
        assert len(socket.encode()) > 107 and socket.startswith(env["XDG_STATE_HOME"])
        assert cli.json("status")["pid"] == w.proc.pid
        m = w.mark()
        (root / "f.txt").write_text("through the daemon")
        assert cli.json("snapshot", str(root / "f.txt"), cwd=root)["recorded"] in (0, 1)
        w.version(root / "f.txt", start=m)
        assert w.stop() == 0
    finally:
        w.close()
