"""Shared fixtures: real temp dirs, real subprocesses of the real CLI, real daemons.

Nothing here mocks Guardian. Waiting is always on a condition with a timeout, never a sleep.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

DEFAULT_TIMEOUT = 20.0


def wait_until(cond: Callable[[], Any], timeout: float = DEFAULT_TIMEOUT, what: str = "") -> Any:
    """Poll ``cond`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or cond}")
        time.sleep(delay)  # polling interval of a condition wait, not synchronisation
        delay = min(delay * 2, 0.05)


def reader_processes(pid: int) -> list[int]:
    """The inotify reader processes of daemon ``pid`` (guardian.daemon.reader_process)."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if b"reader_process.py" in cmdline:
                out.append(child)
    return out


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An environment that keeps every Guardian location inside this test's temp dir."""
    runtime = tempfile.mkdtemp(prefix="grt", dir="/tmp")  # short: sockets hold 108 bytes
    e = dict(os.environ)
    e.update({
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_RUNTIME_DIR": runtime,
        "GUARDIAN_STORE": "",
        "PYTHONUNBUFFERED": "1",
    })
    e.pop("GUARDIAN_STORE")
    yield e
    shutil.rmtree(runtime, ignore_errors=True)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    r.mkdir()
    return r.resolve()


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


class Cli:
    """Runs ``python -m guardian`` as a subprocess, like a user would."""

    def __init__(self, env: dict[str, str], store: Path | None, cwd: Path) -> None:
        self.env = env
        self.store = store
        self.cwd = cwd

    def run(self, *args: str, input: bytes | None = None, check: bool | None = None,
            store: bool = True, timeout: float = 60, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
        argv = [sys.executable, "-m", "guardian", *args]
        if store and self.store is not None and args and args[0] not in ("--version", "--help"):
            argv += ["--store", str(self.store)]
        p = subprocess.run(argv, input=input, capture_output=True, env=env or self.env,
                           cwd=cwd or self.cwd, timeout=timeout, check=False)
        if check:
            assert p.returncode == 0, (args, p.returncode, p.stderr.decode(errors="replace"))
        return p

    def json(self, *args: str, **kw: Any) -> Any:
        p = self.run(*args, "--json", check=True, **kw)
        return json.loads(p.stdout)

    def log(self, path: Path | str | None = None) -> list[dict[str, Any]]:
        args = ["log"] + ([str(path)] if path is not None else []) + ["-n", "0"]
        p = self.run(*args, "--json")
        if p.returncode != 0:
            return []
        versions: list[dict[str, Any]] = json.loads(p.stdout)["versions"]
        return versions


@pytest.fixture
def cli(env: dict[str, str], store: Path, tmp_path: Path) -> Cli:
    return Cli(env, store, tmp_path)


class Watch:
    """A real ``guardian watch`` subprocess and the JSON lines it logs on stderr."""

    def __init__(self, roots: list[Path], store: Path, env: dict[str, str],
                 extra: list[str] | None = None, preexec: Callable[[], None] | None = None,
                 argv_prefix: list[str] | None = None, argv: list[str] | None = None,
                 cwd: Path | None = None) -> None:
        """``argv``: run exactly that command instead (a shipped example's command line)."""
        argv = argv or [*(argv_prefix or []), sys.executable, "-m", "guardian", "watch",
                        *map(str, roots), "--store", str(store), *(extra or [])]
        self.proc = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     env=env, preexec_fn=preexec, cwd=cwd)
        self.events: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            text = line.decode("utf-8", "replace").rstrip("\n")
            with self.cond:
                try:
                    obj = json.loads(text)
                    if not isinstance(obj, dict):
                        raise ValueError
                    self.events.append(obj)
                except ValueError:
                    self.raw.append(text)
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait(self, pred: Callable[[dict[str, Any]], bool], timeout: float = DEFAULT_TIMEOUT,
             what: str = "", start: int = 0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for ev in self.events[start:]:
                    if pred(ev):
                        return ev
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self.thread.is_alive()):
                    raise AssertionError(
                        f"no event {what or pred} within {timeout}s; exit={self.proc.poll()}; "
                        f"events={self.events[-15:]}; raw={self.raw[-10:]}")
                self.cond.wait(min(left, 0.5))

    def ready(self, timeout: float = 60) -> dict[str, Any]:
        return self.wait(lambda e: e.get("event") == "ready", timeout, "ready")

    def version(self, path: Path | str, kind: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                start: int = 0, sha256: str | None = None) -> dict[str, Any]:
        p = str(path)
        return self.wait(
            lambda e: e.get("event") == "version" and e.get("path") == p
            and (kind is None or e.get("kind") == kind)
            and (sha256 is None or e.get("sha256") == sha256),
            timeout, f"version of {p} kind={kind} sha={sha256}", start)

    def mark(self) -> int:
        with self.cond:
            return len(self.events)

    def versions_since(self, start: int) -> list[dict[str, Any]]:
        with self.cond:
            return [e for e in self.events[start:] if e.get("event") == "version"]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self.close()
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.thread.join(10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture
def watch(env: dict[str, str], store: Path) -> Iterator[Callable[..., Watch]]:
    started: list[Watch] = []

    def start(*roots: Path, extra: list[str] | None = None, ready: bool = True,
              **kw: Any) -> Watch:
        w = Watch(list(roots), store, kw.pop("env", env), extra, **kw)
        started.append(w)
        if ready:
            w.ready()
        return w

    yield start
    for w in started:
        w.close()
        # The headless contract: every stderr line is one JSON object.
        assert not w.raw, f"non-JSON lines on stderr: {w.raw[:5]}"


def sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()
