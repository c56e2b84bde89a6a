"""``guardian store backup DEST``: a consistent copy of a store, even one a daemon is writing.

A store is its SQLite database plus the loose objects (``objects/ab/cdef…``, the contents of
256 KiB or more) that rows of its ``objects`` table name. The copy is taken in that order:

1. the database, with SQLite's online backup API, from a read-only connection that holds one
   read transaction throughout: every step copies pages of the same WAL snapshot, so a daemon
   committing meanwhile neither restarts the backup nor shows up in it half;
2. in the same snapshot, the list of loose objects it names; then each is copied. A loose
   file is durable before the row naming it commits, so every one the snapshot names exists
   — unless ``gc`` dropped it since (rows first, then the file). Such a file is looked up
   again: gone from the live database too means the snapshot is stale, and the backup is
   taken again (a few times at most); still listed there means the source itself has lost
   it, which is reported (and ``guardian verify`` on the source says the same).

Objects written after the snapshot are not copied: the copy holds exactly what its database
names. The database is written as ``guardian.db.partial`` and renamed into place last, after
every file is durable (one ``syncfs`` of DEST's filesystem, as the batch engine does; an fsync
per file and directory where there is none: 190 fsyncs made a 44 MB backup 5x slower than a
plain copy), so DEST is a store only once it is whole; a failed backup removes what
it wrote. DEST must be absent or an empty directory, not inside the store or a watched root
(the daemon would record the copy), and is made private (0700, files 0600 / objects 0400).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import sqlite3
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guardian import faults
from guardian.errors import StoreError, UsageError
from guardian.locations import ROOTS_FILE, ensure_private_dir, read_store_roots
from guardian.store.db import Store

#: Pages copied per backup step (16 KiB pages: 4 MiB), between two progress reports.
PAGES_PER_STEP = 256
#: Fresh snapshots taken when gc removed loose files the previous one named.
MAX_ATTEMPTS = 5
PARTIAL = "guardian.db.partial"
COPY_CHUNK = 1 << 20

#: progress(phase, done, total): phase "database" (pages) or "objects" (loose files).
ProgressFn = Callable[[str, int, int], None]


@dataclass
class BackupResult:
    source: Path
    dest: Path
    database_bytes: int = 0
    objects: int = 0
    versions: int = 0
    loose_objects: int = 0
    loose_bytes: int = 0
    attempts: int = 0
    elapsed_s: float = 0.0
    #: Loose objects the source's database names but whose files it does not have.
    missing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "source": str(self.source), "dest": str(self.dest),
                "database_bytes": self.database_bytes, "objects": self.objects,
                "versions": self.versions, "loose_objects": self.loose_objects,
                "loose_bytes": self.loose_bytes, "attempts": self.attempts,
                "elapsed_s": round(self.elapsed_s, 3), "missing": self.missing}


def check_dest(source: Path, dest: Path) -> bool:
    """Raise a usage error unless ``dest`` may receive a backup of ``source``; True if it
    exists already (an empty directory)."""
    src = source.resolve()
    dst = Path(os.path.abspath(dest))
    if not dst.parent.is_dir():
        raise UsageError(f"{dest}: its parent directory does not exist")
    real = dst.parent.resolve() / dst.name
    if real == src or src in real.parents:
        raise UsageError(f"{dest} is inside the store {source}: back it up somewhere else")
    if real in src.parents:
        raise UsageError(f"{dest} contains the store {source}: back it up somewhere else")
    for root in read_store_roots(source):
        if real == root or root in real.parents:
            raise UsageError(f"{dest} is inside the watched root {root}: the daemon would "
                             "record the backup itself; choose a directory outside it")
    try:
        st = os.lstat(dst)
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{dest}: exists and is not a directory")
    if os.listdir(dst):
        raise UsageError(f"{dest}: not empty (a backup goes into a new or empty directory)")
    return True


def backup(source: Path, dest: Path, progress: ProgressFn | None = None) -> BackupResult:
    """Copy the store at ``source`` to ``dest`` (see the module docstring)."""
    t0 = time.monotonic()
    with Store.open(source, write=False) as store:  # a store (and not damaged), read-only
        existed = check_dest(store.path, dest)
        dest = Path(os.path.abspath(dest))
        try:
            if existed:
                ensure_private_dir(dest)  # ours (else refused), and 0700
            else:  # not mkdir -p: a directory made meanwhile is not ours to fill
                os.mkdir(dest, 0o700)
        except (OSError, StoreError) as e:
            raise UsageError(f"{dest}: cannot be made a private directory: {e}") from None
        result = BackupResult(source=store.path, dest=dest)
        try:
            (dest / "objects").mkdir(mode=0o700, exist_ok=True)
            _copy(store, dest, result, progress)
        except OSError as e:  # DEST full, read-only, gone: one line, and nothing left behind
            _remove_contents(dest, remove_dir=not existed)
            raise StoreError(f"backup to {dest} failed: {e.strerror or e}"
                             f"{f' ({e.filename})' if e.filename else ''}") from None
        except BaseException:
            _remove_contents(dest, remove_dir=not existed)
            raise
    result.elapsed_s = time.monotonic() - t0
    return result


def _copy(store: Store, dest: Path, result: BackupResult, progress: ProgressFn | None) -> None:
    src_objects = store.path / "objects"
    dst_objects = dest / "objects"
    partial = dest / PARTIAL
    copied: set[bytes] = set()
    shared = _syncfs()  # one flush of DEST's filesystem at the end, else an fsync per file
    while True:
        result.attempts += 1
        loose = _snapshot(store, partial, result, progress, fsync=shared is None)
        faults.point("backup.snapshot")  # a test runs gc here, or kills the backup
        stale = False
        missing: list[str] = []
        for i, h in enumerate(loose):
            if h not in copied:
                if _copy_object(src_objects, dst_objects, h, fsync=shared is None):
                    copied.add(h)
                elif _still_loose(store, h):
                    missing.append(h.hex())
                else:  # gc dropped it after the snapshot: the snapshot is out of date
                    stale = True
                    break
            if progress:
                progress("objects", i + 1, len(loose))
        if not stale:
            break
        if result.attempts >= MAX_ATTEMPTS:
            raise StoreError(f"store {store.path}: objects kept disappearing while being "
                             f"copied ({MAX_ATTEMPTS} attempts; is gc running in a loop?)")
    keep = set(loose)
    for h in copied - keep:  # copied for an earlier snapshot that this one no longer names
        with contextlib.suppress(OSError):
            os.unlink(_loose_path(dst_objects, h))
    result.missing = missing
    result.loose_objects = len(keep) - len(missing)
    result.loose_bytes = sum(_size(_loose_path(dst_objects, h)) for h in keep)
    roots = store.path / ROOTS_FILE
    if roots.is_file():
        _copy_file(roots, dest / ROOTS_FILE, 0o600, fsync=not shared)
    if shared is not None:
        fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            if shared(fd) != 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err), str(dest))
        finally:
            os.close(fd)
    else:
        for d in {_loose_path(dst_objects, h).parent for h in keep} | {dst_objects}:
            _fsync_dir(d)
    os.rename(partial, dest / "guardian.db")  # DEST is a store from here on, and whole
    _fsync_dir(dest)


def _snapshot(store: Store, partial: Path, result: BackupResult,
              progress: ProgressFn | None, *, fsync: bool) -> list[bytes]:
    """Back the database up into ``partial``; the loose objects that snapshot names."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(partial)
    src = store.db
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    os.close(fd)
    dst = sqlite3.connect(partial, isolation_level=None)
    # A partial file, thrown away on any failure and made durable before it is renamed into
    # place: no journal, no sync per backup step.
    dst.execute("PRAGMA journal_mode=OFF")
    dst.execute("PRAGMA synchronous=OFF")
    try:
        src.execute("BEGIN")
        try:
            # The first read starts the transaction: every backup step sees this snapshot.
            result.objects = src.execute("SELECT COUNT(*) FROM objects").fetchone()[0]
            result.versions = src.execute("SELECT COUNT(*) FROM versions").fetchone()[0]

            def step(_status: int, remaining: int, total: int) -> None:
                if progress:
                    progress("database", total - remaining, total)

            src.backup(dst, pages=PAGES_PER_STEP, progress=step, sleep=0)
            loose = [bytes(r[0]) for r in
                     src.execute("SELECT hash FROM objects WHERE loose=1 ORDER BY hash")]
        finally:
            src.execute("COMMIT")
    except sqlite3.Error as e:
        raise StoreError(f"store {store.path}: cannot back up the database: {e}") from None
    finally:
        dst.close()
    for suffix in ("-wal", "-shm", "-journal"):  # none after a clean close; never wanted
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{partial}{suffix}")
    fd = os.open(partial, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if fsync:
            os.fsync(fd)
        result.database_bytes = os.fstat(fd).st_size
    finally:
        os.close(fd)
    return loose


def _still_loose(store: Store, h: bytes) -> bool:
    """Does the live database (a new snapshot) still name ``h`` as a loose object?"""
    row = store.db.execute("SELECT loose FROM objects WHERE hash=?", (h,)).fetchone()
    return bool(row and row[0])


def _loose_path(base: Path, h: bytes) -> Path:
    x = h.hex()
    return base / x[:2] / x[2:]


def _copy_object(src_base: Path, dst_base: Path, h: bytes, *, fsync: bool) -> bool:
    """Copy one loose object (0400); False if the source has no such file."""
    dst = _loose_path(dst_base, h)
    dst.parent.mkdir(mode=0o700, exist_ok=True)
    try:
        _copy_file(_loose_path(src_base, h), dst, 0o400, fsync=fsync)
    except FileNotFoundError:
        return False
    return True


def _copy_file(src: Path, dst: Path, mode: int, *, fsync: bool = True) -> None:
    """Copy without following links, to a new file of ``mode`` (fsynced, if asked)."""
    fd_in = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd_in).st_mode):
            raise StoreError(f"{src}: not a regular file")
        fd_out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         mode)
        try:
            while os.sendfile(fd_out, fd_in, None, COPY_CHUNK) > 0:
                pass
            if fsync:
                os.fsync(fd_out)
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)


def _syncfs() -> Callable[[int], int] | None:
    """libc's ``syncfs`` (as ``guardian.batch.io`` has it; not imported from there: that module
    costs a quarter of a second to import), or None (``GUARDIAN_NO_SYNCFS``, no libc)."""
    if os.environ.get("GUARDIAN_NO_SYNCFS"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]
    return fn


def _size(path: Path) -> int:
    try:
        return os.lstat(path).st_size
    except OSError:
        return 0


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_contents(dest: Path, *, remove_dir: bool) -> None:
    """Undo a failed backup: what it wrote (all of DEST's contents: it started empty)."""
    with contextlib.suppress(OSError):
        if remove_dir:
            shutil.rmtree(dest)
            return
        for name in os.listdir(dest):
            p = dest / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink()
