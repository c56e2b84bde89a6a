"""The process that reads inotify's events, and each file closed after a write, for the daemon.

At 2,000 writes/s the daemon lost 2-14 % of the versions: each was rewritten before the
inotify reader thread got to it. That thread waited for the GIL about 80 % of the time it was
busy (the store thread and the event loop hold it), so no change inside the daemon's process
made it keep up. This process has a GIL of its own and nothing else to do: it reads the
inotify descriptor (the daemon's own instance, inherited), reads each small regular file
closed after a write as soon as its event is read, and sends both to the daemon down one
pipe, in order. The daemon parses the events as watchdog would have, and takes each read
as the early read of its close (:mod:`guardian.capture.early`).

What the daemon still does itself: every watch is added and removed there (watchdog's
bookkeeping), and this process hears of each watch descriptor's path from it over a control
pipe. Those paths may be behind the events read here (a directory renamed since): the daemon
uses a read only if the path it was read from is the path the daemon itself finds for that
event, and reads the file itself otherwise, as it did before.

It runs with ``python -I -S`` on this file (stdlib only, nothing of Guardian imported); it
exits when the daemon closes the control pipe or the daemon's end of the event pipe. Every
file is opened as the daemon opens it: each directory from the root down with
``O_NOFOLLOW | O_DIRECTORY``, the file with ``O_NOFOLLOW | O_NONBLOCK`` after an ``lstat``
said it is a regular file (no FIFO or device is ever opened), read only up to ``limit`` bytes,
and dropped if it changed during the read.

Frames both ways: a 4-byte little-endian length, then a ``marshal`` of a tuple.
- daemon -> here: ``("root", path)``, ``("wd", wd, dirpath)``, ``("rm", wd)``.
- here -> daemon: ``(events, reads)``: the raw buffer of inotify events as read(2) returned
  it, and a list of ``(offset, path, stat_args, sha256, data)``: the read of the file closed
  by the event at ``offset`` in that buffer (``stat_args`` rebuild its ``os.stat_result``).
"""

from __future__ import annotations

import errno
import hashlib
import marshal
import os
import select
import stat
import struct
import sys
from typing import Any

IN_CLOSE_WRITE = 0x00000008
IN_ISDIR = 0x40000000
_EVENT = struct.Struct("iIII")
_LEN = struct.Struct("<I")
#: Bytes of frames waiting for the daemon past which closed files are no longer read (the
#: daemon reads them itself), and twice that, past which inotify is not read either (the
#: kernel's queue holds the events; if it overflows, the daemon reconciles).
PENDING_MAX = 32 * 1024 * 1024
_BUFFER = 2048 * (16 + 256)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def frame(message: Any) -> bytes:
    data = marshal.dumps(message)
    return _LEN.pack(len(data)) + data


def frames(buf: bytearray) -> list[object]:
    """Complete frames at the start of ``buf`` (taken out of it), decoded."""
    out: list[object] = []
    at = 0
    n = len(buf)
    while at + 4 <= n:
        size = _LEN.unpack_from(buf, at)[0]
        if at + 4 + size > n:
            break
        # Frames come only from the other end of a pipe private to the two processes.
        out.append(marshal.loads(bytes(buf[at + 4:at + 4 + size])))  # noqa: S302
        at += 4 + size
    del buf[:at]
    return out


class Reader:
    def __init__(self, temp_prefix: bytes, limit: int) -> None:
        self.temp_prefix = temp_prefix
        self.limit = limit
        self.roots: list[bytes] = []
        self.dirs: dict[int, bytes] = {}

    def control(self, message: object) -> None:
        assert isinstance(message, tuple)
        if message[0] == "root":
            if message[1] not in self.roots:
                self.roots.append(message[1])
                self.roots.sort(key=len, reverse=True)  # the innermost root first
        elif message[0] == "wd":
            self.dirs[message[1]] = message[2]
        elif message[0] == "rm":
            self.dirs.pop(message[1], None)

    def reads(self, buf: bytes, read_files: bool) -> list[tuple[object, ...]]:
        out: list[tuple[object, ...]] = []
        at, n = 0, len(buf)
        while at + 16 <= n:
            wd, mask, _cookie, length = _EVENT.unpack_from(buf, at)
            if read_files and mask & IN_CLOSE_WRITE and not mask & IN_ISDIR and length:
                name = buf[at + 16:at + 16 + length].rstrip(b"\0")
                d = self.dirs.get(wd)
                if d is not None and name and not name.startswith(self.temp_prefix):
                    got = self.read(d, name)
                    if got is not None:
                        out.append((at, d + b"/" + name, *got))
            at += 16 + length
        return out

    def read(self, d: bytes, name: bytes) -> tuple[object, ...] | None:
        """(stat_args, sha256, data) of regular file ``d/name``, or None (anything else:
        the daemon reads it itself)."""
        root = next((r for r in self.roots if d == r or d.startswith(r + b"/")), None)
        if root is None:
            return None
        try:
            dfd = os.open(root, _DIR_FLAGS)
        except OSError:
            return None
        try:
            for part in d[len(root):].split(b"/"):
                if not part:
                    continue
                if part in (b".", b".."):
                    return None
                nfd = os.open(part, _DIR_FLAGS, dir_fd=dfd)
                os.close(dfd)
                dfd = nfd
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode) or st.st_size > self.limit:
                return None
            fd = os.open(name, _FILE_FLAGS, dir_fd=dfd)
        except OSError:
            return None
        finally:
            os.close(dfd)
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode) or before.st_size > self.limit:
                return None
            data = os.read(fd, before.st_size + 1)
            after = os.fstat(fd)
        except OSError:
            return None
        finally:
            os.close(fd)
        if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) \
                or len(data) != after.st_size:
            return None  # written meanwhile: the daemon reads it again
        return after.__reduce__()[1], hashlib.sha256(data).digest(), data


def serve(inotify_fd: int, ctl: int, out: int, temp_prefix: bytes, limit: int) -> int:
    reader = Reader(temp_prefix, limit)
    os.set_blocking(ctl, False)
    os.set_blocking(out, False)
    try:
        import fcntl

        fcntl.fcntl(out, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1024 * 1024)
    except OSError:
        pass  # the default size will do: frames wait here instead
    inbox = bytearray()
    pending = bytearray()
    poller = select.poll()
    poller.register(ctl, select.POLLIN)
    poller.register(out, 0)
    reading = False

    def drain_control() -> bool:
        """Read what the daemon sent; False once it closed the pipe."""
        while True:
            try:
                chunk = os.read(ctl, 65536)
            except BlockingIOError:
                break
            if not chunk:
                return False
            inbox.extend(chunk)
        for message in frames(inbox):
            reader.control(message)
        return True

    while True:
        want = len(pending) < 2 * PENDING_MAX
        if want != reading:
            if want:
                poller.register(inotify_fd, select.POLLIN)
            else:
                poller.unregister(inotify_fd)
            reading = want
        poller.modify(out, select.POLLOUT if pending else 0)
        try:
            ready = poller.poll()
        except InterruptedError:
            continue
        for fd, ev in ready:
            if fd == out and ev & (select.POLLERR | select.POLLHUP):
                return 0  # the daemon is gone
            if fd == ctl and not drain_control():
                return 0
            if fd == inotify_fd and ev & select.POLLIN:
                try:
                    buf = os.read(inotify_fd, _BUFFER)
                except OSError as e:
                    if e.errno in (errno.EINTR, errno.EAGAIN):
                        continue
                    raise
                if not buf:
                    return 0
                # The daemon's latest watches first: a new directory's first close is read.
                if not drain_control():
                    return 0
                pending += frame((buf, reader.reads(buf, len(pending) < PENDING_MAX)))
        if pending:
            try:
                n = os.write(out, pending)
            except BlockingIOError:
                continue
            except BrokenPipeError:
                return 0
            del pending[:n]


def main(argv: list[str]) -> int:
    inotify_fd, ctl, out, limit = (int(a) for a in argv[1:5])
    temp_prefix = os.fsencode(argv[5])
    return serve(inotify_fd, ctl, out, temp_prefix, limit)


if __name__ == "__main__":
    sys.exit(main(sys.argv))


#: ``0`` in the environment: the daemon reads inotify and closed files itself, as before.
ENV = "GUARDIAN_READER_PROCESS"
#: A read sent by the process: (path, stat_args, sha256, data).
Read = tuple[bytes, tuple[object, ...], bytes, bytes]


class ReaderProcess:
    """The daemon's end: starts the process, tells it the watches, takes its frames."""

    def __init__(self, inotify_fd: int, temp_prefix: bytes, limit: int) -> None:
        import subprocess
        import threading

        ctl_r, ctl_w = os.pipe2(os.O_CLOEXEC)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", os.path.abspath(__file__), str(inotify_fd),
                 str(ctl_r), str(out_w), str(limit), os.fsdecode(temp_prefix)],
                pass_fds=(inotify_fd, ctl_r, out_w), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except BaseException:
            for fd in (ctl_r, ctl_w, out_r, out_w):
                os.close(fd)
            raise
        os.close(ctl_r)
        os.close(out_w)
        self.ctl, self.out = ctl_w, out_r
        self._lock = threading.Lock()
        self._inbox = bytearray()
        self._closed = False

    @classmethod
    def start(cls, inotify_fd: int, temp_prefix: bytes, limit: int) -> ReaderProcess | None:
        """The process, or None (turned off in the environment, or it cannot be started:
        the daemon then reads for itself)."""
        if os.environ.get(ENV, "1") == "0":
            return None
        try:
            return cls(inotify_fd, temp_prefix, limit)
        except OSError:
            return None

    def send(self, message: tuple[object, ...]) -> None:
        """Tell the process (from any thread). A process that died is not told: the
        daemon's reader hears it died (end of file) and the watcher is restarted."""
        data = frame(message)
        with self._lock:
            if self._closed:
                return
            try:
                while data:
                    n = os.write(self.ctl, data)
                    data = data[n:]
            except OSError:
                pass

    def take(self, chunk: bytes) -> list[tuple[bytes, dict[int, Read]]]:
        """Frames completed by ``chunk`` (bytes read from :attr:`out`): each the raw
        buffer of events and the reads by offset of their event in it."""
        self._inbox += chunk
        out: list[tuple[bytes, dict[int, Read]]] = []
        for message in frames(self._inbox):
            assert isinstance(message, tuple)
            buf, reads = message
            out.append((buf, {r[0]: r[1:] for r in reads}))
        return out

    def exited(self) -> str:
        """How the process ended (it closed its end of the event pipe)."""
        try:
            code = self.proc.wait(5)
        except Exception:  # still running: it closed the pipe only
            return "the inotify reader process closed its pipe"
        return f"the inotify reader process exited with status {code}"

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            os.close(self.ctl)
        os.close(self.out)
        try:
            self.proc.wait(2)
        except Exception:
            self.proc.kill()
            self.proc.wait()


def parse(buf: bytes, reads: dict[int, Read]) -> list[tuple[int, int, int, bytes, Read | None]]:
    """The events of a raw buffer, as watchdog's ``InotifyFD.read_events`` keeps them
    (``wd`` -1 only for a queue overflow), each with the read of the file it closed."""
    out: list[tuple[int, int, int, bytes, Read | None]] = []
    at, n = 0, len(buf)
    while at + 16 <= n:
        wd, mask, cookie, length = _EVENT.unpack_from(buf, at)
        if wd != -1 or mask & 0x00004000:  # IN_Q_OVERFLOW
            name = buf[at + 16:at + 16 + length].rstrip(b"\0")
            out.append((wd, mask, cookie, name, reads.get(at)))
        at += 16 + length
    return out
