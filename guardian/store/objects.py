"""Content-addressed objects: SHA-256 of the raw bytes, zstd-compressed.

Small objects live in the ``objects`` table; objects of ``LOOSE_THRESHOLD`` bytes or more are
loose files under ``objects/ab/cdef…`` (temp + fsync + rename, read-only), so big files do not
bloat the WAL. A loose file is durable before the row naming it commits.

Repair: an object found damaged (``guardian verify``, or a read here that fails its check) is
marked in the store (``Store.damaged``); storing bytes with that hash again rewrites it instead
of linking a new version to the damaged copy. Every other put of a known hash costs one set
lookup: objects are never re-read on the write path.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardian.errors import CorruptObjectError
from guardian.store.db import Store

LOOSE_THRESHOLD = 256 * 1024
ZSTD_LEVEL = 3


@dataclass(frozen=True)
class ObjectInfo:
    id: int
    hash: bytes
    size: int
    stored_size: int
    codec: str
    loose: bool


_local = threading.local()


def _compressor() -> Any:
    c = getattr(_local, "c", None)
    if c is None:
        import zstandard

        c = _local.c = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True)
    return c


def _decompressor() -> Any:
    d = getattr(_local, "d", None)
    if d is None:
        import zstandard

        d = _local.d = zstandard.ZstdDecompressor()
    return d


def digest(data: bytes) -> bytes:
    """SHA-256 of the raw bytes: what ``sha256sum`` prints, as 32 bytes."""
    return hashlib.sha256(data).digest()


def compress(data: bytes) -> tuple[str, bytes]:
    """(codec, stored bytes); thread-safe, and releases the GIL while compressing."""
    if len(data) < 64:
        return "raw", data
    packed: bytes = _compressor().compress(data)
    if len(packed) >= len(data):
        return "raw", data
    return "zstd", packed


def decompress(codec: str, stored: bytes, size: int) -> bytes:
    if codec == "raw":
        return stored
    if codec == "zstd":
        out: bytes = _decompressor().decompress(stored, max_output_size=max(size, 1))
        return out
    raise CorruptObjectError(f"unknown codec {codec!r}")


class Objects:
    """The object half of a store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.dir = store.path / "objects"
        self._dirs_to_sync: set[Path] = set()

    def loose_path(self, h: bytes) -> Path:
        x = h.hex()
        return self.dir / x[:2] / x[2:]

    def lookup(self, h: bytes) -> int | None:
        row = self.store.db.execute("SELECT id FROM objects WHERE hash=?", (h,)).fetchone()
        return None if row is None else int(row[0])

    def put(self, data: bytes, h: bytes | None = None,
            packed: tuple[str, bytes] | None = None) -> int:
        """Store ``data`` if new; return its object id. Call inside a store transaction.

        A known hash marked damaged is rewritten from ``data`` (checked to hash right first).
        """
        h = digest(data) if h is None else h
        existing = self.lookup(h)
        if existing is not None:
            if h in self.store.damaged:
                self.rewrite(existing, data, h, packed)
            return existing
        codec, stored = packed if packed is not None else compress(data)
        loose = len(data) >= LOOSE_THRESHOLD
        if loose:
            self._write_loose(h, stored)
        if self.store.damaged and h in self.store.damaged:  # gc dropped the damaged one
            self.store.clear_damaged(h)
        cur = self.store.db.execute(
            "INSERT INTO objects(hash, size, stored_size, codec, loose, data) VALUES(?,?,?,?,?,?)",
            (h, len(data), len(stored), codec, int(loose), None if loose else stored),
        )
        return int(cur.lastrowid or 0)

    def put_many(self, items: list[tuple[bytes, bytes, tuple[str, bytes] | None]]
                 ) -> dict[bytes, int]:
        """Store many (hash, data, packed) at once; return hash -> object id for all of them."""
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
        (never "repair" with other bytes); clear its mark. Inside a store transaction; a
        loose file is durable (after :meth:`sync`) before the commit."""
        if digest(data) != h:
            return False
        codec, stored = packed if packed is not None else compress(data)
        loose = len(data) >= LOOSE_THRESHOLD
        if loose:
            self._write_loose(h, stored, replace=True)
        self.store.db.execute(
            "UPDATE objects SET size=?, stored_size=?, codec=?, loose=?, data=? WHERE id=?",
            (len(data), len(stored), codec, int(loose), None if loose else stored, object_id))
        self.store.clear_damaged(h)
        return True

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
            "SELECT id, hash, size, stored_size, codec, loose FROM objects WHERE id=?", (object_id,)
        ).fetchone()
        if row is None:
            raise CorruptObjectError(f"object {object_id} is missing from the store")
        return ObjectInfo(row[0], bytes(row[1]), row[2], row[3], row[4], bool(row[5]))

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
        the next intact copy of its bytes rewrites it)."""
        info = self.info(object_id)
        try:
            return self.check(info)
        except CorruptObjectError as e:
            with contextlib.suppress(Exception):  # the mark helps; failing to store it is not news
                self.store.mark_damaged(info.hash, str(e))
            raise

    def check(self, info: ObjectInfo) -> bytes:
        """Read, decompress and re-hash; raise CorruptObjectError naming what is wrong."""
        stored = self.read_stored(info)
        try:
            data = decompress(info.codec, stored, info.size)
        except CorruptObjectError:
            raise
        except Exception as e:  # zstd raises its own error types on damaged frames
            raise CorruptObjectError(f"object {info.hash.hex()}: cannot decompress: {e}") from None
        if len(data) != info.size or digest(data) != info.hash:
            raise CorruptObjectError(f"object {info.hash.hex()}: content does not match its hash")
        return data

    def all(self) -> Iterator[ObjectInfo]:
        rows = self.store.db.execute(
            "SELECT id, hash, size, stored_size, codec, loose FROM objects ORDER BY id"
        ).fetchall()
        for r in rows:
            yield ObjectInfo(r[0], bytes(r[1]), r[2], r[3], r[4], bool(r[5]))
