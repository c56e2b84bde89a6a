"""The batch writer's filesystem side: temps (unnamed where the filesystem allows), one
flush for all, then each new content put in place; replaced files released afterwards."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from guardian import faults
from guardian.batchtarget import Target, signature
from guardian.errors import OutsideRootError
from guardian.paths import SEP
from guardian.store import Store

# Temps are written by a few threads from this many files and bytes on: below, creating a
# small file is mostly Python and kernel work the GIL hand-offs only slow down (measured on
# two cores: 1,000 x 4 KiB took as long or longer with 4 threads).
PARALLEL_MIN = 8
PARALLEL_BYTES = 4 * 1024 * 1024


# ----------------------------------------------------------------------------- temps
def parallel(targets: list[Target]) -> bool:
    writes = [t for t in targets if t.final is not None and not t.final_dir]
    return len(writes) >= PARALLEL_MIN and sum(len(t.final or b"") for t in writes) \
        >= PARALLEL_BYTES


def write_temps(targets: list[Target], fds: Budget, *, parallel: bool) -> dict[int, int]:
    """Write every new content beside its target (not yet durable: see group_sync); return
    a directory fd per filesystem written to.

    A new file is written to an unnamed ``O_TMPFILE`` inode (held open until it is linked
    into place: no directory entry to create and rename, nothing to sweep after a crash); a
    replacement goes to a named temp file that is renamed over its target. Many files are
    written by a few threads, each taking a contiguous slice (the kernel's share of creating
    a file runs without the GIL).
    """
    writes = [t for t in targets if t.final is not None and not t.final_dir]
    for t in writes:  # open (and create) every parent now: the threads only look them up
        t.where(create=True)
    anonymous = fds if _TMPFILE_OK else Budget(0)
    devices: dict[int, int] = {}  # st_dev -> a directory fd on it, for syncfs

    def one(t: Target) -> None:
        t0 = time.perf_counter_ns()
        faults.point("batch.temp_write")
        data = t.final
        assert t.temp is not None and data is not None
        dfd = t.where()[0]
        fd = -1
        if t.kind == "absent" and anonymous.take():
            # Unnamed, so it may be made with its final mode at once (as ``open`` would).
            fd = _open_tmpfile(dfd, t.mode)
            if fd < 0:
                anonymous.give()
        named = fd < 0
        if named:  # visible under its temp name: private until its content is complete
            fd = os.open(t.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600, dir_fd=dfd)
        try:
            n = os.write(fd, data)
            if n < len(data):
                view = memoryview(data)[n:]
                while view:
                    view = view[os.write(fd, view):]
            st = os.fstat(fd)
            if named or stat.S_IMODE(st.st_mode) != t.mode:  # umask, a default ACL
                os.fchmod(fd, t.mode)
            if t.current_uid is not None and (t.current_uid, t.current_gid) != (
                    os.getuid(), os.getgid()):
                with contextlib.suppress(PermissionError):
                    os.fchown(fd, t.current_uid,
                              -1 if t.current_gid is None else t.current_gid)
            t.written = (st.st_dev, st.st_ino)
            if st.st_dev not in devices:
                devices[st.st_dev] = dfd
        except BaseException:
            os.close(fd)
            raise
        if named:
            os.close(fd)
        else:
            t.tmpfd = fd
        t.elapsed_ns += time.perf_counter_ns() - t0

    if parallel:
        workers = min(4, (os.cpu_count() or 2) * 2)
        slices = [writes[i::workers] for i in range(workers)]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="guardian-batch") as pool:
            def run(part: list[Target]) -> None:
                for t in part:
                    one(t)

            for f in [pool.submit(run, part) for part in slices]:
                f.result()
        for t in writes:
            t.optimisations.add("parallel_io")
    else:
        for t in writes:
            one(t)
    if len(writes) > 1:
        for t in writes:
            t.optimisations.add("group_sync")
    return devices


class Budget:
    """How many more descriptors a batch may hold open (unnamed temps, replaced files): a
    thread-safe countdown."""

    def __init__(self, n: int) -> None:
        self._left = n
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self._left <= 0:
                return False
            self._left -= 1
            return True

    def give(self) -> None:
        with self._lock:
            self._left += 1


_TMPFILE_OK: bool = hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")


def fd_budget() -> Budget:
    """How many descriptors a batch may hold open: unnamed temps until they are linked, and
    replaced files until they are released. The soft limit is raised toward the hard one
    (as most servers do); past the budget, temps get names and old files are closed."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        target = 1 << 20 if hard == resource.RLIM_INFINITY else min(hard, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return Budget(max(0, (soft - 1024) // 2))


def _open_tmpfile(dfd: int, mode: int) -> int:
    """An unnamed file in directory ``dfd`` (-1 where the filesystem has no O_TMPFILE)."""
    try:
        return os.open(".", os.O_WRONLY | os.O_TMPFILE | os.O_CLOEXEC, mode, dir_fd=dfd)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            return -1
        raise


def close_fds(targets: list[Target]) -> None:
    close_tmpfds(targets)
    for t in targets:
        if t.oldfd is not None:
            with contextlib.suppress(OSError):
                os.close(t.oldfd)
            t.oldfd = None


def release_later(targets: list[Target]) -> None:
    """Close the replaced files' descriptors on a background thread.

    The last close of a replaced inode frees its blocks, which costs far more than the
    rename itself (~0.1 ms a file on ext4 mounted with ``discard``, where it is a TRIM). The
    batch held each old file open, so its renames only swapped names; the freeing happens
    here, after the batch has returned. Nothing in it is needed: the old bytes are in the
    store, durably, since before the first rename.
    """
    fds = [t.oldfd for t in targets if t.oldfd is not None]
    for t in targets:
        t.oldfd = None
    if not fds:
        return
    if len(fds) < 16:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        return

    def close_all() -> None:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    thread = threading.Thread(target=close_all, name="guardian-release", daemon=True)
    with _releasing_lock:
        _releasing[:] = [t for t in _releasing if t.is_alive()] + [thread]
    thread.start()


_releasing: list[threading.Thread] = []


_releasing_lock = threading.Lock()


def wait_released(timeout: float | None = None) -> None:
    """Wait until every replaced file of earlier batches is released (benchmarks, tests)."""
    with _releasing_lock:
        threads = list(_releasing)
    for thread in threads:
        thread.join(timeout)


def close_tmpfds(targets: list[Target]) -> None:
    for t in targets:
        if t.tmpfd is not None:
            with contextlib.suppress(OSError):
                os.close(t.tmpfd)
            t.tmpfd = None


def group_sync(writes: list[Target], devices: dict[int, int], store: Store | None) -> None:
    """Make every temp durable, and (``store``) every commit of the store so far: one
    ``syncfs`` per filesystem (the store's included) instead of an fsync per file; without
    syncfs, an fsync per temp."""
    sync = syncfs()
    if sync is not None:
        for fd in devices.values():
            if sync(fd) != 0:
                code = ctypes.get_errno()
                raise OSError(code, f"syncfs: {os.strerror(code)}")
        if store is not None and os.stat(store.path).st_dev not in devices:
            store.sync_wal()
        return
    for t in writes:
        if t.tmpfd is not None:
            os.fsync(t.tmpfd)
            continue
        if t.temp is None or t.final is None or t.final_dir:
            continue
        dfd, _name = t.where()
        fd = os.open(t.temp, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dfd)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    if store is not None:
        store.sync_wal()


_SYNCFS: Any = False


def syncfs() -> Callable[[int], int] | None:
    global _SYNCFS
    if _SYNCFS is False:
        _SYNCFS = None
        if not os.environ.get("GUARDIAN_NO_SYNCFS"):
            with contextlib.suppress(OSError, AttributeError):
                libc = ctypes.CDLL(None, use_errno=True)
                fn = libc.syncfs
                fn.argtypes = [ctypes.c_int]
                _SYNCFS = fn
    return _SYNCFS  # type: ignore[no-any-return]


# ----------------------------------------------------------------------------- in place
def put_in_place(targets: list[Target]) -> None:
    """Put every new content in place: link an unnamed temp, rename a named one over its
    target; delete, mkdir; then fsync each directory touched."""
    dirs: set[tuple[int, bytes]] = set()
    try:
        for t in targets:
            t0 = time.perf_counter_ns()
            fs = t.rootfs
            faults.point("batch.rename")
            if t.final_dir:
                fs.makedirs(t.relpath)
            elif t.final is None:  # a delete: the directory is fsynced below, once
                dfd, name = t.where()
                _unchanged_since_read(t, dfd, name)
                os.unlink(name, dir_fd=dfd)
            elif t.tmpfd is not None:
                _link(t)
            else:
                assert t.temp is not None
                dfd, name = t.where()
                if t.kind == "file":
                    _unchanged_since_read(t, dfd, name)
                    os.rename(t.temp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
                else:
                    _link_named(t, dfd, name)
            dirs.add((t.root.id, t.relpath.rpartition(SEP)[0]))
            t.elapsed_ns += time.perf_counter_ns() - t0
    finally:
        close_tmpfds(targets)
    fs_of = {t.root.id: t.rootfs for t in targets}
    for rid, d in sorted(dirs):
        fs_of[rid].fsync_dir(d)
    faults.point("batch.applied")


def _link(t: Target) -> None:
    """Give an unnamed temp its target's name. It never replaces anything: a file that
    appeared there since the batch looked (another program's) fails the batch, which rolls
    back after recording it."""
    assert t.tmpfd is not None and t.temp is not None and t.final is not None
    dfd, name = t.where()
    try:
        os.link(f"/proc/self/fd/{t.tmpfd}", name, dst_dir_fd=dfd, follow_symlinks=True)
        return
    except FileExistsError:
        raise t.error("appeared while the batch ran (another program wrote it); not "
                      "replacing it", "conflict") from None
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.EXDEV, errno.EPERM, errno.EACCES):
            raise
    # No usable /proc: the named way, durable before it is linked into place.
    fd = os.open(t.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600, dir_fd=dfd)
    try:
        view = memoryview(t.final)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, t.mode)
        os.fsync(fd)
        st = os.fstat(fd)
        t.written = (st.st_dev, st.st_ino)
    finally:
        os.close(fd)
    _link_named(t, dfd, name)


def _link_named(t: Target, dfd: int, name: bytes) -> None:
    """A named temp into the place of a target that was absent: a link, which (unlike a
    rename) fails if another program created the file meanwhile; then the temp name goes."""
    assert t.temp is not None
    try:
        os.link(t.temp, name, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
    except FileExistsError:
        raise t.error("appeared while the batch ran (another program wrote it); not "
                      "replacing it", "conflict") from None
    os.unlink(t.temp, dir_fd=dfd)


def _unchanged_since_read(t: Target, dfd: int, name: bytes) -> None:
    """Refuse to replace a file another program changed since the batch read it: its bytes
    would be lost (the rollback that follows records them and leaves them in place)."""
    try:
        now: tuple[int, ...] | None = signature(os.stat(name, dir_fd=dfd,
                                                        follow_symlinks=False))
    except FileNotFoundError:
        now = None
    if now != t.read_sig:
        raise t.error("changed while the batch ran (another program wrote it); not "
                      "replacing it", "conflict")


def lstat(t: Target) -> os.stat_result | None:
    fs = t.rootfs
    if not fs.caching:
        return fs.lstat(t.relpath)
    try:
        dfd, name = t.where()
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except (FileNotFoundError, OutsideRootError):
        return None
