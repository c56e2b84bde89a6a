"""The rows of one capture commit: read in one statement, written in one per table.

sqlite3 releases the GIL for every step of a statement (each row a query returns, each row
``executemany`` writes) and takes it back after. At 1,000 writes/s the store thread then waits
for it behind the inotify reader (measured: ~0.3 ms a step, six statements per version, a third
of a capture's time), and each time it takes it back it pauses the very thread that must read
the next version before it is overwritten. So a commit reads every head, every known object and
every file last seen with the inodes it holds in one step (rows aggregated as JSON), keeps what
it writes in memory (and reads its own writes from there), and writes it all at the end in one
multi-row statement per table.

Ids are assigned here as SQLite would (the largest + 1): the commit holds the writer lock.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from guardian.store.db import NewVersion, Store, Version, _signature

Key = tuple[int, bytes]  # (root id, relpath)
Sig = tuple[Any, ...]  # the scan cache's columns: size, mtime, ctime, inode, device, mode
_NO_SIG: Sig = (None,) * 6
#: Parameters per statement at most (SQLite's limit is 32,766 since 3.32; some builds 999).
_MAX_PARAMS = 999

_HEAD_JSON = (
    "json_array(f.id, f.root_id, hex(f.relpath), f.ino, f.dev, v.id, v.object_id,"
    " CASE WHEN o.hash IS NULL THEN NULL ELSE hex(o.hash) END, v.present, v.kind, v.origin,"
    " v.time_ns, v.mode, v.size, v.valid, v.session, v.note, v.peer_id)"
)
_HEADS_FROM = (
    "files f LEFT JOIN versions v ON v.id = f.head_id LEFT JOIN objects o ON o.id = v.object_id"
)


class CommitRows:
    """What one group commit reads and writes of files, versions and small objects.

    Built inside the transaction, after any other writes of it; :meth:`flush` before the
    commit (and before anything else reads or writes these tables in it).
    """

    def __init__(self, store: Store, keys: Iterable[Key], hashes: Iterable[bytes],
                 inodes: Iterable[int]) -> None:
        self.store = store
        self._deltas = store.object_deltas
        #: Files looked up or created: key -> [file id, head, cached (dev, inode)].
        self._files: dict[Key, list[Any]] = {}
        self._key_of: dict[int, Key] = {}
        #: Object ids by hash: those the store had (of ``hashes``) and those added here.
        self._objects: dict[bytes, int] = {}
        self._asked: set[bytes] = set()
        #: Files last seen with an inode, as the store had them (of ``inodes``).
        self._by_inode: dict[int, list[tuple[int, int, bytes, int]]] = {}
        self._asked_inodes: set[int] = set()
        # What is written at flush.
        self._new_objects: list[tuple[Any, ...]] = []
        self._new_files: dict[int, Key] = {}
        self._versions: list[tuple[Any, ...]] = []
        self._heads_set: dict[int, tuple[int, int]] = {}
        self._sigs_set: dict[int, Sig] = {}
        #: Pending cache entries by (dev, inode) (the store's rows of these files are stale).
        self._pending_inode: dict[tuple[int, int], set[int]] = {}
        self._prefetch(list(dict.fromkeys(keys)), list(dict.fromkeys(hashes)),
                       list(dict.fromkeys(inodes)))

    # ----------------------------------------------------------------- reading
    def _prefetch(self, keys: list[Key], hashes: list[bytes], inodes: list[int]) -> None:
        """One statement for a commit's usual size; chunks of them for a big one."""
        by_root: dict[int, list[bytes]] = {}
        for rid, rel in keys:
            by_root.setdefault(rid, []).append(rel)
        parts: list[tuple[str, str, list[Any]]] = []  # (what, subquery, args)
        room = _MAX_PARAMS - 2
        for rid, rels in by_root.items():
            for i in range(0, len(rels), room):
                part = rels[i:i + room]
                parts.append(("heads", f"SELECT json_group_array({_HEAD_JSON}) FROM {_HEADS_FROM}"
                              f" WHERE f.root_id=? AND f.relpath IN ({_marks(len(part))})",
                              [rid, *part]))
        for i in range(0, len(hashes), room):
            part = hashes[i:i + room]
            parts.append(("objects", "SELECT json_group_array(json_array(hex(hash), id))"
                          f" FROM objects WHERE hash IN ({_marks(len(part))})", part))
        for i in range(0, len(inodes), room):
            ino = inodes[i:i + room]
            parts.append(("inodes", "SELECT json_group_array(json_array(id, root_id,"
                          " hex(relpath), ino, dev)) FROM files WHERE ino IS NOT NULL AND"
                          f" ino IN ({_marks(len(ino))})", ino))
        self._asked.update(hashes)
        self._asked_inodes.update(inodes)
        maxima: tuple[str, str, list[Any]] = (
            "max", "SELECT json_array((SELECT MAX(id) FROM files), (SELECT MAX(id) FROM"
            " versions), (SELECT MAX(id) FROM objects))", [])
        group: list[tuple[str, str, list[Any]]] = [maxima]
        n = 0
        for what in parts:
            if n + len(what[2]) > _MAX_PARAMS:
                self._read(group)
                group, n = [], 0
            group.append(what)
            n += len(what[2])
        self._read(group)

    def _read(self, group: list[tuple[str, str, list[Any]]]) -> None:
        if not group:
            return
        sql = "SELECT " + ", ".join(f"({q})" for _what, q, _args in group)
        row = self.store.db.execute(sql, [a for _w, _q, args in group for a in args]).fetchone()
        for (what, _q, _a), text in zip(group, row, strict=True):
            got = json.loads(text) if text is not None else []
            if what == "max":
                fid, vid, oid = (int(x or 0) for x in got)
                self._next_fid, self._next_vid, self._next_oid = fid + 1, vid + 1, oid + 1
            elif what == "heads":
                for r in got:
                    self._known(r)
            elif what == "objects":
                for h, oid in got:
                    self._objects[bytes.fromhex(h)] = int(oid)
            else:
                for fid, rid, rel, ino, dev in got:
                    self._by_inode.setdefault(int(ino), []).append(
                        (int(fid), int(rid), bytes.fromhex(rel), int(dev)))

    def _known(self, r: list[Any]) -> None:
        (fid, rid, rel, ino, dev, vid, oid, h, present, kind, origin, t, mode, size, valid,
         session, note, peer) = r
        relpath = bytes.fromhex(rel)
        head = None if vid is None else Version(
            vid, fid, rid, relpath, oid, None if h is None else bytes.fromhex(h), bool(present),
            kind, origin, t, mode, size, None if valid is None else bool(valid), session, note,
            peer)
        key = (rid, relpath)
        self._files[key] = [fid, head, None if ino is None else (dev, ino)]
        self._key_of[fid] = key

    def _load(self, where: str, args: Sequence[Any]) -> None:
        row = self.store.db.execute(
            f"SELECT {_HEAD_JSON} FROM {_HEADS_FROM} WHERE {where}", args).fetchone()
        if row is not None:
            self._known(json.loads(row[0]))

    def file_and_head(self, key: Key) -> tuple[int | None, Version | None]:
        """The file's id and newest version (:meth:`Store.file_and_head`)."""
        f = self._files.get(key)
        if f is None:
            self._load("f.root_id=? AND f.relpath=?", key)
            f = self._files.get(key)
            if f is None:
                return None, None
        return f[0], f[1]

    def cached_inode(self, file_id: int) -> tuple[int, int] | None:
        """(dev, inode) of the file's scan cache entry, if it has one."""
        key = self._key_of.get(file_id)
        return None if key is None else self._files[key][2]

    def head(self, file_id: int) -> Version | None:
        key = self._key_of.get(file_id)
        if key is None:
            self._load("f.id=?", (file_id,))
            key = self._key_of.get(file_id)
            if key is None:
                return None
        head: Version | None = self._files[key][1]
        return head

    def files_with_inode(self, dev: int, ino: int) -> list[tuple[int, int, bytes]]:
        """(file id, root id, relpath) of files last seen with this inode
        (:meth:`Store.cache_by_inode`), this commit's changes included."""
        if ino not in self._asked_inodes:
            self._asked_inodes.add(ino)
            self._by_inode[ino] = [(fid, rid, rel, e.dev)
                                   for fid, rid, rel, e in self.store.cache_by_inode(dev, ino)]
        out = [(fid, rid, rel) for fid, rid, rel, d in self._by_inode.get(ino, ())
               if d == dev and fid not in self._sigs_set]
        for fid in sorted(self._pending_inode.get((dev, ino), ())):
            rid, rel = self._key_of[fid]
            out.append((fid, rid, rel))
        return out

    def object_id(self, h: bytes) -> int | None:
        """The id of the object of this hash, if the store has it."""
        oid = self._objects.get(h)
        if oid is None and h not in self._asked:
            self._asked.add(h)
            row = self.store.db.execute("SELECT id FROM objects WHERE hash=?", (h,)).fetchone()
            if row is not None:
                oid = self._objects[h] = int(row[0])
        return oid

    # ----------------------------------------------------------------- writing
    def new_file(self, key: Key) -> int:
        fid = self._next_fid
        self._next_fid += 1
        self._new_files[fid] = key
        self._files[key] = [fid, None, None]
        self._key_of[fid] = key
        return fid

    def add_version(self, nv: NewVersion, time_ns: int, st: os.stat_result | None,
                    h: bytes | None) -> Version:
        """Append a version and make it the file's head (:meth:`Store.add_version`); ``h``:
        the hash of its object. Returns the version as the store will hold it."""
        vid = self._next_vid
        self._next_vid += 1
        self._versions.append((vid, nv.file_id, nv.object_id, int(nv.present), nv.kind,
                               nv.origin, time_ns, nv.mode, nv.size,
                               None if nv.valid is None else int(nv.valid), nv.session, nv.note,
                               nv.peer_id))
        self._heads_set[nv.file_id] = (vid, int(nv.present))
        sig = _signature(st, time_ns) if st is not None and nv.present else _NO_SIG
        self._set_sig(nv.file_id, sig)
        rid, rel = key = self._key_of[nv.file_id]
        v = Version(vid, nv.file_id, rid, rel, nv.object_id,
                    h if nv.present and nv.object_id is not None else None, nv.present, nv.kind,
                    nv.origin, time_ns, nv.mode, nv.size, nv.valid, nv.session, nv.note,
                    nv.peer_id)
        self._files[key][1] = v
        return v

    def cache_put(self, file_id: int, st: os.stat_result, seen_ns: int) -> None:
        self._set_sig(file_id, _signature(st, seen_ns))

    def cache_drop(self, file_id: int) -> None:
        self._set_sig(file_id, _NO_SIG)

    def _set_sig(self, fid: int, sig: Sig) -> None:
        old = self._sigs_set.get(fid)
        if old is not None and old[3] is not None:
            self._pending_inode.get((old[4], old[3]), set()).discard(fid)
        self._sigs_set[fid] = sig
        if sig[3] is not None:
            self._pending_inode.setdefault((sig[4], sig[3]), set()).add(fid)
        f = self._files[self._key_of[fid]]
        f[2] = None if sig[3] is None else (sig[4], sig[3])

    def add_object(self, h: bytes, size: int, codec: str, stored: bytes) -> int:
        """A whole copy small enough for a row of the table (:meth:`Objects.put`'s plain
        case: not loose, not a delta)."""
        oid = self._next_oid
        self._next_oid += 1
        row: tuple[Any, ...] = (oid, h, size, len(stored), codec, 0, stored)
        self._new_objects.append((*row, None, 0, 0) if self._deltas else row)
        self._objects[h] = oid
        return oid

    def added_object(self, h: bytes, oid: int) -> None:
        """``Objects.put`` stored ``h`` itself (after :meth:`flush_objects`)."""
        self._objects[h] = oid
        self._next_oid = max(self._next_oid, oid + 1)

    def flush_objects(self) -> None:
        """Write the objects added so far (before anything else writes or reads objects)."""
        if self._new_objects:
            cols = ("id, hash, size, stored_size, codec, loose, data"
                    + (", base_id, depth, chain_pos" if self._deltas else ""))
            self._insert(f"INSERT INTO objects({cols})", self._new_objects)
            self._new_objects = []

    def flush(self) -> None:
        """Write everything this commit added."""
        self.flush_objects()
        if self._new_files:
            rows = []
            for fid, (rid, rel) in self._new_files.items():
                vid, live = self._heads_set.get(fid, (None, 0))
                rows.append((fid, rid, rel, vid, live, *self._sigs_set.get(fid, _NO_SIG)))
            self._insert("INSERT INTO files(id, root_id, relpath, head_id, live, size,"
                         " mtime_ns, ctime_ns, ino, dev, mode)", rows)
        if self._versions:
            self._insert("INSERT INTO versions(id, file_id, object_id, present, kind, origin,"
                         " time_ns, mode, size, valid, session, note, peer_id)", self._versions)
        updates = [(fid, *self._heads_set.get(fid, (None, None)), *sig)
                   for fid, sig in self._sigs_set.items() if fid not in self._new_files]
        if updates:
            self._update(updates)
        self._new_files.clear()
        self._versions.clear()
        self._heads_set.clear()
        self._sigs_set.clear()
        self._pending_inode.clear()
        self._by_inode.clear()
        self._asked_inodes.clear()

    def _insert(self, head: str, rows: list[tuple[Any, ...]]) -> None:
        n = len(rows[0])
        per = max(1, _MAX_PARAMS // n)
        one = "(" + ",".join("?" * n) + ")"
        db = self.store.db
        for i in range(0, len(rows), per):
            part = rows[i:i + per]
            db.execute(f"{head} VALUES " + ",".join([one] * len(part)),
                       [x for r in part for x in r])

    def _update(self, rows: list[tuple[Any, ...]]) -> None:
        """(file id, head id or None, live or None, *sig): the head where one is given, the
        scan cache always."""
        if sqlite3.sqlite_version_info < (3, 33):  # no UPDATE FROM: a statement per file
            self.store.db.executemany(
                "UPDATE files SET head_id=COALESCE(?2, head_id), live=COALESCE(?3, live),"
                " size=?4, mtime_ns=?5, ctime_ns=?6, ino=?7, dev=?8, mode=?9 WHERE id=?1", rows)
            return
        per = _MAX_PARAMS // 9
        one = "(?,?,?,?,?,?,?,?,?)"
        db = self.store.db
        for i in range(0, len(rows), per):
            part = rows[i:i + per]
            db.execute(
                "UPDATE files SET head_id=COALESCE(u.column2, files.head_id),"
                " live=COALESCE(u.column3, files.live), size=u.column4, mtime_ns=u.column5,"
                " ctime_ns=u.column6, ino=u.column7, dev=u.column8, mode=u.column9"
                f" FROM (VALUES {','.join([one] * len(part))}) AS u WHERE files.id=u.column1",
                [x for r in part for x in r])


def _marks(n: int) -> str:
    return ",".join("?" * n)
