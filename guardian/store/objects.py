"""Content-addressed objects: SHA-256 of the raw bytes, zstd-compressed, small ones as deltas.

Small objects live in the ``objects`` table; objects of ``LOOSE_THRESHOLD`` bytes or more are
loose files under ``objects/ab/cdef…`` (temp + fsync + rename, read-only), so big files do not
bloat the WAL. A loose file is durable before the row naming it commits.

Repair: an object found damaged (``guardian verify``, or a read here that fails its check) is
marked in the store (``Store.damaged``); storing bytes with that hash again rewrites it instead
of linking a new version to the damaged copy. Every other put of a known hash costs one set
lookup.

Deltas (codec ``zstd-delta``): a new version of a file is stored as a zstd frame that uses an
earlier version's raw bytes as its dictionary (``base_id``), when that is smaller than the
whole copy; a one-line edit of a 140 KB file costs ~60 bytes instead of ~60 KB. Chains are
skip-deltas (the version at chain position ``p`` uses the one at ``p & (p - 1)``), so a read
decodes at most ``CHAIN_BITS`` frames, and a chain starts over with a whole copy every
``2**CHAIN_BITS`` versions. Reads never trust the rows: a chain longer than ``MAX_DEPTH`` or a
missing base is damage, every decoded link is re-hashed, and output is bounded by the row's
size. Loose objects are never deltas (a loose file is named by its hash and its encoding
could not change atomically with the row), but they are bases: a new version of a big file
(up to ``DELTA_MAX_SIZE``) is stored in the table as a delta against it when that is
smaller, so an edit of a 700 KB file costs ~200 bytes, not a second 150 KB loose file.
``gc`` re-encodes every kept object whose base it drops (:meth:`Objects.rebase`) in the
transaction that drops it (a big one that becomes a whole copy becomes loose again, its
file durable before the commit), so each version stays restorable on its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardian.errors import CorruptObjectError
from guardian.store.codec import ZSTD_LEVEL as ZSTD_LEVEL
from guardian.store.codec import compress as compress
from guardian.store.db import Store

LOOSE_THRESHOLD = 256 * 1024
#: The largest file stored as a delta (a read or write of one holds its base's raw bytes
#: and its own in memory; bigger files are whole loose copies).
DELTA_MAX_SIZE = 8 * 1024 * 1024
#: The smallest new content tried as a delta: below it a whole copy is at most a few hundred
#: bytes, and looking up the base chain and building a zstd dictionary per version cost more
#: than those bytes are worth (a quarter of the store thread's time at 1,000 writes/s).
DELTA_MIN_SIZE = 512
DELTA_CODEC = "zstd-delta"
#: Skip-delta chains start over with a whole copy at position ``2**CHAIN_BITS`` (depth <= 10).
CHAIN_BITS = 10
#: The most links a read follows; more is damage (a cycle, or rows that lie), not a loop.
MAX_DEPTH = 16
#: Store new versions as deltas (``python -m bench store`` turns it off to measure the
#: whole-copy codec in the same run).
DELTA_ENABLED = True
#: Raw bytes of recently written or decoded small objects kept per ``Objects`` (the base of
#: the next version of a file being edited is usually the one just written).
RAW_CACHE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class ObjectInfo:
    id: int
    hash: bytes
    size: int
    stored_size: int
    codec: str
    loose: bool
    base_id: int | None = None
    depth: int = 0
    pos: int = 0


_local = threading.local()


def _decompressor() -> Any:
    d = getattr(_local, "d", None)
    if d is None:
        import zstandard

        d = _local.d = zstandard.ZstdDecompressor()
    return d


def digest(data: bytes) -> bytes:
    """SHA-256 of the raw bytes: what ``sha256sum`` prints, as 32 bytes."""
    return hashlib.sha256(data).digest()


def decompress(codec: str, stored: bytes, size: int, base: bytes | None = None) -> bytes:
    """The raw bytes of a stored encoding (``base``: the raw bytes of a delta's base)."""
    if codec == "raw":
        return stored
    if codec == "zstd":
        out: bytes = _decompressor().decompress(stored, max_output_size=max(size, 1))
        return out
    if codec == DELTA_CODEC and base is not None:
        import zstandard

        if size > DELTA_MAX_SIZE:  # never written so: the row lies
            raise CorruptObjectError(f"a delta of {size} bytes is over the delta limit")
        d = zstandard.ZstdDecompressor(dict_data=_raw_dict(base))
        delta: bytes = d.decompress(stored, max_output_size=max(size, 1))
        return delta
    raise CorruptObjectError(f"unknown codec {codec!r}")


def compress_delta(data: bytes, base: bytes) -> bytes:
    """``data`` as a zstd frame that refers to ``base`` (a raw-content dictionary)."""
    import zstandard

    c = zstandard.ZstdCompressor(level=ZSTD_LEVEL, dict_data=_raw_dict(base),
                                 write_checksum=True, write_dict_id=False)
    out: bytes = c.compress(data)
    return out


def _raw_dict(base: bytes) -> Any:
    import zstandard

    return zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)


_COLS = "id, hash, size, stored_size, codec, loose, base_id, depth, chain_pos"
_OLD_COLS = "id, hash, size, stored_size, codec, loose, NULL, 0, 0"  # a store older than deltas


def _info(r: Any) -> ObjectInfo:
    return ObjectInfo(r[0], bytes(r[1]), r[2], r[3], r[4], bool(r[5]), r[6], r[7] or 0,
                      r[8] or 0)


class Objects:
    """The object half of a store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.dir = store.path / "objects"
        self._dirs_to_sync: set[Path] = set()
        self._cache: OrderedDict[int, tuple[bytes, bytes]] = OrderedDict()
        self._cached = 0

    def _cols(self) -> str:
        return _COLS if self.store.object_deltas else _OLD_COLS

    def loose_path(self, h: bytes) -> Path:
        x = h.hex()
        return self.dir / x[:2] / x[2:]

    def lookup(self, h: bytes) -> int | None:
        row = self.store.db.execute("SELECT id FROM objects WHERE hash=?", (h,)).fetchone()
        return None if row is None else int(row[0])

    def put(self, data: bytes, h: bytes | None = None,
            packed: tuple[str, bytes] | None = None, *, base: int | None = None) -> int:
        """Store ``data`` if new; return its object id. Call inside a store transaction.

        ``base``: the object of the file's previous version; the new one is stored as a delta
        against its chain when that is smaller. A known hash marked damaged is rewritten from
        ``data`` (checked to hash right first).
        """
        h = digest(data) if h is None else h
        existing = self.lookup(h)
        if existing is not None:
            if h in self.store.damaged:
                self.rewrite(existing, data, h, packed)
            return existing
        codec, stored = packed if packed is not None else compress(data)
        loose = len(data) >= LOOSE_THRESHOLD
        link: tuple[int, int, int] | None = None
        if (base is not None and DELTA_MIN_SIZE <= len(data) <= DELTA_MAX_SIZE and DELTA_ENABLED
                and self.store.object_deltas):
            delta = self._delta_against(base, data, len(stored))
            if delta is not None:
                stored, link = delta
                codec = DELTA_CODEC
                loose = False  # a delta is small: a row of the table, even for a big file
        if loose:
            self._write_loose(h, stored)
        if self.store.damaged and h in self.store.damaged:  # gc dropped the damaged one
            self.store.clear_damaged(h)
        base_id, depth, pos = link if link is not None else (None, 0, 0)
        if self.store.object_deltas:
            cur = self.store.db.execute(
                "INSERT INTO objects(hash, size, stored_size, codec, loose, data, base_id, depth,"
                " chain_pos) VALUES(?,?,?,?,?,?,?,?,?)",
                (h, len(data), len(stored), codec, int(loose), None if loose else stored,
                 base_id, depth, pos))
        else:
            cur = self.store.db.execute(
                "INSERT INTO objects(hash, size, stored_size, codec, loose, data)"
                " VALUES(?,?,?,?,?,?)",
                (h, len(data), len(stored), codec, int(loose), None if loose else stored))
        oid = int(cur.lastrowid or 0)
        if not loose:
            self._remember(oid, h, data)
        return oid

    def plain(self, size: int, base: int | None) -> bool:
        """Whether :meth:`put` of new content of ``size`` bytes stores one whole copy in a
        row of the table (not loose, not tried as a delta), which a caller may insert itself
        (:mod:`guardian.store.commit_rows`) and then :meth:`remember`."""
        return size < LOOSE_THRESHOLD and not (
            base is not None and DELTA_MIN_SIZE <= size <= DELTA_MAX_SIZE and DELTA_ENABLED
            and self.store.object_deltas)

    def remember(self, oid: int, h: bytes, raw: bytes) -> None:
        """Object ``oid`` was stored by the caller (see :meth:`plain`): keep its raw bytes
        as the likely base of the file's next version, as :meth:`put` does."""
        self._remember(oid, h, raw)

    def _delta_against(self, head_id: int, data: bytes, whole: int
                       ) -> tuple[bytes, tuple[int, int, int]] | None:
        """(stored delta, (base id, depth, chain position)) of ``data`` against the chain of
        object ``head_id``, or None when a whole copy is as small or the chain is unusable."""
        try:
            head = self.info(head_id)
            if (head.size < 64 or head.size > DELTA_MAX_SIZE
                    or head.hash in self.store.damaged):
                return None
            pos = head.pos + 1
            if pos >= 1 << CHAIN_BITS:
                return None  # start a new chain with a whole copy
            target = pos & (pos - 1)
            cur = head
            for _ in range(MAX_DEPTH):  # skip back to the chain's position ``target``
                if cur.pos <= target or cur.base_id is None:
                    break
                nxt = self.info(cur.base_id)
                if nxt.size < 64 or nxt.size > DELTA_MAX_SIZE:
                    break
                cur = nxt
            if cur.depth + 1 > MAX_DEPTH:
                return None
            base = self._raw(cur, use_cache=True)
        except CorruptObjectError:
            return None  # a damaged base: the whole copy it is
        stored = compress_delta(data, base)
        if len(stored) >= whole:
            return None
        return stored, (cur.id, cur.depth + 1, pos)

    def _remember(self, oid: int, h: bytes, raw: bytes) -> None:
        if len(raw) > RAW_CACHE_BYTES // 8:
            return
        old = self._cache.pop(oid, None)
        if old is not None:
            self._cached -= len(old[1])
        self._cache[oid] = (h, raw)
        self._cached += len(raw)
        while self._cached > RAW_CACHE_BYTES:
            _, (_, gone) = self._cache.popitem(last=False)
            self._cached -= len(gone)

    def _cached_raw(self, info: ObjectInfo) -> bytes | None:
        """Raw bytes decoded (and checked) or written earlier, if they are still this object's
        (ids of a rolled-back transaction are reused: the hash says whose bytes they are)."""
        hit = self._cache.get(info.id)
        if hit is None or hit[0] != info.hash:
            return None
        self._cache.move_to_end(info.id)
        return hit[1]

    def _raw(self, info: ObjectInfo, *, use_cache: bool) -> bytes:
        """Decode ``info`` through its delta chain (no recursion; at most MAX_DEPTH links),
        re-hashing every link; ``use_cache``: ``info``'s own bytes may come from the cache
        (never for a check: that reads the object itself)."""
        if use_cache:
            hit = self._cached_raw(info)
            if hit is not None:
                return hit
        chain: list[tuple[ObjectInfo, bytes | None]] = [(info, None)]
        raw: bytes | None = None
        while chain[-1][0].base_id is not None:
            if len(chain) > MAX_DEPTH:
                raise CorruptObjectError(
                    f"object {info.hash.hex()}: delta chain longer than {MAX_DEPTH} links",
                    object_hash=info.hash)
            below = chain[-1][0]
            base_id = below.base_id
            assert base_id is not None
            row = self.store.db.execute(f"SELECT {_COLS}, data FROM objects WHERE id=?",
                                        (base_id,)).fetchone()
            if row is None:
                raise CorruptObjectError(
                    f"object {below.hash.hex()}: its base object {base_id} is missing",
                    object_hash=below.hash)
            base = _info(row)
            raw = self._cached_raw(base)
            if raw is not None:
                break
            chain.append((base, None if base.loose or row[9] is None else bytes(row[9])))
        for link, stored in reversed(chain):
            # The links below are checked by their zstd frame checksums, the object itself
            # by its SHA-256 (which also catches a base that decoded wrong); only bytes whose
            # SHA-256 was checked are kept for later.
            raw = self._decode(link, raw, rehash=link is info, stored=stored)
        assert raw is not None
        self._remember(info.id, info.hash, raw)
        return raw

    def _decode(self, info: ObjectInfo, base: bytes | None, *, rehash: bool = True,
                stored: bytes | None = None) -> bytes:
        """One link: read (unless ``stored`` was read with its row), decompress (against
        ``base``), check size and (``rehash``) hash."""
        if stored is None:
            stored = self.read_stored(info)
        if info.codec == DELTA_CODEC and base is None:
            raise CorruptObjectError(f"object {info.hash.hex()}: a delta without a base",
                                     object_hash=info.hash)
        try:
            data = decompress(info.codec, stored, info.size,
                              base if info.codec == DELTA_CODEC else None)
        except CorruptObjectError as e:
            raise CorruptObjectError(f"object {info.hash.hex()}: {e}",
                                     object_hash=info.hash) from None
        except Exception as e:  # zstd raises its own error types on damaged frames
            raise CorruptObjectError(f"object {info.hash.hex()}: cannot decompress: {e}",
                                     object_hash=info.hash) from None
        if len(data) != info.size or (rehash and digest(data) != info.hash):
            raise CorruptObjectError(f"object {info.hash.hex()}: content does not match its hash",
                                     object_hash=info.hash)
        return data

    def put_many(self, items: list[tuple[bytes, bytes, tuple[str, bytes] | None]]
                 ) -> dict[bytes, int]:
        """Store many (hash, data, packed) at once, each whole; return hash -> object id for
        all of them."""
        db = self.store.db
        ids: dict[bytes, int] = {}
        hashes = list(dict.fromkeys(h for h, _, _ in items))
        for i in range(0, len(hashes), 500):
            part = hashes[i:i + 500]
            marks = ",".join("?" * len(part))
            for oid, h in db.execute(f"SELECT id, hash FROM objects WHERE hash IN ({marks})",
                                     part):
                ids[bytes(h)] = int(oid)
        damaged = self.store.damaged
        next_id = int(db.execute("SELECT COALESCE(MAX(id), 0) FROM objects").fetchone()[0]) + 1
        rows = []
        for h, data, packed in items:
            if h in ids:
                if damaged and h in damaged:
                    self.rewrite(ids[h], data, h, packed)
                continue
            codec, stored = packed if packed is not None else compress(data)
            loose = len(data) >= LOOSE_THRESHOLD
            if loose:
                self._write_loose(h, stored)
            ids[h] = next_id
            rows.append((next_id, h, len(data), len(stored), codec, int(loose),
                         None if loose else stored))
            next_id += 1
        db.executemany("INSERT INTO objects(id, hash, size, stored_size, codec, loose, data)"
                       " VALUES(?,?,?,?,?,?,?)", rows)
        return ids

    def rewrite(self, object_id: int, data: bytes, h: bytes,
                packed: tuple[str, bytes] | None = None) -> bool:
        """Replace a damaged object's stored bytes with ``data``, if ``data`` hashes to ``h``
        (never "repair" with other bytes); clear its mark. A whole copy, so it no longer
        depends on any base (its dependents keep decoding: its raw bytes are the same).
        Inside a store transaction; a loose file is durable (after :meth:`sync`) before the
        commit."""
        if digest(data) != h:
            return False
        codec, stored = packed if packed is not None else compress(data)
        loose = len(data) >= LOOSE_THRESHOLD
        if loose:
            self._write_loose(h, stored, replace=True)
        self._set_encoding(object_id, codec, stored, data, loose)
        self.store.clear_damaged(h)
        return True

    def _set_encoding(self, object_id: int, codec: str, stored: bytes, data: bytes,
                      loose: bool, base: tuple[int, int] | None = None) -> None:
        """Store a new encoding of the same raw bytes (``base``: (base id, depth))."""
        base_id, depth = base if base is not None else (None, 0)
        if self.store.object_deltas:
            self.store.db.execute(
                "UPDATE objects SET size=?, stored_size=?, codec=?, loose=?, data=?, base_id=?,"
                " depth=? WHERE id=?",
                (len(data), len(stored), codec, int(loose), None if loose else stored, base_id,
                 depth, object_id))
        else:
            self.store.db.execute(
                "UPDATE objects SET size=?, stored_size=?, codec=?, loose=?, data=? WHERE id=?",
                (len(data), len(stored), codec, int(loose), None if loose else stored,
                 object_id))

    def rebase(self, dropping: Collection[int]) -> int:
        """Re-encode every object that is not being dropped and whose base is, so it decodes
        without it; call in the transaction that deletes ``dropping`` (gc), before the delete.

        The first such object of each chain becomes a whole copy; the others of that chain
        become deltas against it (depth 1, never deeper than before: deltas on top of them
        stay within their bound). Each is decoded, and each new encoding decoded back and
        checked against the object's hash, before anything is deleted. Returns how many.
        """
        if not dropping or not self.store.object_deltas:
            return 0
        from guardian import faults

        db = self.store.db
        db.execute("CREATE TEMP TABLE IF NOT EXISTS rebase_drop(id INTEGER PRIMARY KEY)")
        db.execute("DELETE FROM rebase_drop")
        db.executemany("INSERT INTO rebase_drop VALUES(?)", ((i,) for i in dropping))
        rows = db.execute(
            f"SELECT {_COLS} FROM objects WHERE base_id IN (SELECT id FROM rebase_drop)"
            " AND id NOT IN (SELECT id FROM rebase_drop) ORDER BY id").fetchall()
        db.execute("DELETE FROM rebase_drop")
        # chain's old whole object -> its new one (id, raw bytes; None for a big one, read
        # back from its loose file when needed: not kept in memory chain after chain)
        new_base: dict[int, tuple[int, bytes | None]] = {}
        for r in rows:
            info = _info(r)
            data = self._raw(info, use_cache=False)  # raises if it is already damaged
            root = self._chain_root(info)
            codec, stored = compress(data)
            base: tuple[int, int] | None = None
            first = new_base.get(root)
            first_raw: bytes | None = None
            if first is not None:
                first_raw = first[1]
                if first_raw is None:
                    first_raw = self._raw(self.info(first[0]), use_cache=False)
                delta = compress_delta(data, first_raw)
                if len(delta) < len(stored):
                    codec, stored, base = DELTA_CODEC, delta, (first[0], 1)
            else:
                new_base[root] = (info.id, data if len(data) < LOOSE_THRESHOLD else None)
            back = decompress(codec, stored, len(data), first_raw if base else None)
            if digest(back) != info.hash:  # never swap in an encoding that does not decode
                raise CorruptObjectError(f"object {info.hash.hex()}: re-encoding failed")
            # A big file's whole copy is loose, as when it was first stored: its file is
            # durable (sync below) before the transaction that names it commits.
            loose = base is None and len(data) >= LOOSE_THRESHOLD
            if loose:
                self._write_loose(info.hash, stored, replace=True)
            self._set_encoding(info.id, codec, stored, data, loose, base)
            faults.point("gc.rebase")
        self.sync()
        return len(rows)

    def repack(self, *, per_commit: int = 200) -> int:
        """Re-encode whole copies as deltas against the previous version of their file (what
        a store written before deltas, or by batches, holds), in transactions of
        ``per_commit``; returns how many. Only objects no delta refers to: a delta's depth
        is counted from its base, so a base must never get deeper. Each new encoding is
        decoded back and checked before it replaces the old one; each commit is atomic."""
        if not DELTA_ENABLED or not self.store.object_deltas:
            return 0
        from guardian import faults

        db = self.store.db
        # codec, loose and size come before the data in the row: no blob is read here.
        pairs = db.execute(
            "SELECT x.oid, x.prev FROM (SELECT v.id AS vid, v.object_id AS oid,"
            "  LAG(v.object_id) OVER (PARTITION BY v.file_id ORDER BY v.id) AS prev"
            "  FROM versions v WHERE v.object_id IS NOT NULL) x"
            " JOIN objects o ON o.id = x.oid"
            " WHERE x.prev IS NOT NULL AND x.prev != x.oid AND o.codec != ? AND o.loose = 0"
            "  AND o.size >= 64 ORDER BY x.vid", (DELTA_CODEC,)).fetchall()
        done: set[int] = set()
        count = 0
        for i in range(0, len(pairs), per_commit):
            with self.store.transaction():
                for oid, prev in pairs[i:i + per_commit]:
                    if oid in done:
                        continue
                    done.add(oid)
                    if self._repack_one(int(oid), int(prev)):
                        count += 1
                        faults.point("gc.repack")
        return count

    def _repack_one(self, oid: int, prev: int) -> bool:
        info = self.info(oid)
        if info.codec == DELTA_CODEC or info.loose or info.hash in self.store.damaged:
            return False
        if self.store.db.execute("SELECT 1 FROM objects WHERE base_id=? LIMIT 1",
                                 (oid,)).fetchone() is not None:
            return False  # a base already: it must stay as shallow as its dependents think
        try:
            data = self._raw(info, use_cache=False)
        except CorruptObjectError:
            return False  # verify reports it; a repack never touches damaged bytes
        delta = self._delta_against(prev, data, info.stored_size)
        if delta is None:
            return False
        stored, (base_id, depth, pos) = delta
        if base_id == oid:
            return False
        base = self._raw(self.info(base_id), use_cache=True)
        if digest(decompress(DELTA_CODEC, stored, len(data), base)) != info.hash:
            raise CorruptObjectError(f"object {info.hash.hex()}: re-encoding failed")
        self._set_encoding(oid, DELTA_CODEC, stored, data, False, (base_id, depth))
        self.store.db.execute("UPDATE objects SET chain_pos=? WHERE id=?", (pos, oid))
        return True

    def _chain_root(self, info: ObjectInfo) -> int:
        """The id of the whole object at the bottom of ``info``'s chain."""
        cur = info
        for _ in range(MAX_DEPTH + 1):
            if cur.base_id is None:
                return cur.id
            cur = self.info(cur.base_id)
        raise CorruptObjectError(f"object {info.hash.hex()}: delta chain too long")

    def sync(self) -> None:
        """Make new loose objects' directory entries durable (before the commit that names them)."""
        for d in self._dirs_to_sync:
            fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self._dirs_to_sync.clear()

    def _write_loose(self, h: bytes, stored: bytes, *, replace: bool = False) -> None:
        path = self.loose_path(h)
        if not replace and path.exists():
            return
        path.parent.mkdir(mode=0o700, exist_ok=True)
        tmp = path.parent / f".tmp-{path.name}-{os.getpid()}-{threading.get_ident()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o400)
        try:
            try:
                view = memoryview(stored)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._dirs_to_sync.add(path.parent)
        self._dirs_to_sync.add(self.dir)

    def info(self, object_id: int) -> ObjectInfo:
        row = self.store.db.execute(
            f"SELECT {self._cols()} FROM objects WHERE id=?", (object_id,)).fetchone()
        if row is None:
            raise CorruptObjectError(f"object {object_id} is missing from the store")
        return _info(row)

    def read_stored(self, info: ObjectInfo) -> bytes:
        if info.loose:
            try:
                return self.loose_path(info.hash).read_bytes()
            except FileNotFoundError:
                raise CorruptObjectError(
                    f"object {info.hash.hex()}: loose file is missing"
                ) from None
            except OSError as e:  # EIO from a failing disk, EACCES: the bytes are not there
                raise CorruptObjectError(
                    f"object {info.hash.hex()}: loose file cannot be read: {e.strerror or e}"
                ) from None
        row = self.store.db.execute("SELECT data FROM objects WHERE id=?", (info.id,)).fetchone()
        return bytes(row[0]) if row and row[0] is not None else b""

    def get(self, object_id: int) -> bytes:
        """The raw bytes of an object, checked against its hash (a damaged one is marked, so
        the next intact copy of its bytes rewrites it: the link of a delta chain that failed,
        which may be the object's base)."""
        info = self.info(object_id)
        try:
            return self.check(info)
        except CorruptObjectError as e:
            with contextlib.suppress(Exception):  # the mark helps; failing to store it is not news
                self.store.mark_damaged(e.object_hash or info.hash, str(e))
            raise

    def check(self, info: ObjectInfo) -> bytes:
        """Read, decompress (through its delta chain) and re-hash; raise CorruptObjectError
        naming what is wrong. The object's own bytes are always read; its bases may come from
        bytes this ``Objects`` checked before."""
        return self._raw(info, use_cache=False)

    def all(self) -> Iterator[ObjectInfo]:
        rows = self.store.db.execute(f"SELECT {self._cols()} FROM objects ORDER BY id").fetchall()
        for r in rows:
            yield _info(r)
