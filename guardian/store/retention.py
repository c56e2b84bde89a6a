"""Retention (``guardian gc``): which versions to drop, and the objects nobody needs after.

A version is kept while it is one of the newest ``keep_versions`` of its file OR younger than
``keep_days``. The newest version of a file that exists is never dropped, whatever the settings.
Objects are dropped only when no kept version names them; loose files go after the commit.
A kept object stored as a delta against one being dropped is re-encoded first, in the same
transaction (SQLite commits the new encodings and the delete together, or neither: a crash
at any point leaves every version restorable). Then whole copies (a store from before deltas,
batches) are re-encoded as deltas against their file's previous version (``Objects.repack``).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from guardian.errors import UsageError
from guardian.store.db import Store
from guardian.store.objects import Objects


@dataclass
class GcResult:
    dry_run: bool
    versions_dropped: int = 0
    objects_dropped: int = 0
    bytes_freed: int = 0
    files_affected: int = 0
    orphans_removed: int = 0
    #: Kept objects re-encoded because their delta base was dropped.
    objects_rebased: int = 0
    #: Whole copies re-encoded as deltas against their file's previous version.
    objects_repacked: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "versions_dropped": self.versions_dropped,
            "objects_dropped": self.objects_dropped,
            "bytes_freed": self.bytes_freed,
            "files_affected": self.files_affected,
            "orphans_removed": self.orphans_removed,
            "objects_rebased": self.objects_rebased,
            "objects_repacked": self.objects_repacked,
        }


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _horizon(now: int, keep_days: float) -> int:
    """``now - keep_days`` in ns, as SQLite can hold it: a keep_days that is NaN, infinite
    or longer than any stored time keeps every version by age (gc never drops more than
    the rules ask for; only versions older than the horizon go, and none is older than
    the smallest time), and one far in the future keeps none by age."""
    age = float(keep_days) * 86400e9
    if not math.isfinite(age):
        return _INT64_MIN
    return min(max(now - int(age), _INT64_MIN), _INT64_MAX)


def gc(store: Store, *, keep_versions: int, keep_days: float, dry_run: bool = False,
       now_ns: int | None = None,
       per_file: Callable[[int, bytes], tuple[int, float]] | None = None) -> GcResult:
    """Apply retention. ``per_file(root_id, relpath) -> (keep_versions, keep_days)`` gives
    each file its own rules (``.guardian.toml``); without it, the same for every file."""
    if keep_versions < 1:
        raise UsageError("keep_versions must be at least 1 (the newest version is always kept)")
    now = time.time_ns() if now_ns is None else now_ns
    result = GcResult(dry_run)
    db = store.db
    drop: list[int] = []
    db.execute("CREATE TEMP TABLE IF NOT EXISTS gc_keep(file_id INTEGER PRIMARY KEY,"
               " keep INTEGER NOT NULL, horizon INTEGER NOT NULL)")
    db.execute("DELETE FROM gc_keep")
    keep_rows = []
    for fid, rid, rel in db.execute("SELECT id, root_id, relpath FROM files"):
        kv, kd = per_file(rid, bytes(rel)) if per_file else (keep_versions, keep_days)
        keep_rows.append((fid, min(max(1, int(kv)), _INT64_MAX), _horizon(now, kd)))
    db.executemany("INSERT INTO gc_keep VALUES(?,?,?)", keep_rows)
    rows = db.execute(
        "SELECT v.id, v.file_id, v.time_ns FROM ("
        " SELECT id, file_id, time_ns,"
        "  ROW_NUMBER() OVER (PARTITION BY file_id ORDER BY id DESC) AS rank FROM versions) v"
        " JOIN gc_keep k ON k.file_id = v.file_id WHERE v.rank > k.keep AND v.time_ns < k.horizon"
    ).fetchall()
    files = set()
    for vid, fid, _t in rows:
        drop.append(vid)
        files.add(fid)
    result.versions_dropped = len(drop)
    result.files_affected = len(files)
    objects = Objects(store)
    loose_to_remove: list[bytes] = []
    with store.transaction():
        db.execute("CREATE TEMP TABLE IF NOT EXISTS gc_drop(id INTEGER PRIMARY KEY)")
        db.execute("DELETE FROM gc_drop")
        db.executemany("INSERT INTO gc_drop VALUES(?)", ((v,) for v in drop))
        dead = db.execute(
            "SELECT o.id, o.hash, o.stored_size, o.loose FROM objects o WHERE NOT EXISTS"
            " (SELECT 1 FROM versions v WHERE v.object_id = o.id"
            "  AND v.id NOT IN (SELECT id FROM gc_drop))"
            # An unfinished batch needs its old and new contents until it is recovered.
            " AND NOT EXISTS (SELECT 1 FROM batch_entries b"
            "  WHERE b.old_object_id = o.id OR b.new_object_id = o.id)"
        ).fetchall()
        result.objects_dropped = len(dead)
        result.bytes_freed = sum(r[2] for r in dead)
        if not dry_run:
            db.execute("DELETE FROM versions WHERE id IN (SELECT id FROM gc_drop)")
            db.execute("DELETE FROM problems WHERE version_id IN (SELECT id FROM gc_drop)")
            result.objects_rebased = objects.rebase([int(r[0]) for r in dead])
            db.executemany("DELETE FROM objects WHERE id=?", ((r[0],) for r in dead))
            loose_to_remove = [bytes(r[1]) for r in dead if r[3]]
        db.execute("DELETE FROM gc_drop")
    if dry_run:
        return result
    for h in loose_to_remove:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(objects.loose_path(h))
    result.orphans_removed = _remove_orphans(store, objects)
    result.objects_repacked = objects.repack()
    with contextlib.suppress(Exception):
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return result


def _remove_orphans(store: Store, objects: Objects) -> int:
    """Loose files no row names (left by a crash between write and commit), and stray temps."""
    known = {bytes(r[0]).hex() for r in store.db.execute("SELECT hash FROM objects WHERE loose=1")}
    removed = 0
    try:
        subdirs = list(objects.dir.iterdir())
    except OSError:
        return 0
    for sub in subdirs:
        if not sub.is_dir():
            continue
        for f in sub.iterdir():
            if sub.name + f.name in known:
                continue
            with contextlib.suppress(OSError):
                f.unlink()
                removed += 1
    return removed
