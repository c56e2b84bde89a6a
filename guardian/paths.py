"""Roots and paths: how a user's path maps to (root, relative path) and back.

Relative paths are kept as bytes everywhere below the CLI: file names on Linux are bytes, and
a name that is not UTF-8 must round-trip exactly (the store keeps them as BLOBs).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from guardian.errors import OutsideRootError, UsageError

SEP = b"/"

#: Prefix of the temp files Guardian writes beside a target before renaming them over it.
TEMP_PREFIX = b".~guardian."


class Root:
    """A watched directory, resolved (no symlinks in it) and absolute.

    A plain class rather than a dataclass: ``dataclasses`` costs ~15 ms to import, paid by
    every CLI call that only talks to the daemon.
    """

    __slots__ = ("_bpath", "_prefix", "id", "path")

    def __init__(self, id: int, path: Path) -> None:
        self.id = id
        self.path = path
        self._bpath = os.fsencode(path)  # asked for per file, thousands of times a batch
        self._prefix = self._bpath + SEP

    def __repr__(self) -> str:
        return f"Root(id={self.id!r}, path={self.path!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Root) and (self.id, self.path) == (other.id, other.path)

    def __hash__(self) -> int:
        return hash((self.id, self.path))

    @property
    def bpath(self) -> bytes:
        return self._bpath

    def join(self, relpath: bytes) -> bytes:
        return self._prefix + relpath if relpath else self._bpath

    def display(self, relpath: bytes) -> str:
        return os.fsdecode(self.join(relpath))


def check_root(arg: str | os.PathLike[str]) -> Path:
    """Resolve a root given on the command line, or raise a one-line UsageError."""
    raw = Path(arg)
    try:
        resolved = raw.resolve(strict=True)
        st = os.stat(resolved)
    except FileNotFoundError:
        raise UsageError(f"{arg}: no such directory") from None
    except RuntimeError:  # symlink loop on Python < 3.13
        raise UsageError(f"{arg}: symlink loop") from None
    except OSError as e:
        raise UsageError(f"{arg}: {e.strerror or e}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{arg}: not a directory")
    if not os.access(resolved, os.R_OK | os.X_OK):
        raise UsageError(f"{arg}: permission denied (cannot list the directory)")
    return resolved


def absolute(arg: str | os.PathLike[str]) -> Path:
    """Absolute form of a user's path, with ``..`` folded but the final name not resolved."""
    p = Path(os.path.abspath(arg))
    parent = p.parent
    try:  # noqa: SIM105 - contextlib costs ~4 ms to import on the CLI's start path
        parent = parent.resolve(strict=False)
    except (OSError, RuntimeError):
        pass
    return parent / p.name if p.name else parent


def locate(arg: str | os.PathLike[str], roots: list[Root]) -> tuple[Root, bytes]:
    """Map a user's path to the root that holds it and the path relative to that root."""
    p = absolute(arg)
    best: tuple[Root, bytes] | None = None
    for root in roots:
        if p == root.path:
            rel = b""
        elif root.path in p.parents:
            rel = os.fsencode(p.relative_to(root.path))
        else:
            continue
        if best is None or len(root.path.parts) > len(best[0].path.parts):
            best = (root, rel)
    if best is None:
        shown = ", ".join(str(r.path) for r in roots) or "none"
        raise OutsideRootError(f"{arg}: outside the watched roots ({shown})")
    return best


def under(relpath: bytes, prefix: bytes) -> bool:
    """Whether ``relpath`` is ``prefix`` or inside it (prefix b"" is the whole root)."""
    return not prefix or relpath == prefix or relpath.startswith(prefix + SEP)


def parents(rel: bytes) -> list[bytes]:
    """The directories above ``rel`` inside its root, nearest first (not the root itself)."""
    out = []
    d = rel.rpartition(SEP)[0]
    while d:
        out.append(d)
        d = d.rpartition(SEP)[0]
    return out


def prefix_range(prefix: bytes) -> tuple[bytes, bytes]:
    """Byte range [lo, hi) holding every relpath strictly inside directory ``prefix``.

    '/' + 1 == '0', so ``prefix + b"0"`` bounds exactly the names that start with ``prefix/``.
    """
    return prefix + SEP, prefix + b"0"


def show(path: str | bytes) -> str:
    """A path safe to print: bytes that are not UTF-8 appear as \\xNN escapes."""
    b = path if isinstance(path, bytes) else os.fsencode(path)
    return b.decode("utf-8", "backslashreplace")
