"""Per-target locks of the batch writer: two batches never write the same file at once.

On Linux a target's lock is a one-byte open-file-description (OFD) lock on one shared lock
file, ``$XDG_RUNTIME_DIR/guardian/locks/targets.lock``, at an offset derived from the SHA-256
of the target's absolute path. OFD locks belong to the open file, not the process, so two
batches in one process exclude each other as well as two processes do; taking one is one
syscall (~1 us), and no lock file is created per target (the per-file scheme cost a file
creation per new path, 30-50 us on ext4, and left a file behind for every path ever
written). Elsewhere (no ``F_OFD_SETLK``) each target has its own lock file with an exclusive
``flock``, the kernel lock ``filelock.UnixFileLock`` takes.

Locks nest like a database's intention locks: a target's write lock comes with a read lock
on its directory's byte, and a batch with many targets in one directory takes that
directory's byte for writing instead of one lock per file. The kernel checks every new lock
against all held on the file, so a thousand per-file locks cost ~6 ms; one directory lock
costs one syscall. Two batches on different files of a directory still run side by side
unless one of them writes many files there.

Locks are taken in sorted order, each with a deadline: batches cannot deadlock, and a batch
that cannot get a lock in time fails naming the target.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import struct
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from guardian.errors import Busy
from guardian.locations import ensure_private_dir, runtime_dir

_OFD_SETLK: int | None = getattr(fcntl, "F_OFD_SETLK", None)
#: Linux's struct flock: l_type, l_whence (short), l_start, l_len (off_t), l_pid (pid_t).
FLOCK_STRUCT = "hhqqi4x"
_OFFSETS = (1 << 62) - 1


def offset(path: bytes) -> int:
    """The byte of the shared lock file that stands for ``path``."""
    return int.from_bytes(hashlib.sha256(path).digest()[:8], "big") & _OFFSETS


def flock_request(kind: int, start: int, length: int) -> bytes:
    """A struct flock for fcntl (Linux layout): ``length`` 0 means to the end of the file."""
    return struct.pack(FLOCK_STRUCT, kind, os.SEEK_SET, start, length, 0)


#: From this many targets in one directory, a batch write-locks the directory instead.
DIRECTORY_LOCK_MIN = 16


@contextlib.contextmanager
def hold(paths: Iterable[bytes], timeout: float) -> Iterator[None]:
    """Hold the lock of every path (absolute, as bytes) until the block ends.

    Raises :class:`Busy` naming the first path whose lock stayed held for ``timeout`` s.
    """
    wanted = list(paths)
    directory = ensure_private_dir(runtime_dir(create=True) / "locks")  # (0700 all the way)
    deadline = time.monotonic() + timeout
    if _OFD_SETLK is None:
        with _hold_files(directory, wanted, deadline):
            yield
        return
    fd = _open_shared(directory)
    try:
        for start, (kind, i) in sorted(plan(wanted).items()):
            request = flock_request(kind, start, 1)
            while True:
                try:
                    fcntl.fcntl(fd, _OFD_SETLK, request)
                    break
                except OSError as e:
                    if e.errno not in (errno.EAGAIN, errno.EACCES):  # held elsewhere
                        raise
                    if time.monotonic() >= deadline:
                        raise Busy(i) from None
                    time.sleep(0.01)
        yield
    finally:
        os.close(fd)  # releases every OFD lock taken through it


def plan(paths: list[bytes]) -> dict[int, tuple[int, int]]:
    """The locks that stand for ``paths``: offset -> (F_WRLCK or F_RDLCK, index of the first
    path it is taken for). A byte wanted both ways (a directory made by the batch, with
    files written in it) is write-locked."""
    by_dir: dict[bytes, list[int]] = {}
    for i, p in enumerate(paths):
        by_dir.setdefault(p.rpartition(b"/")[0] or b"/", []).append(i)
    locks: dict[int, tuple[int, int]] = {}

    def want(path: bytes, kind: int, i: int) -> None:
        start = offset(path)
        held = locks.get(start)
        if held is None or (kind == fcntl.F_WRLCK and held[0] != fcntl.F_WRLCK):
            locks[start] = (kind, i if held is None else held[1])

    for d, members in by_dir.items():
        if len(members) >= DIRECTORY_LOCK_MIN:
            want(d, fcntl.F_WRLCK, members[0])
            continue
        want(d, fcntl.F_RDLCK, members[0])
        for i in members:
            want(paths[i], fcntl.F_WRLCK, i)
    return locks


def _open_shared(directory: Path) -> int:
    """The shared lock file; made on first use, when the per-target lock files earlier
    versions left (one per path ever written) are removed: nothing takes those on Linux."""
    path = directory / "targets.lock"
    flags = os.O_RDWR | os.O_CLOEXEC
    try:
        return os.open(path, flags, 0o600)
    except FileNotFoundError:
        pass
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return os.open(path, flags, 0o600)
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            if _LEGACY.fullmatch(entry.name):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
    return fd


_LEGACY = re.compile(r"[0-9a-f]{32}\.lock")


def _key(path: bytes) -> str:
    return hashlib.sha256(path).hexdigest()[:32]


@contextlib.contextmanager
def _hold_files(directory: os.PathLike[str], wanted: list[bytes],
                deadline: float) -> Iterator[None]:
    held: list[int] = []
    try:
        for i, key in sorted(enumerate(map(_key, wanted)), key=lambda x: x[1]):
            fd = os.open(os.path.join(directory, f"{key}.lock"),
                         os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            held.append(fd)
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise Busy(i) from None
                    time.sleep(0.01)
        yield
    finally:
        for fd in reversed(held):
            os.close(fd)
