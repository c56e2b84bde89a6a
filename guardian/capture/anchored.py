"""Reads confined to a root: the read side of :mod:`guardian.rootfs`.

Every directory is opened from the root's file descriptor one component at a time with
``O_NOFOLLOW | O_DIRECTORY``, and files are then looked at relative to their directory's fd
(``fstatat``, ``readlinkat``, ``openat`` with ``O_NOFOLLOW``). A directory swapped for a
symlink, even between two system calls, can then only make a path look missing: no read goes
through it to what it points at.

Capture reads thousands of files a second in several threads, so the fds of the directories a
batch of observations touches are kept (about one open per directory per batch and thread,
not one per path component per file) and closed together at the end of the batch.
"""

from __future__ import annotations

import errno
import os

from guardian.paths import SEP

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: Errors meaning "there is no real directory at that path" (absent, a file, a symlink).
NOT_A_DIR = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP})
#: Directory fds one batch of observations keeps open at most (its threads share the budget).
MAX_KEPT = 128
_BAD_NAMES = (b"", b".", b"..")


class RootDirs:
    """Directory fds of one root, opened from its fd, kept until :meth:`close`.

    At most ``limit`` are kept: past that the one opened or used longest ago is closed, so an
    fd from :meth:`lease` is valid until the next call. Not thread-safe: capture gives each
    of its threads its own (no lock on the path of every file, and closing the oldest fd can
    never pull one from under another thread). A directory that could not be opened is
    remembered, like a kept fd, until :meth:`close`.
    """

    def __init__(self, root: bytes, limit: int = MAX_KEPT) -> None:
        self.root = root
        self.limit = max(2, limit)  # a chain's newest fd must survive keeping the next one
        self._fds: dict[bytes, int] = {}  # oldest first
        self._bad: dict[bytes, int] = {}  # dir relpath -> errno of its failed open

    def close(self) -> None:
        fds, self._fds, self._bad = self._fds, {}, {}
        for fd in fds.values():
            os.close(fd)

    def __enter__(self) -> RootDirs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lease(self, dirrel: bytes) -> int:
        """The fd of directory ``dirrel`` (b"": the root), valid until the next call.

        Raises OSError: an errno in :data:`NOT_A_DIR` when some component is not a real
        directory (so nothing below it is in the tree), EACCES etc. when it cannot be opened.
        """
        fd = self._fds.get(dirrel)
        if fd is not None:
            return fd
        return self._open(dirrel)

    def _open(self, dirrel: bytes) -> int:
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
            pfd = self._fds.pop(cur, None)
            if pfd is not None:
                self._fds[cur] = pfd  # used again: now the newest, the last to be closed
                break
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
            if len(self._fds) >= self.limit:  # close the oldest (never ``pfd``: the newest)
                os.close(self._fds.pop(next(iter(self._fds))))
            self._fds[rel] = pfd = fd
        assert pfd is not None
        return pfd


def lstat(root: bytes, relpath: bytes) -> os.stat_result | None:
    """lstat of ``relpath`` seen from the root (None: no such path in the tree)."""
    parent, _, name = relpath.rpartition(SEP)
    if name in _BAD_NAMES:
        return None
    with RootDirs(root) as dirs:
        try:
            dfd = dirs.lease(parent)
        except OSError as e:
            if e.errno in NOT_A_DIR:
                return None
            raise
        try:
            return os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
