"""Walking a tree the way capture needs it: no symlinks followed, ignored paths pruned.

The walk yields ``(relpath, lstat)`` for regular files and symlinks. Directories it cannot list
are reported, so the caller never mistakes "could not look" for "deleted".
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

from guardian.capture.anchored import DIR_FLAGS, NOT_A_DIR
from guardian.paths import SEP, TEMP_PREFIX
from guardian.rules.ignore import IgnoreMatcher

S_ISREG, S_ISLNK = stat.S_ISREG, stat.S_ISLNK

#: Directory fds a walk keeps at most (those with subdirectories still to walk).
MAX_HELD = 64


@dataclass
class WalkReport:
    """What a walk could not see, and why."""

    unreadable_dirs: list[tuple[bytes, str]] = field(default_factory=list)
    dirs: int = 0


def walk(
    root: bytes, prefix: bytes, ignore: IgnoreMatcher, report: WalkReport
) -> Iterator[tuple[bytes, os.stat_result]]:
    """Yield (relpath, lstat) of files and symlinks under directory ``prefix`` of ``root``.

    Each directory is opened from its parent's fd with ``O_NOFOLLOW | O_DIRECTORY`` and listed
    through its own fd, so a directory swapped for a symlink while we walk is never entered:
    the walk cannot leave the root. Iterative (no recursion on depth); the fds of directories
    whose subdirectories are still to be walked are kept, at most :data:`MAX_HELD` of them
    (one further up is opened again, from the nearest one kept, when it is needed).
    """
    held: dict[bytes, int] = {}  # dir -> its fd, while subdirectories of it are on the stack
    pending: dict[bytes, int] = {}  # dir -> how many of its subdirectories are on the stack
    base = -1
    fd = -1
    enc, errors = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
    try:
        try:
            base = os.open(root, DIR_FLAGS)
            fd, owned = _dir_fd(base, prefix, held)
            if not owned:  # the root itself: its own fd, so the walk may close or keep it
                fd = os.dup(fd)
        except OSError as e:
            if e.errno not in NOT_A_DIR:
                report.unreadable_dirs.append((prefix, e.strerror or str(e)))
            return  # gone, or not a real directory: nothing of the tree is there
        stack = [prefix]
        while stack:
            d = stack.pop()
            if d != prefix:
                parent, _, name = d.rpartition(SEP)
                try:
                    fd = _open_child(base, parent, name, held, pending)
                except OSError as e:
                    if e.errno in (errno.ENOTDIR, errno.ELOOP):
                        # No longer a directory: a file or symlink took its place.
                        st = _replacement(base, parent, name, held)
                        if st is not None and not ignore.child_ignored(parent, name,
                                                                       is_dir=False):
                            yield d, st
                    elif e.errno != errno.ENOENT:  # ENOENT: vanished; its files are gone
                        report.unreadable_dirs.append((d, e.strerror or str(e)))
                    continue
            try:
                it = os.scandir(fd)
            except OSError as e:
                os.close(fd)
                fd = -1
                report.unreadable_dirs.append((d, e.strerror or str(e)))
                continue
            report.dirs += 1
            subdirs = 0
            plain = ignore.plain(d)
            below = d + SEP if d else b""
            with it:
                for entry in it:
                    name = entry.name.encode(enc, errors)  # scandir of an fd gives str names
                    try:
                        is_dir = entry.is_dir(follow_symlinks=False)
                    except OSError:
                        continue
                    if plain:
                        if name == b".git" or name.startswith(TEMP_PREFIX):
                            continue
                    elif ignore.child_ignored(d, name, is_dir=is_dir):
                        continue
                    if is_dir:
                        stack.append(below + name)
                        subdirs += 1
                        continue
                    try:
                        st = entry.stat(follow_symlinks=False)  # fstatat on the listed fd
                    except FileNotFoundError:
                        continue
                    except OSError as e:
                        report.unreadable_dirs.append((below + name, e.strerror or str(e)))
                        continue
                    if S_ISREG(st.st_mode) or S_ISLNK(st.st_mode):
                        yield below + name, st
                    # fifos, sockets and devices are not content: skipped
            if subdirs:
                pending[d] = subdirs
                _hold(held, d, fd)
            else:
                os.close(fd)
            fd = -1
    finally:
        for hfd in held.values():
            os.close(hfd)
        if fd >= 0:
            os.close(fd)
        if base >= 0:
            os.close(base)


def _hold(held: dict[bytes, int], d: bytes, fd: int) -> None:
    """Keep ``fd`` of ``d``; past MAX_HELD the oldest kept (the shallowest) is closed."""
    if len(held) >= MAX_HELD:
        oldest = next(iter(held))
        os.close(held.pop(oldest))
    held[d] = fd


def _open_child(base: int, parent: bytes, name: bytes, held: dict[bytes, int],
                pending: dict[bytes, int]) -> int:
    """Open subdirectory ``name`` of ``parent`` (just popped from the walk's stack)."""
    try:
        pfd, owned = _dir_fd(base, parent, held, pending)
        try:
            return os.open(name, DIR_FLAGS, dir_fd=pfd)
        finally:
            if owned:
                os.close(pfd)
    finally:
        left = pending.get(parent, 0) - 1
        if left > 0:
            pending[parent] = left
        else:
            pending.pop(parent, None)
            done = held.pop(parent, None)
            if done is not None:
                os.close(done)


def _dir_fd(base: int, target: bytes, held: dict[bytes, int],
            pending: dict[bytes, int] | None = None) -> tuple[int, bool]:
    """(fd of directory ``target``, whether the caller must close it): kept, or opened one
    component at a time from the nearest kept ancestor (or the root). With ``pending``, the
    directories opened on the way that still have subdirectories to walk are kept."""
    fd = held.get(target)
    if fd is not None:
        return fd, False
    if not target:
        return base, False
    anc = target
    fd = base
    while anc:
        anc = anc.rpartition(SEP)[0]
        kept = held.get(anc) if anc else None
        if kept is not None:
            fd = kept
            break
    cur = anc
    owned = False
    for part in (target[len(anc) + 1:] if anc else target).split(SEP):
        cur = cur + SEP + part if cur else part
        try:
            if part in (b"", b".", b".."):
                raise OSError(errno.ENOENT, "not a plain path component", cur)
            nfd = os.open(part, DIR_FLAGS, dir_fd=fd)
        finally:
            if owned:
                os.close(fd)
        fd, owned = nfd, True
        if pending is not None and pending.get(cur):
            _hold(held, cur, fd)
            owned = False
    return fd, owned


def _replacement(base: int, parent: bytes, name: bytes,
                 held: dict[bytes, int]) -> os.stat_result | None:
    """The lstat of what replaced directory ``parent/name``, if it is a file or a symlink."""
    try:
        pfd, owned = _dir_fd(base, parent, held)
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        finally:
            if owned:
                os.close(pfd)
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode) else None


def is_blind(relpath: bytes, blind: list[bytes]) -> bool:
    """Whether ``relpath`` lies in (or is) a path the walk could not look into."""
    return any(relpath == b or relpath.startswith(b + SEP) for b in blind)
