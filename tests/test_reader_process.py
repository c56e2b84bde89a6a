"""The inotify reader process (guardian.daemon.reader_process): it reads each closed file as
soon as its event is read, in a process of its own, so a version rewritten while the daemon is
busy (or stopped) is still recorded; the daemon goes on if that process dies. A real
``guardian watch``, real files, the kernel's own inotify events to know when a file was read."""

from __future__ import annotations

import ctypes
import os
import select
import signal
import struct
from pathlib import Path

import pytest

from guardian.daemon.reader_process import ENV
from guardian.daemon.watcher import Bridge, PromptEvents

from .conftest import Cli, reader_processes, sha256, wait_until
from .test_capture_symlinks import INSIDE, assert_nothing_from_outside, outside, settle

__all__ = ["outside"]  # a fixture, used by name

IN_CLOSE_NOWRITE = 0x10

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="Linux only")


class FileReads:
    """The kernel's word that someone read ``path`` and closed it (IN_CLOSE_NOWRITE): with
    the daemon stopped, only its reader process can have."""

    def __init__(self, path: Path) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self.fd >= 0
        wd = libc.inotify_add_watch(self.fd, os.fsencode(path), IN_CLOSE_NOWRITE)
        assert wd >= 0, os.strerror(ctypes.get_errno())

    def wait(self, timeout: float = 20) -> None:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        assert ready, "the reader process did not read the file"
        buf = os.read(self.fd, 4096)
        assert struct.unpack_from("iIII", buf)[1] & IN_CLOSE_NOWRITE

    def close(self) -> None:
        os.close(self.fd)


def test_versions_rewritten_while_the_daemon_is_stopped_are_all_kept(
        root: Path, cli: Cli, watch) -> None:
    """The daemon stopped (as a busy one is, waiting for the GIL): the reader process still
    reads each version before the next one replaces it; resumed, the daemon records them all.
    Without the reader process only the last one could be read."""
    hot = root / "hot.txt"
    hot.write_text("before\n")
    w = watch(root)  # ready: hot.txt is recorded, its directory watched
    assert reader_processes(w.proc.pid)
    reads = FileReads(hot)
    contents = [f"version {i}\n" for i in range(4)]
    os.kill(w.proc.pid, signal.SIGSTOP)
    try:
        for text in contents:
            hot.write_text(text)
            reads.wait()  # read by the reader process, before the next write
    finally:
        os.kill(w.proc.pid, signal.SIGCONT)
        reads.close()
    w.version(hot, sha256=sha256(contents[-1].encode()))
    logged = [v["sha256"] for v in reversed(cli.log(hot))]
    assert logged == [sha256(t.encode()) for t in ["before\n", *contents]]
    assert w.stop() == 0


def test_the_daemon_reads_for_itself_when_the_reader_process_is_turned_off(
        root: Path, cli: Cli, watch, env) -> None:
    w = watch(root, env=dict(env, **{ENV: "0"}))
    assert reader_processes(w.proc.pid) == []
    (root / "a.txt").write_text("one\n")
    w.version(root / "a.txt", sha256=sha256(b"one\n"))
    assert w.stop() == 0


def test_the_daemon_goes_on_when_its_reader_process_dies(root: Path, cli: Cli, watch) -> None:
    w = watch(root)
    (root / "first.txt").write_text("first\n")
    w.version(root / "first.txt")
    [child] = reader_processes(w.proc.pid)
    os.kill(child, signal.SIGKILL)
    w.wait(lambda e: e["event"] == "warning" and "reader process" in e.get("message", ""),
           what="a warning that the reader process died")
    wait_until(lambda: [p for p in reader_processes(w.proc.pid) if p != child],
               what="a new reader process")
    (root / "after.txt").write_text("after\n")
    w.version(root / "after.txt", sha256=sha256(b"after\n"))
    assert w.proc.poll() is None
    assert w.stop() == 0


def test_a_directory_swapped_for_a_symlink_before_the_reader_gets_to_it_is_not_read_through(
        root: Path, outside: Path, cli: Cli, watch) -> None:
    """The reader process stopped between a write and a swap of its directory for a link to
    outside the root: when it reads the event, the path it knows leads through the link, and
    it must not follow it (each component opened with O_NOFOLLOW)."""
    conf = root / "conf"
    conf.mkdir()
    (conf / "app.json").write_bytes(INSIDE)
    w = watch(root)
    [child] = reader_processes(w.proc.pid)
    os.kill(child, signal.SIGSTOP)
    try:
        (conf / "app.json").write_bytes(b'{"app": "inside", "n": 2}\n')
        os.rename(conf, root / "conf.bak")
        os.symlink("../outside", conf)
    finally:
        os.kill(child, signal.SIGCONT)
    settle(cli)
    versions = cli.log()
    assert_nothing_from_outside(versions)
    assert cli.log(root / "conf.bak" / "app.json")[0]["sha256"] == sha256(
        b'{"app": "inside", "n": 2}\n')
    assert w.proc.poll() is None
    assert w.stop() == 0


def test_a_fifo_closed_after_a_write_is_never_opened(root: Path, cli: Cli, watch) -> None:
    """A FIFO opened for writing and closed raises the same close-write event as a file; a
    blocking open of it for reading would hang the reader process (nobody writes to it)."""
    w = watch(root)
    fifo = root / "pipe"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # a writer that opens without a reader
    os.write(fd, b"through the pipe\n")
    os.close(fd)
    (root / "after.txt").write_text("after\n")
    w.version(root / "after.txt", sha256=sha256(b"after\n"))
    assert not [v for v in cli.log() if v["relpath"] == "pipe"]
    assert reader_processes(w.proc.pid) and w.proc.poll() is None
    assert w.stop() == 0


class _Event:
    """An inotify close-write event as the watch group hands it to PromptEvents."""

    def __init__(self, path: bytes, read: object) -> None:
        from watchdog.observers.inotify_c import InotifyEvent

        class Ev(InotifyEvent):
            pass

        self.ev = Ev(1, 0x8, 0, os.path.basename(path))
        object.__setattr__(self.ev, "read", read)
        self.path = path


def test_a_read_from_another_path_is_not_taken_for_the_event() -> None:
    """The reader process resolves a watch's path from what the daemon told it, which may be
    behind (a directory renamed since): its read counts only if it read the path the daemon
    finds for the event."""
    taken: list[tuple[bytes, object]] = []

    def on_closed(path: bytes, read: object) -> bool:
        taken.append((path, read))
        return True

    events = PromptEvents(Bridge(), b"/r", on_closed)
    read = (b"/r/d/f.txt", (), b"", b"data")
    events.put_event(_Event(b"/r/d/f.txt", read))
    events.put_event(_Event(b"/r/renamed/f.txt", read))
    assert taken == [(b"/r/d/f.txt", read), (b"/r/renamed/f.txt", None)]
