"""The floor of the batch protocol: every system call and row the safety protocol makes for
a batch of plain writes, in bare stdlib code, with none of the batch writer's logic.

``guardian bench`` measures the batch against two floors. The store's floor
(:func:`guardian.benchmark.io_floor`) is what the store must keep of the new contents (I/O,
SHA-256, rows). This one adds what the protocol itself does to keep the guarantees
(``guardian.batch.protocol``'s steps), each as the bare call: each target looked at, a file
to be replaced read through a descriptor kept open, probed for other processes' locks and
for write access, its bytes hashed and compared with the store's head; the journal (a batch
row and one entry per target) in the transaction of the new contents, then its commit and
its end as transactions of their own; a replacement exchanged with its file
(``renameat2(RENAME_EXCHANGE)``) after checking the file is the one read, and what comes out
checked and unlinked; each target checked to be the inode written. No compression (the
batch does it on a thread), validation, locking of Guardian's own or error handling. The
batch's distance to this floor is what its Python costs; this floor's distance to the
store's is what the protocol costs.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
import time
from pathlib import Path

HEADS_SQL = ("SELECT f.relpath, o.hash FROM files f JOIN versions v ON v.id = f.head_id"
             " JOIN objects o ON o.id = v.object_id WHERE f.root_id=1 AND f.relpath IN ")


def protocol_floor(directory: Path, n: int, size: int, *, rewrite: bool = False) -> float:
    """Seconds for the protocol's calls on a batch of ``n`` writes of ``size`` bytes: new
    files, or (``rewrite``) files that exist and whose contents the store holds already."""
    from guardian.batch.io import _RENAME_EXCHANGE, _renameat2
    from guardian.batch.io import syncfs as _syncfs
    from guardian.store.db import Store

    work = Path(tempfile.mkdtemp(prefix="protocol-floor-", dir=directory))  # removed with the run
    payload = [os.urandom(size) for _ in range(n)]
    store = Store.open(work / "store", write=True, create=True)
    # Raw SQL, as in io_floor: the bare rows, none of the store's logic.
    db = store.db
    db.execute("PRAGMA synchronous=NORMAL")
    names = [b"f%d" % i for i in range(n)]
    tree = work / "tree"
    tree.mkdir()
    if rewrite:
        (work / "kept").mkdir()
        now = time.time_ns()
        old = [os.urandom(size) for _ in range(n)]
        for name, data in zip(names, old, strict=True):
            (tree / os.fsdecode(name)).write_bytes(data)
            os.link(tree / os.fsdecode(name), work / "kept" / os.fsdecode(name))  # see keep
        db.execute("BEGIN")
        db.executemany("INSERT INTO objects(id, hash, size, stored_size, codec, data)"
                       " VALUES(?,?,?,?,'raw',?)",
                       [(i, hashlib.sha256(d).digest(), size, size, d)
                        for i, d in enumerate(old, 1)])
        db.executemany("INSERT INTO files(id, root_id, relpath, head_id, live) VALUES"
                       "(?,1,?,?,1)", [(i, names[i - 1], i) for i in range(1, n + 1)])
        db.executemany("INSERT INTO versions(id, file_id, object_id, present, kind, origin,"
                       " time_ns, mode, size) VALUES(?,?,?,1,'created','scan',?,33188,?)",
                       [(i, i, i, now, size) for i in range(1, n + 1)])
        db.execute("COMMIT")
    os.sync()
    dfd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
    held: list[int] = []
    temps: list[int] = []
    try:
        t = time.perf_counter()
        # Look at each target; read a file to be replaced, probe its locks and access.
        current: list[bytes] = []
        for name in names:
            try:
                os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                         dir_fd=dfd)
            held.append(fd)
            st = os.fstat(fd)
            current.append(os.read(fd, st.st_size + 1))
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.access(name, os.W_OK, dir_fd=dfd)
        # The store holds what is there now: its heads, compared by hash.
        heads: dict[bytes, bytes] = {}
        for at in range(0, n, 500):
            part = names[at:at + 500]
            sql = HEADS_SQL + "(" + ",".join("?" * len(part)) + ")"  # placeholders only
            for rel, h in db.execute(sql, part):
                heads[bytes(rel)] = bytes(h)
        for name, data in zip(names, current, strict=False):
            assert heads[name] == hashlib.sha256(data).digest()
        # The journal, in the transaction of the new contents.
        digests = [hashlib.sha256(d).digest() for d in payload]
        first = n + 1 if rewrite else 1
        db.execute("BEGIN")
        db.executemany("INSERT INTO objects(id, hash, size, stored_size, codec, data)"
                       " VALUES(?,?,?,?,'raw',?)",
                       [(first + i, h, size, size, d)
                        for i, (h, d) in enumerate(zip(digests, payload, strict=True))])
        batch = db.execute("INSERT INTO batches(state, created_ns, files) VALUES("
                           "'prepared',?,?)", (time.time_ns(), n)).lastrowid
        temp_names = [b".~guardian.f%d.b%d.0000" % (i, batch or 0) for i in range(n)]
        db.executemany("INSERT INTO batch_entries VALUES(?,?,1,?,'write',?,?,33188,?,33188,?,"
                       "'[]')", [(batch, i, names[i], int(rewrite), i + 1 if rewrite else None,
                                  first + i, temp_names[i]) for i in range(n)])
        db.execute("COMMIT")
        # The temps: unnamed for a new file, named beside a replaced one.
        for i, data in enumerate(payload):
            if rewrite:
                fd = os.open(temp_names[i], os.O_WRONLY | os.O_CREAT | os.O_EXCL
                             | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dfd)
            else:
                fd = os.open(".", os.O_WRONLY | os.O_TMPFILE | os.O_CLOEXEC, 0o644,
                             dir_fd=dfd)
            os.write(fd, data)
            os.fstat(fd)
            if rewrite:
                os.close(fd)
            else:
                temps.append(fd)
        db.execute("BEGIN")  # the commit point
        db.execute("UPDATE batches SET state='committed' WHERE id=?", (batch,))
        db.execute("COMMIT")
        sync = _syncfs()
        if sync is not None:
            sync(dfd)
        else:
            for fd in temps:
                os.fsync(fd)
        # In place: linked, or exchanged with the file read (checked before and after).
        for i, name in enumerate(names):
            if rewrite:
                os.stat(name, dir_fd=dfd, follow_symlinks=False)
                if not _renameat2(dfd, temp_names[i], dfd, name, _RENAME_EXCHANGE):
                    os.rename(temp_names[i], name, src_dir_fd=dfd, dst_dir_fd=dfd)
                    continue
                os.stat(temp_names[i], dir_fd=dfd, follow_symlinks=False)
                os.unlink(temp_names[i], dir_fd=dfd)
            else:
                os.link(f"/proc/self/fd/{temps[i]}", name, dst_dir_fd=dfd,
                        follow_symlinks=True)
        os.fsync(dfd)
        # Verified, recorded, done (one transaction, as the batch's finish).
        stats = [os.stat(name, dir_fd=dfd, follow_symlinks=False) for name in names]
        now = time.time_ns()
        db.execute("BEGIN")
        vfirst = first
        db.executemany("INSERT INTO versions(id, file_id, object_id, present, kind, origin,"
                       " time_ns, mode, size) VALUES(?,?,?,1,'modified','batch',?,?,?)",
                       [(vfirst + i, (i + 1) if rewrite else first + i, first + i, now,
                         st.st_mode, size) for i, st in enumerate(stats)])
        if rewrite:
            db.executemany("UPDATE files SET head_id=? WHERE id=?",
                           [(vfirst + i, i + 1) for i in range(n)])
        else:
            db.executemany("INSERT INTO files(id, root_id, relpath, head_id, live) VALUES"
                           "(?,1,?,?,1)", [(first + i, names[i], vfirst + i) for i in range(n)])
        db.executemany("INSERT INTO operations(time_ns, op, path, duration_ns, outcome)"
                       " VALUES(?,'write',?,0,'ok')", [(now, name) for name in names])
        db.execute("UPDATE batches SET state='done' WHERE id=?", (batch,))
        db.execute("DELETE FROM batch_entries WHERE batch_id=?", (batch,))
        db.execute("COMMIT")
        elapsed = time.perf_counter() - t
    finally:
        for fd in held + temps:
            os.close(fd)
        os.close(dfd)
        store.close()
    return elapsed
