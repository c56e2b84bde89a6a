"""``guardian verify``: check the database, re-hash every stored object, name what is damaged.

SQLite's ``quick_check`` runs first (``--full``: ``integrity_check``, which also checks every
index against its table). A damaged database is reported as damage, never a crash: the tables
and indexes it hits are named (each b-tree is walked on its own), and objects whose rows cannot
be read are listed with the versions that use them, like objects whose bytes no longer match
their SHA-256. Each damaged object is reported with every version that uses it, so a user
knows exactly which history was hit.

Repair is :func:`guardian.capture.repair.repair`: it reads the tree, so it lives with capture.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from guardian.errors import CorruptObjectError
from guardian.paths import Root
from guardian.store.db import DamagedStoreError, Store, is_damage
from guardian.store.history import version_json
from guardian.store.objects import ObjectInfo, Objects


@dataclass
class Damage:
    sha256: str
    reason: str
    loose: bool
    versions: list[dict[str, Any]]
    #: False: the object's row itself could not be read (database damage).
    row_readable: bool = True


@dataclass
class VerifyResult:
    objects: int = 0
    bytes: int = 0
    database_ok: bool = True
    database_message: str = "ok"
    database_check: str = "quick_check"
    #: Tables and indexes whose pages cannot be read.
    database_hit: list[str] = field(default_factory=list)
    damaged: list[Damage] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.database_ok and not self.damaged

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "objects": self.objects,
            "bytes": self.bytes,
            "database": {"ok": self.database_ok, "message": self.database_message,
                         "check": self.database_check, "damaged": self.database_hit},
            "corrupt": [
                {"sha256": d.sha256, "reason": d.reason, "loose": d.loose, "versions": d.versions}
                for d in self.damaged
            ],
        }


def verify(store: Store, progress: Callable[[int, int], None] | None = None, *,
           full: bool = False) -> VerifyResult:
    result = VerifyResult(database_check="integrity_check" if full else "quick_check")
    _check_database(store, result)
    objects = Objects(store)
    infos, unlisted = _list_objects(store)
    if unlisted:
        result.database_ok = False
        if result.database_message == "ok":
            result.database_message = unlisted
    total = len(infos)
    roots = _roots(store)
    for i, item in enumerate(infos, 1):
        _check_object(store, objects, item, roots, result)
        if progress:
            progress(i, total)
    if any(not d.row_readable for d in result.damaged):
        result.database_ok = False
    if not result.database_ok and not result.database_hit:
        result.database_hit = _hit_btrees(store)
    return result


def _check_object(store: Store, objects: Objects, item: ObjectInfo | tuple[int, bytes],
                  roots: dict[int, Root], result: VerifyResult) -> None:
    result.objects += 1
    if isinstance(item, ObjectInfo):
        info = item
    else:  # (id, hash) from the hash index: the row itself is read now
        oid, h = item
        try:
            info = objects.info(oid)
        except (DamagedStoreError, CorruptObjectError) as e:
            result.damaged.append(Damage(h.hex(), f"its row cannot be read ({_why(e)})",
                                         False, _users(store, oid, roots), False))
            return
    result.bytes += info.size
    try:
        objects.check(info)
    except (CorruptObjectError, DamagedStoreError) as e:
        reason = str(e) if isinstance(e, CorruptObjectError) else (
            f"its bytes cannot be read ({_why(e)})")
        result.damaged.append(Damage(info.hash.hex(), reason, info.loose,
                                     _users(store, info.id, roots)))


def unopenable(e: DamagedStoreError, *, full: bool = False) -> VerifyResult:
    """The report for a store whose database cannot even be opened (its header is damaged,
    or it is not a database): damage, like any other."""
    return VerifyResult(database_ok=False, database_message=_why(e),
                        database_check="integrity_check" if full else "quick_check",
                        database_hit=["the database file (header or schema)"])


def _check_database(store: Store, result: VerifyResult) -> None:
    """SQLite's own check; on damage, which b-trees are hit."""
    try:
        rows = store.db.execute(f"PRAGMA {result.database_check}").fetchall()
        msg = "; ".join(str(r[0]) for r in rows[:20])
        if len(rows) > 20:
            msg += f"; … and {len(rows) - 20} more"
    except sqlite3.DatabaseError as e:  # so damaged that the check itself cannot run
        msg = _why(e)
    result.database_ok = msg == "ok"
    result.database_message = msg
    if not result.database_ok:
        result.database_hit = _hit_btrees(store)


def _hit_btrees(store: Store) -> list[str]:
    """Tables and indexes whose b-tree cannot be walked (each one on its own)."""
    try:
        entries = store.db.execute(
            "SELECT type, name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')"
            " ORDER BY rootpage").fetchall()
    except sqlite3.DatabaseError:
        return ["sqlite_master (the schema)"]
    hit = []
    for kind, name, table in entries:
        # Names from the store's own schema, quoted as identifiers.
        q = (f"SELECT count(*) FROM {_ident(table)} NOT INDEXED" if kind == "table"
             else f"SELECT count(*) FROM {_ident(table)} INDEXED BY {_ident(name)}")
        try:
            store.db.execute(q).fetchone()
        except sqlite3.DatabaseError as e:
            if is_damage(e):
                hit.append(f"{kind} {name}")
    return hit


def _ident(name: str) -> str:
    return '"' + str(name).replace('"', '""') + '"'


def _list_objects(store: Store) -> tuple[list[ObjectInfo | tuple[int, bytes]], str]:
    """Every object: whole rows when the table reads, else (id, hash) from the hash index, so
    an object on a damaged page is still named. The second item says what could not be read."""
    try:
        return list(Objects(store).all()), ""
    except sqlite3.DatabaseError as e:
        first = _why(e)
    try:
        rows = store.db.execute("SELECT id, hash FROM objects INDEXED BY"
                                " sqlite_autoindex_objects_1").fetchall()
    except sqlite3.DatabaseError as e:
        return [], f"the objects cannot be listed ({_why(e)})"
    return [(int(r[0]), bytes(r[1])) for r in rows], f"objects table: {first}"


def _users(store: Store, object_id: int, roots: dict[int, Root]) -> list[dict[str, Any]]:
    """The versions that use an object, as ``log --json`` shows them (ids only when their
    rows cannot be read)."""
    try:
        ids = store.versions_using(object_id)
    except sqlite3.DatabaseError:
        return []
    out = []
    for vid in ids:
        try:
            v = store.version(vid)
        except sqlite3.DatabaseError:  # joined with the damaged object row: without it
            out.append(_bare_version(store, vid, roots))
            continue
        if v is not None:
            out.append(version_json(v, roots))
    return out


def _bare_version(store: Store, vid: int, roots: dict[int, Root]) -> dict[str, Any]:
    """What can be read of a version without its object: id, path, time, kind."""
    from guardian.timespec import iso

    try:
        row = store.db.execute(
            "SELECT f.root_id, f.relpath, v.time_ns, v.kind FROM versions v"
            " JOIN files f ON f.id = v.file_id WHERE v.id=?", (vid,)).fetchone()
    except sqlite3.DatabaseError:
        row = None
    if row is None:
        return {"id": vid, "path": None, "time": None}
    root = roots.get(int(row[0]))
    rel = bytes(row[1])
    return {"id": vid, "path": root.display(rel) if root else os.fsdecode(rel),
            "time": iso(row[2]), "time_ns": row[2], "kind": row[3]}


def _roots(store: Store) -> dict[int, Root]:
    try:
        return {r.id: r for r in store.roots()}
    except sqlite3.DatabaseError:
        return {}


def _why(e: BaseException) -> str:
    """SQLite's own words, without the store's advice around them."""
    cause = str(e)
    if isinstance(e, DamagedStoreError) and "(" in cause:
        cause = cause[cause.index("(") + 1:cause.index(")")]
    return cause
