"""The store's paths as a tree, one directory at a time (the TUI's restore browser).

A store may know 100,000 paths; nothing here reads them all. :meth:`PathTree.tree_children`
lists one directory by skipping through the ``(root_id, relpath)`` index: a file is one
row, a subdirectory is one seek past its range (plus a count and an "any file live" probe),
so a directory costs its children, not its descendants. :meth:`PathTree.path_search` is
the filter: a scan that stops at ``limit`` matches.
"""

from __future__ import annotations

import os
import sqlite3
from typing import NamedTuple

from guardian.paths import prefix_range

#: Rows read per query while listing a directory.
_CHUNK = 256

_HEAD = ("SELECT f.relpath, f.live, v.kind, v.valid, v.time_ns FROM files f"
         " LEFT JOIN versions v ON v.id = f.head_id")

#: A file's state as SQL over ``f`` (files) and ``v`` (its head): see :attr:`PathEntry.state`.
_STATE_SQL = {
    "deleted": "f.live = 0",
    "rejected": "f.live = 1 AND v.valid = 0",
    "created": "f.live = 1 AND v.valid IS NOT 0 AND v.kind IN ('created', 'baseline')",
    "modified": "f.live = 1 AND v.valid IS NOT 0 AND v.kind NOT IN ('created', 'baseline')",
}
STATES = tuple(_STATE_SQL)


class PathEntry(NamedTuple):
    """A file the store knows (its head's kind, validity and time), or a directory of them."""

    root_id: int
    relpath: bytes
    is_dir: bool
    #: A file: its newest version is present. A directory: some file under it is.
    live: bool
    kind: str = ""
    valid: bool | None = None
    time_ns: int = 0
    #: A directory: the files under it, deleted ones included.
    files: int = 0

    @property
    def name(self) -> str:
        return os.fsdecode(self.relpath.rpartition(b"/")[2])

    @property
    def state(self) -> str:
        """What the filter by state sees: deleted, rejected, created or modified."""
        if not self.live:
            return "deleted"
        if self.valid is False:
            return "rejected"
        return "created" if self.kind in ("created", "baseline") else "modified"


def _file(root_id: int, row: tuple[bytes, int, str | None, int | None, int | None]) -> PathEntry:
    rel, live, kind, valid, t = row
    return PathEntry(root_id, bytes(rel), False, bool(live), kind or "",
                     None if valid is None else bool(valid), int(t or 0))


class PathTree:
    """Store methods over the tree of paths (mixed into :class:`~guardian.store.db.Store`)."""

    db: sqlite3.Connection

    def tree_children(self, root_id: int, directory: bytes = b"", *,
                      limit: int = 1000) -> tuple[list[PathEntry], bool]:
        """The children of ``directory`` (b"" for the root): directories first, then files,
        each by name; and whether there were more than ``limit``."""
        lo, hi = prefix_range(directory) if directory else (b"", None)
        skip = len(lo)
        out: list[PathEntry] = []
        cursor, more = lo, False
        while not more:
            sql = _HEAD + " WHERE f.root_id = ? AND f.relpath >= ?"
            args: tuple[object, ...] = (root_id, cursor)
            if hi is not None:
                sql += " AND f.relpath < ?"
                args += (hi,)
            rows = self.db.execute(sql + f" ORDER BY f.relpath LIMIT {_CHUNK}", args).fetchall()
            if not rows:
                break
            for row in rows:
                rel = bytes(row[0])
                slash = rel.find(b"/", skip)
                if len(out) >= limit:
                    more = True
                    break
                if slash < 0:
                    out.append(_file(root_id, row))
                    cursor = rel + b"\x00"  # the next name (no path holds a NUL)
                    continue
                sub = rel[:slash]
                out.append(self._directory(root_id, sub))
                cursor = prefix_range(sub)[1]  # past everything under it
                break
            else:
                if len(rows) < _CHUNK:
                    break
        out.sort(key=lambda e: (not e.is_dir, e.relpath))
        return out, more

    def _directory(self, root_id: int, directory: bytes) -> PathEntry:
        lo, hi = prefix_range(directory)
        q = "FROM files WHERE root_id = ? AND relpath >= ? AND relpath < ?"
        n = self.db.execute(f"SELECT COUNT(*) {q}", (root_id, lo, hi)).fetchone()[0]
        live = self.db.execute(f"SELECT 1 {q} AND live = 1 LIMIT 1",
                               (root_id, lo, hi)).fetchone() is not None
        return PathEntry(root_id, directory, True, live, files=int(n))

    def path_search(self, text: str, *, root_id: int | None = None, state: str | None = None,
                    live_only: bool = False, limit: int = 500) -> list[PathEntry]:
        """Files whose relpath contains ``text`` (ASCII letters in any case), in path order,
        at most ``limit``; ``state`` one of :data:`STATES`; ``live_only``: no deleted ones."""
        where: list[str] = []
        args: list[object] = []
        if text:  # SQLite's lower() folds ASCII only: so does the needle
            where.append("instr(lower(CAST(f.relpath AS TEXT)), ?) > 0")
            args.append("".join(c.lower() if c.isascii() else c for c in text))
        if root_id is not None:
            where.append("f.root_id = ?")
            args.append(root_id)
        if state is not None:
            where.append(_STATE_SQL[state])
        if live_only:
            where.append("f.live = 1")
        sql = (_HEAD.replace("SELECT f.relpath", "SELECT f.root_id, f.relpath")
               + (" WHERE " + " AND ".join(where) if where else "")
               + f" ORDER BY f.root_id, f.relpath LIMIT {int(limit)}")
        return [_file(int(r[0]), r[1:]) for r in self.db.execute(sql, args)]

    def path_count(self) -> int:
        """Every path the store knows, deleted ones included."""
        return int(self.db.execute("SELECT COUNT(*) FROM files").fetchone()[0])
