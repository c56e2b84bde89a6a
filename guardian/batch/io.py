"""The batch writer's filesystem side: temps (unnamed where the filesystem allows), one
flush for all, then each new content put in place; replaced files released afterwards."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from guardian import faults
from guardian.batch.target import Target, signature
from guardian.errors import OutsideRootError
from guardian.paths import SEP, show
from guardian.store.db import Store

# Temps are written by a few threads from this many files and bytes on: below, creating a
# small file is mostly Python and kernel work the GIL hand-offs only slow down (measured on
# two cores: 1,000 x 4 KiB took as long or longer with 4 threads).
PARALLEL_MIN = 8
PARALLEL_BYTES = 4 * 1024 * 1024


# ----------------------------------------------------------------------------- temps
def _writes(targets: list[Target]) -> list[Target]:
    """The targets whose temp is written before the commit point."""
    return [t for t in targets if t.final is not None and not t.final_dir and not t.deferred]


def parallel(targets: list[Target]) -> bool:
    writes = _writes(targets)
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
    writes = _writes(targets)
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
        if t.final_link:
            _temp_link(t, dfd, devices)
            t.elapsed_ns += time.perf_counter_ns() - t0
            return
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


def _temp_link(t: Target, dfd: int, devices: dict[int, int]) -> None:
    """A new symlink under the target's temp name, renamed or linked into place later (a
    symlink cannot be written in place, and has no unnamed form)."""
    assert t.temp is not None and t.final is not None
    os.symlink(t.final, t.temp, dir_fd=dfd)
    st = os.stat(t.temp, dir_fd=dfd, follow_symlinks=False)
    t.written = (st.st_dev, st.st_ino)
    if st.st_dev not in devices:
        devices[st.st_dev] = dfd


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
    store, durably, since before the first rename. A one-shot command hands what is left to
    a child process as it ends (:func:`hand_off_releases`).
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
    with _releasing_lock:
        _pending.extend(fds)
        if any(t.is_alive() for t in _releasing):
            return  # the running thread takes these too
        thread = threading.Thread(target=_close_pending, name="guardian-release", daemon=True)
        _releasing[:] = [thread]
    thread.start()


def _close_pending() -> None:
    while True:
        with _releasing_lock:
            if not _pending:
                return
            fd = _pending.pop()
        with contextlib.suppress(OSError):
            os.close(fd)


_releasing: list[threading.Thread] = []
_pending: list[int] = []  # replaced files not closed yet (guarded by _releasing_lock)
_releasing_lock = threading.Lock()


def wait_released(timeout: float | None = None) -> None:
    """Wait until every replaced file of earlier batches is released (benchmarks, tests)."""
    with _releasing_lock:
        threads = list(_releasing)
    for thread in threads:
        thread.join(timeout)


def hand_off_releases() -> int:
    """At the end of a one-shot command (``guardian apply``, ``restore``): hand what is left
    to a detached process, which does it after this one has exited, so the user does not
    wait for it: the replaced files not freed yet (the kernel frees thousands of inodes at
    their last close, each a TRIM on a ``discard`` mount), and the WAL checkpoint of a store
    this process left (``Store.leave(checkpoint_later=True)``). Returns how many files were
    handed off.

    Safe whatever becomes of the helper: those files are unlinked already and their bytes
    are in the store, durably; if it is killed, the kernel frees them at its exit, and the
    next writer of the store checkpoints its WAL (as after a crash: what was committed is in
    the WAL). The helper is spawned (``posix_spawn``: no copy of this process's memory, and
    none of its threads or locks), in its own session, with ``/dev/null`` for its standard
    streams, so it holds no lock, no pipe anyone waits on, nothing but the replaced files
    and the end of a pipe that tells it this process is gone. Its command line carries this
    process's (whoever waits for "the command" sees it too).
    """
    from guardian.store import db as storedb

    with _releasing_lock:
        fds, _pending[:] = list(_pending), []
    wals, storedb.LEFT_TO_CHECKPOINT[:] = list(storedb.LEFT_TO_CHECKPOINT), []
    _reap()
    if not fds and not wals:
        return 0
    gate_r, gate_w = os.pipe()  # its read end sees EOF once this process is gone
    started = False
    try:
        for fd in (*fds, gate_r):
            os.set_inheritable(fd, True)
        argv = [sys.executable, "-I", "-S", "-c", _DETACHED, str(gate_r),
                *map(os.fspath, wals), "--", *sys.argv]
        null = [(os.POSIX_SPAWN_OPEN, n, os.devnull, os.O_RDWR, 0) for n in (0, 1, 2)]
        env = dict(os.environ, GUARDIAN_RELEASE_FDS=",".join(map(str, fds)))
        _spawned.append(os.posix_spawn(sys.executable, argv, env, file_actions=null,
                                       setsid=True))
        started = True
    except OSError:
        pass  # not started: the files are freed here, the WAL checkpointed by the next writer
    finally:
        os.close(gate_r)
        for fd in fds:  # the helper holds them now (if it could not be started: freed here)
            with contextlib.suppress(OSError):
                os.close(fd)
    if wals and started:
        _gates.append(gate_w)  # the store is left open by this process: closed at its exit
    else:
        os.close(gate_w)  # only files to free: at once
    return len(fds) if started else 0


#: The detached helper of :func:`hand_off_releases`: close every descriptor it inherited
#: but the replaced files and the gate (one the caller of the command handed it, say), wait
#: for the parent's exit, free the files, checkpoint the stores named (never creating one; a
#: store busy with its next writer is left to it).
_DETACHED = """\
import os, sys
gate = int(sys.argv[1])
keep = {gate, *(int(fd) for fd in os.environ.pop("GUARDIAN_RELEASE_FDS").split(",") if fd)}
for fd in [int(name) for name in os.listdir("/proc/self/fd")]:
    if fd > 2 and fd not in keep:
        try:
            os.close(fd)
        except OSError:
            pass
try:
    while os.read(gate, 1):
        pass
except OSError:
    pass
os.closerange(3, 1 << 20)
import sqlite3
for path in sys.argv[2:sys.argv.index("--")]:
    try:
        db = sqlite3.connect("file:" + path + "?mode=rw", uri=True, timeout=1,
                             isolation_level=None)
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            db.close()
    except Exception:
        pass
"""

_spawned: list[int] = []  # helpers started by this process, reaped when they are done
_gates: list[int] = []  # gates' write ends held until this process exits


def _reap() -> None:
    """Collect helpers an earlier hand-off started that have ended (a process that runs
    commands in itself, ``main(argv)``, would collect zombies otherwise)."""
    for pid in list(_spawned):
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == 0:
                continue
        _spawned.remove(pid)


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
    link_dirs: dict[int, int] = {}
    for t in writes:
        if t.tmpfd is not None:
            os.fsync(t.tmpfd)
            continue
        if t.temp is None or t.final is None or t.final_dir or t.deferred:
            continue
        dfd, _name = t.where()
        if t.final_link:  # a symlink lives in its inode: its directory's fsync covers it
            link_dirs[dfd] = dfd
            continue
        fd = os.open(t.temp, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    for dfd in link_dirs:
        os.fsync(dfd)
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
    """Put every new content in place, in the targets' order: link an unnamed temp, rename a
    named one over its target; delete, rmdir, mkdir; write what had to wait for a removal
    (``deferred``); then fsync each directory touched."""
    dirs: set[tuple[int, bytes]] = set()
    removed_dirs = False
    try:
        for t in targets:
            t0 = time.perf_counter_ns()
            fs = t.rootfs
            faults.point("batch.rename")
            if t.final_dir:
                fs.makedirs(t.relpath)
            elif t.remove_dir:
                _rmdir(t)
                removed_dirs = True
            elif t.final is None:  # a delete: the directory is fsynced below, once
                dfd, name = t.where()
                _remove(t, dfd, name)
            elif t.deferred:
                _write_deferred(t)
            elif t.tmpfd is not None:
                _link(t)
            else:
                assert t.temp is not None
                dfd, name = t.where()
                if t.kind in ("file", "link"):
                    _replace(t, dfd, name)
                else:
                    _link_named(t, dfd, name)
            dirs.add((t.root.id, t.relpath.rpartition(SEP)[0]))
            t.elapsed_ns += time.perf_counter_ns() - t0
    finally:
        close_tmpfds(targets)
        if removed_dirs:  # the removed directories' fds are closed: look parents up again
            for t in targets:
                t.forget_where()
    if not removed_dirs and len(dirs) >= SYNCFS_DIRS and _sync_filesystems(targets):
        faults.point("batch.applied")
        return
    fs_of = {t.root.id: t.rootfs for t in targets}
    for rid, d in sorted(dirs):
        # A directory this batch removed (emptied, or replaced) is gone: its parent's fsync
        # makes that durable.
        with contextlib.suppress(FileNotFoundError, OutsideRootError):
            fs_of[rid].fsync_dir(d)
    faults.point("batch.applied")


#: From this many directories on, the renames are made durable by one ``syncfs`` per
#: filesystem rather than an fsync per directory (each a flush of the disk's cache: 20
#: directories took 45-230 ms by fsyncs, 5-55 ms by one syncfs, on this kind of VM).
SYNCFS_DIRS = 4


def _sync_filesystems(targets: list[Target]) -> bool:
    """One ``syncfs`` per filesystem the targets' directories are on (every directory entry
    the batch changed is durable after it); False where there is no syncfs."""
    sync = syncfs()
    if sync is None:
        return False
    by_dev: dict[int, int] = {}
    seen: set[int] = set()
    for t in targets:
        dfd = t.where()[0]
        if dfd not in seen:
            seen.add(dfd)
            by_dev.setdefault(os.fstat(dfd).st_dev, dfd)
    for dfd in by_dev.values():
        if sync(dfd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"syncfs: {os.strerror(code)}")
    return True


def _replace(t: Target, dfd: int, name: bytes) -> None:
    """Rename the temp over the file the batch read, and never over another one.

    The check that the file is unchanged and the rename are two steps: a program that
    replaces or writes the file between them (a preempted thread makes that milliseconds)
    would lose its bytes to a plain rename. So the two are exchanged atomically
    (``renameat2(RENAME_EXCHANGE)``), and what comes out under the temp's name is checked
    to be the file read; if it is not, the exchange is undone (theirs back in place) and the
    batch refused. Where the filesystem cannot exchange, a plain rename."""
    assert t.temp is not None
    _unchanged_since_read(t, dfd, name)
    faults.point("batch.replace")
    if not _renameat2(dfd, t.temp, dfd, name, _RENAME_EXCHANGE):
        os.rename(t.temp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        return
    if not _is_the_one_read(t, dfd, t.temp):
        _renameat2(dfd, t.temp, dfd, name, _RENAME_EXCHANGE)
        raise t.error("changed while the batch ran (another program wrote it); not "
                      "replacing it", "conflict")
    os.unlink(t.temp, dir_fd=dfd)  # the old file (its blocks are freed by release_later)


def _remove(t: Target, dfd: int, name: bytes) -> None:
    """Delete the file the batch read, and never another one: it is moved aside under the
    temp's name first (one atomic rename), checked, then unlinked; a file that is not the
    one read is moved back (a link: it never replaces what may have appeared since)."""
    _unchanged_since_read(t, dfd, name)
    faults.point("batch.replace")
    aside = t.temp
    if aside is None:  # a journal of an earlier version: no name to move it aside to
        os.unlink(name, dir_fd=dfd)
        return
    os.rename(name, aside, src_dir_fd=dfd, dst_dir_fd=dfd)
    if _is_the_one_read(t, dfd, aside):
        os.unlink(aside, dir_fd=dfd)
        return
    try:
        os.link(aside, name, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
        os.unlink(aside, dir_fd=dfd)
    except FileExistsError:  # a third program's file took the place: theirs stays aside
        t.temp = None  # (and nothing removes it)
        raise t.error("changed while the batch ran (other programs wrote it twice); not "
                      f"deleting it: one of their versions is kept as {show(aside)}",
                      "conflict") from None
    raise t.error("changed while the batch ran (another program wrote it); not deleting it",
                  "conflict")


def _is_the_one_read(t: Target, dfd: int, name: bytes) -> bool:
    """Whether ``name`` is the very file the batch read, unchanged (a rename changes only
    its ctime)."""
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    sig = signature(st)
    read = t.read_sig
    return read is not None and (sig[0], sig[1], sig[2], sig[3], sig[5]) == (
        read[0], read[1], read[2], read[3], read[5])


_RENAME_EXCHANGE = 2  # linux/fs.h
_RENAMEAT2: Any = False


def _renameat2(src_dfd: int, src: bytes, dst_dfd: int, dst: bytes, flags: int) -> bool:
    """``renameat2`` with ``flags``; False where the C library or the filesystem has none."""
    global _RENAMEAT2
    if _RENAMEAT2 is False:
        _RENAMEAT2 = None
        with contextlib.suppress(OSError, AttributeError):
            fn = ctypes.CDLL(None, use_errno=True).renameat2
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                           ctypes.c_uint]
            _RENAMEAT2 = fn
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(src_dfd, src, dst_dfd, dst, flags) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), src)


def _rmdir(t: Target) -> None:
    """Remove a directory the batch emptied (its files were removed before it). One that is
    not empty now holds something the batch did not plan for: an optional removal (a
    directory emptied by a restore) leaves it; a required one (a file takes its place) is a
    conflict."""
    try:
        dfd, name = t.where()
        _unchanged_since_read(t, dfd, name, identity_only=True)
        os.rmdir(name, dir_fd=dfd)
    except FileNotFoundError:
        return
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        if t.optional:
            t.skipped = True
            return
        raise t.error("is not empty: something was put in it while the batch ran; not "
                      "removing it", "conflict") from None
    t.rootfs.forget(t.relpath)


def _write_deferred(t: Target) -> None:
    """A new file or link whose directory could not exist before the commit point (a file
    or link of the batch stood in its way, and was removed before): written now, named,
    made durable before it is linked into place (recovery could rewrite it from the store,
    but the batch verifies it)."""
    assert t.temp is not None and t.final is not None
    t.forget_where()  # its parent did not exist (as a directory) when the batch looked
    dfd, name = t.where(create=True)
    if t.final_link:
        _temp_link(t, dfd, {})
        os.fsync(dfd)
    else:
        _write_named_temp(t, dfd)
    _link_named(t, dfd, name)


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
    _write_named_temp(t, dfd)
    _link_named(t, dfd, name)


def _write_named_temp(t: Target, dfd: int) -> None:
    """Write the target's new content to its named temp in ``dfd``, durably (fsynced), and
    remember the inode written (the verify step checks the target is it)."""
    assert t.temp is not None and t.final is not None
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


def _unchanged_since_read(t: Target, dfd: int, name: bytes, *,
                          identity_only: bool = False) -> None:
    """Refuse to replace a file another program changed since the batch read it: its bytes
    would be lost (the rollback that follows records them and leaves them in place).
    ``identity_only``: a directory, whose times change with what is put in or taken out of
    it (the rmdir that follows checks it is empty); only its identity counts."""
    try:
        now: tuple[int, ...] | None = signature(os.stat(name, dir_fd=dfd,
                                                        follow_symlinks=False))
    except FileNotFoundError:
        now = None
    if identity_only and now is not None and t.read_sig is not None:
        same = (now[0], now[1], now[5]) == (t.read_sig[0], t.read_sig[1], t.read_sig[5])
    else:
        same = now == t.read_sig
    if not same:
        raise t.error("changed while the batch ran (another program wrote it); not "
                      "replacing it", "conflict")
    if not identity_only and now is not None and stat.S_ISREG(now[5]) and _open_for_writing(
            t, dfd, name):
        raise t.error("changed while the batch ran (another program has it open for "
                      "writing); not replacing it", "conflict")


def _open_for_writing(t: Target, dfd: int, name: bytes) -> bool:
    """Whether some process holds the file open for writing: an in-place write in progress
    (opened and truncated, its bytes still to come) would land in the replaced inode, lost.

    A read lease is granted only while no one has the file open for writing; it is taken and
    dropped at once (an open for writing meanwhile waits those microseconds; its lease-break
    signal is SIGURG, ignored by default). Where leases are not allowed (not the file's
    owner, some filesystems), this cannot tell and says no.
    """
    if _SETLEASE is None:
        return False
    own = t.oldfd is None  # else the inode read (the signature says it is still there)
    try:
        fd = t.oldfd if t.oldfd is not None else os.open(
            name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
    except OSError:
        return False
    try:
        fcntl.fcntl(fd, _SETSIG, signal.SIGURG)
        fcntl.fcntl(fd, _SETLEASE, fcntl.F_RDLCK)
        fcntl.fcntl(fd, _SETLEASE, fcntl.F_UNLCK)
    except OSError as e:
        return e.errno == errno.EAGAIN
    finally:
        if own:
            os.close(fd)  # (which drops a lease too)
    return False


_SETLEASE: int | None = getattr(fcntl, "F_SETLEASE", None)
_SETSIG: int = getattr(fcntl, "F_SETSIG", 10)


def look(t: Target, fds: Budget) -> None:
    """What is at a restore's target now, whatever it is: ``kind`` (file, link, dir, other,
    absent), a file's bytes or a link's target in ``current``, and the signature a later
    change is detected by. A regular file is read through one descriptor, kept open while
    ``fds`` allows (see :func:`release_later`). A parent that is missing, or is not a
    directory, makes the target ``absent`` (the restore removes what is in the way first)."""
    t.kind, t.current, t.read_sig = "absent", None, None
    try:
        dfd, name = t.where()
    except (FileNotFoundError, NotADirectoryError, OutsideRootError):
        return
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return
    t.current_mode, t.current_uid, t.current_gid = st.st_mode, st.st_uid, st.st_gid
    t.read_sig = signature(st)
    if stat.S_ISDIR(st.st_mode):
        t.kind = "dir"
    elif stat.S_ISLNK(st.st_mode):
        t.kind = "link"
        t.current = os.readlink(name, dir_fd=dfd)
        if signature(os.stat(name, dir_fd=dfd, follow_symlinks=False)) != t.read_sig:
            raise t.error("changed while the batch ran (another program wrote it); not "
                          "replacing it", "conflict")
    elif not stat.S_ISREG(st.st_mode):
        t.kind = "other"
    else:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dfd)
        try:
            st = os.fstat(fd)  # the inode actually opened
            t.read_sig = signature(st)
            t.current_mode, t.current_uid, t.current_gid = st.st_mode, st.st_uid, st.st_gid
            if not stat.S_ISREG(st.st_mode):
                raise t.error("changed while the batch ran (another program wrote it); "
                              "not replacing it", "conflict")
            chunks: list[bytes] = []
            while chunk := os.read(fd, max(st.st_size + 1, 65536) if not chunks else 65536):
                chunks.append(chunk)
            t.current = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        except BaseException:
            os.close(fd)
            raise
        t.kind = "file"
        if fds.take():
            t.oldfd = fd
        else:
            os.close(fd)


def lstat(t: Target) -> os.stat_result | None:
    fs = t.rootfs
    if not fs.caching:
        return fs.lstat(t.relpath)
    try:
        dfd, name = t.where()
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except (FileNotFoundError, OutsideRootError):
        return None
