"""Writes confined to a root: the only way Guardian changes files in a watched tree.

Every parent directory is opened from the root's file descriptor with ``O_NOFOLLOW |
O_DIRECTORY``, one component at a time, so no write can leave the root through a symlink, even
one swapped in while we work. Files are replaced atomically: temp file beside the target, write,
fsync, mode, ``rename``, fsync the directory.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Callable, Iterator

from guardian.closing import Closing
from guardian.errors import OutsideRootError
from guardian.paths import SEP, TEMP_PREFIX

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class RootFS(Closing):
    """Operations confined to ``root``. With ``cache``, directory fds are kept open (until
    :meth:`close`) so many files in the same directories cost one open per directory: the
    batch writer touches each target several times."""

    def __init__(self, root: bytes, *, cache: bool = False) -> None:
        self.root = root
        self._fds: dict[bytes, int] | None = {} if cache else None
        # With ``cache``: directories found missing (a batch looks up each of its new files'
        # parent once per file; only making the directory changes the answer).
        self._missing: set[bytes] = set()

    @property
    def caching(self) -> bool:
        """Whether directory fds are kept (so :meth:`locate` may be used)."""
        return self._fds is not None

    def close(self) -> None:
        if self._fds:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()

    def forget(self, dirrel: bytes) -> None:
        """Drop cached fds of ``dirrel`` and below (it was removed or replaced)."""
        if not self._fds:
            return
        for k in [k for k in self._fds if k == dirrel or k.startswith(dirrel + SEP)]:
            os.close(self._fds.pop(k))

    def _dir(self, dirrel: bytes, create: bool) -> int:
        """The cached fd of ``dirrel``, opening (and with ``create`` making) what is missing
        from the deepest cached parent down: a loop, since a tree may be thousands of levels
        deep (no recursion on its depth)."""
        assert self._fds is not None
        fds = self._fds
        todo: list[bytes] = []  # dirrel and its parents without a cached fd, innermost first
        d = dirrel
        while True:
            fd = fds.get(d)
            if fd is not None:
                break
            if not create and d in self._missing:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), d)
            todo.append(d)
            if not d:
                fd = os.open(self.root, _DIR_FLAGS)
                fds[d] = fd
                todo.pop()
                break
            d = d.rpartition(SEP)[0]
        for d in reversed(todo):
            try:
                fd = _open_dir(fd, d.rpartition(SEP)[2], create, d)
            except FileNotFoundError:
                self._missing.add(d)
                raise
            self._missing.discard(d)
            fds[d] = fd
        return fd

    def _check(self, relpath: bytes) -> list[bytes]:
        parts = relpath.split(SEP)
        if relpath.endswith(SEP + b"."):  # makedirs/fsync_dir: "dir/." names the directory
            parts = parts[:-1]
            if not parts or any(p in (b"", b".", b"..") for p in parts):
                raise OutsideRootError(f"{relpath!r}: not a plain path inside the root")
            return [*parts, b"."]
        if not relpath or any(p in (b"", b".", b"..") for p in parts):
            raise OutsideRootError(f"{relpath!r}: not a plain path inside the root")
        return parts

    @contextlib.contextmanager
    def parent(self, relpath: bytes, *, create: bool) -> Iterator[tuple[int, bytes]]:
        """Yield (fd of the parent directory, final name); refuse symlinked components."""
        parts = self._check(relpath)
        if self._fds is not None:
            yield self._dir(SEP.join(parts[:-1]), create), parts[-1]
            return
        fd = os.open(self.root, _DIR_FLAGS)
        try:
            for i, part in enumerate(parts[:-1]):
                nfd = _open_dir(fd, part, create, SEP.join(parts[: i + 1]))
                os.close(fd)
                fd = nfd
            yield fd, parts[-1]
        finally:
            os.close(fd)

    def locate(self, relpath: bytes, *, create: bool) -> tuple[int, bytes]:
        """(cached fd of the parent directory, final name): :meth:`parent` without the
        context manager, for callers touching thousands of paths (needs ``cache``)."""
        assert self._fds is not None, "locate needs a RootFS with cache=True"
        parts = self._check(relpath)
        return self._dir(SEP.join(parts[:-1]), create), parts[-1]

    def makedirs(self, relpath: bytes) -> None:
        """Create directory ``relpath`` and its parents (all inside the root, none a symlink)."""
        with self.parent(relpath + SEP + b".", create=True):
            pass

    def missing_dirs(self, relpath: bytes) -> list[bytes]:
        """The parent directories of ``relpath`` that do not exist yet, outermost first."""
        parts = self._check(relpath)[:-1]
        out: list[bytes] = []
        cur = b""
        for part in parts:
            cur = cur + SEP + part if cur else part
            if out or self.lstat(cur) is None:
                out.append(cur)
        return out

    def fsync_dir(self, relpath: bytes) -> None:
        """fsync directory ``relpath`` (b"": the root), making renames in it durable."""
        if not relpath:
            fd = os.open(self.root, _DIR_FLAGS)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            return
        with self.parent(relpath + SEP + b".", create=False) as (dfd, _):
            os.fsync(dfd)

    def read(self, relpath: bytes) -> bytes | None:
        """The bytes of regular file ``relpath`` (None if absent); never through a symlink."""
        try:
            with self.parent(relpath, create=False) as (dfd, name):
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                             dir_fd=dfd)
        except FileNotFoundError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise IsADirectoryError(errno.EISDIR, "not a regular file")
            with open(fd, "rb", closefd=False) as f:
                return f.read()
        finally:
            os.close(fd)

    def lstat(self, relpath: bytes) -> os.stat_result | None:
        try:
            with self.parent(relpath, create=False) as (dfd, name):
                return os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except (FileNotFoundError, OutsideRootError):
            return None

    def write(self, relpath: bytes, data: bytes, mode: int) -> os.stat_result:
        """Atomically replace ``relpath`` with ``data``; returns the new file's stat."""
        with self.parent(relpath, create=True) as (dfd, name):
            _refuse_dir(dfd, name, relpath)
            tmp = _temp_name(name)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=dfd)
            return _publish(dfd, tmp, name, lambda: _fill(fd, data, mode))

    def symlink(self, relpath: bytes, target: bytes) -> os.stat_result:
        """Atomically make ``relpath`` a symlink to ``target`` (the link is not followed)."""
        with self.parent(relpath, create=True) as (dfd, name):
            _refuse_dir(dfd, name, relpath)
            tmp = _temp_name(name)
            os.symlink(target, tmp, dir_fd=dfd)
            return _publish(dfd, tmp, name,
                            lambda: os.stat(tmp, dir_fd=dfd, follow_symlinks=False))

    def remove(self, relpath: bytes) -> bool:
        """Unlink a file or symlink (never a directory); False if it was already gone."""
        try:
            with self.parent(relpath, create=False) as (dfd, name):
                _refuse_dir(dfd, name, relpath)
                os.unlink(name, dir_fd=dfd)
                os.fsync(dfd)
                return True
        except FileNotFoundError:
            return False

    def names(self, dirrel: bytes) -> list[bytes]:
        """The names in directory ``dirrel``, opened from the root (no symlink followed)."""
        with self.parent(dirrel + SEP + b".", create=False) as (dfd, _):
            return [os.fsencode(n) for n in os.listdir(dfd)]

    def prune_empty_dirs(self, relpath: bytes, stop: bytes) -> None:
        """Remove now-empty parent directories of ``relpath``, up to (not including) ``stop``."""
        d = relpath.rpartition(SEP)[0]
        while d and d != stop and (not stop or d.startswith(stop + SEP)):
            try:
                with self.parent(d, create=False) as (dfd, name):
                    os.rmdir(name, dir_fd=dfd)
            except OSError:
                return
            d = d.rpartition(SEP)[0]


def _open_dir(parent_fd: int, name: bytes, create: bool, shown_rel: bytes) -> int:
    """Open directory ``name`` under ``parent_fd`` without following a symlink."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except FileNotFoundError:
        if not create:
            raise
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o777, dir_fd=parent_fd)
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            shown = shown_rel.decode("utf-8", "backslashreplace")
            raise OutsideRootError(
                f"{shown}: is a symlink or not a directory; refusing to write through it"
            ) from None
        raise


def _fill(fd: int, data: bytes, mode: int) -> os.stat_result:
    """Write ``data`` to the new temp file ``fd``, set its mode, fsync it; closes ``fd``."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, stat.S_IMODE(mode) if mode else 0o644)
        os.fsync(fd)
        return os.fstat(fd)
    finally:
        os.close(fd)


def _publish(dfd: int, tmp: bytes, name: bytes, finish: Callable[[], os.stat_result]
             ) -> os.stat_result:
    """``finish`` the temp file ``tmp`` (already created: it is ours), rename it over
    ``name`` and fsync the directory; if either step fails, ``tmp`` is removed."""
    try:
        st = finish()
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dfd)
        raise
    os.fsync(dfd)
    return st


def _temp_name(name: bytes) -> bytes:
    return TEMP_PREFIX + name[:150] + b"." + secrets.token_hex(4).encode()


def _refuse_dir(dfd: int, name: bytes, relpath: bytes) -> None:
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(
            errno.EISDIR, f"{relpath.decode('utf-8', 'backslashreplace')} is a directory"
        )
