"""Reads confined to a root: the read side of :mod:`guardian.rootfs`.

Every directory is opened from the root's file descriptor one component at a time with
``O_NOFOLLOW | O_DIRECTORY``, and files are then looked at relative to their directory's fd
(``fstatat``, ``readlinkat``, ``openat`` with ``O_NOFOLLOW``). A directory swapped for a
symlink, even between two system calls, can then only make a path look missing: no read goes
through it to what it points at.

Capture reads thousands of files a second in several threads, so the fds of the directories a
batch of observations touches are kept (one open per directory per batch, not one per path
component per file) and closed together at the end of the batch.
"""

from __future__ import annotations

import errno
import os
import threading

from guardian.paths import SEP

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: Errors meaning "there is no real directory at that path" (absent, a file, a symlink).
NOT_A_DIR = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP})
#: Directory fds one batch keeps open at most (beyond that they are opened for one use).
MAX_KEPT = 128
_BAD_NAMES = (b"", b".", b"..")


class RootDirs:
    """Directory fds of one root, opened from its fd, kept until :meth:`close`.

    Safe to share between threads: fds are only added while the batch runs and all are
    closed at its end, when no thread uses them any more. At most ``limit`` are kept; a
    directory beyond that is opened for its caller, who closes it (:meth:`lease` says so).
    A directory that could not be opened is remembered for the batch, like a kept fd.
    """

    def __init__(self, root: bytes, limit: int = MAX_KEPT) -> None:
        self.root = root
        self.limit = limit
        self._fds: dict[bytes, int] = {}
        self._bad: dict[bytes, int] = {}  # dir relpath -> errno of its failed open
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            fds, self._fds = self._fds, {}
            self._bad = {}
        for fd in fds.values():
            os.close(fd)

    def __enter__(self) -> RootDirs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lease(self, dirrel: bytes) -> tuple[int, bool]:
        """(fd of directory ``dirrel``, whether the caller must close it).

        Raises OSError: an errno in :data:`NOT_A_DIR` when some component is not a real
        directory (so nothing below it is in the tree), EACCES etc. when it cannot be opened.
        """
        fd = self._fds.get(dirrel)
        if fd is not None:
            return fd, False
        return self._open(dirrel)

    def _open(self, dirrel: bytes) -> tuple[int, bool]:
        # Up to the nearest kept ancestor (or the root), then down one component at a time.
        chain = []  # innermost first
        cur = dirrel
        pfd: int | None = None
        while True:
            bad = self._bad.get(cur)
            if bad is not None:
                raise OSError(bad, os.strerror(bad), cur)
            chain.append(cur)
            if not cur:
                break  # the root itself: opened by its (resolved) path
            cur = cur.rpartition(SEP)[0]
            pfd = self._fds.get(cur)
            if pfd is not None:
                break
        owned = False
        try:
            for rel in reversed(chain):
                try:
                    if not rel:
                        fd = os.open(self.root, DIR_FLAGS)
                    else:
                        name = rel.rpartition(SEP)[2]
                        if name in _BAD_NAMES:
                            raise OSError(errno.ENOENT, "not a plain path component", rel)
                        fd = os.open(name, DIR_FLAGS, dir_fd=pfd)
                except OSError as e:
                    self._bad[rel] = e.errno or errno.EIO
                    raise
                if owned and pfd is not None:
                    os.close(pfd)
                pfd, owned = self._keep(rel, fd)
        except BaseException:
            if owned and pfd is not None:
                os.close(pfd)
            raise
        assert pfd is not None
        return pfd, owned

    def _keep(self, rel: bytes, fd: int) -> tuple[int, bool]:
        """Keep ``fd`` for ``rel`` if there is room; (the fd to use, owned by the caller)."""
        with self._lock:
            have = self._fds.get(rel)
            if have is None and len(self._fds) < self.limit:
                self._fds[rel] = fd
                return fd, False
        if have is not None:  # another thread opened it first: use theirs
            os.close(fd)
            return have, False
        return fd, True


def lstat(root: bytes, relpath: bytes) -> os.stat_result | None:
    """lstat of ``relpath`` seen from the root (None: no such path in the tree)."""
    parent, _, name = relpath.rpartition(SEP)
    if name in _BAD_NAMES:
        return None
    with RootDirs(root) as dirs:
        try:
            dfd, owned = dirs.lease(parent)
        except OSError as e:
            if e.errno in NOT_A_DIR:
                return None
            raise
        try:
            return os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        finally:
            if owned:
                os.close(dfd)
