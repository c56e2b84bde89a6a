"""The floor of ``batch.apply``: the I/O a first ``guardian apply`` cannot avoid, as a bare
process with no logic around it: ``python floor_apply.py MANIFEST ROOT STORE_DIR``.

Stdlib only, one file, nothing checked. What it does is what the guarantees ask of any
implementation on this disk: the manifest parsed; every old content read and, with every new
one and their SHA-256, put into a new SQLite store (WAL, one durable commit) before any file
is touched; each new content written to a named temp beside its file; one ``syncfs``; each
temp renamed over its file; each directory fsynced. It keeps no journal (so it is not
all-or-nothing), validates nothing and verifies nothing: a bound below what Guardian must do.

Like ``guardian apply``, it holds each replaced file open and leaves freeing them to a child
that outlives it (their last close frees the blocks, a TRIM each on a ``discard`` mount).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import sqlite3
import sys


def main(argv: list[str]) -> int:
    manifest, root, store = argv[1], argv[2], argv[3]
    with open(manifest, "rb") as f:
        ops = json.loads(f.read())["operations"]
    rootfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    rows = []
    news = []
    held: list[int] = []
    for i, op in enumerate(ops):
        rel = op["path"]
        new = op["content"].encode()
        try:
            fd = os.open(rel, os.O_RDONLY, dir_fd=rootfd)
        except FileNotFoundError:
            old = None
        else:
            with open(fd, "rb", closefd=False) as f:
                old = f.read()
            held.append(fd)  # freed by the child below, after this process has exited
        if old is not None:
            rows.append((hashlib.sha256(old).digest(), old))
        rows.append((hashlib.sha256(new).digest(), new))
        news.append((i, rel, new))
    os.makedirs(store, exist_ok=True)
    db = sqlite3.connect(os.path.join(store, "floor.db"), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS objects(hash BLOB PRIMARY KEY, data BLOB)")
    db.execute("CREATE TABLE IF NOT EXISTS versions(id INTEGER PRIMARY KEY, path TEXT, hash BLOB)")
    db.execute("BEGIN IMMEDIATE")
    db.executemany("INSERT OR IGNORE INTO objects VALUES(?, ?)", rows)
    db.executemany("INSERT INTO versions(path, hash) VALUES(?, ?)",
                   [(rel, hashlib.sha256(new).digest()) for _i, rel, new in news])
    db.execute("COMMIT")  # durable: every old byte is in the store before a file is touched
    db.close()
    dirs = set()
    for i, rel, new in news:
        parent = os.path.dirname(rel)
        if parent:
            os.makedirs(os.path.join(root, parent), exist_ok=True)
        dirs.add(parent)
        fd = os.open(os.path.join(parent, f".floor-{i}"), os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                     0o644, dir_fd=rootfd)
        os.write(fd, new)
        os.close(fd)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syncfs(rootfd) != 0:
        os.sync()
    for i, rel, _new in news:
        os.rename(os.path.join(os.path.dirname(rel), f".floor-{i}"), rel,
                  src_dir_fd=rootfd, dst_dir_fd=rootfd)
    for parent in dirs:
        dfd = os.open(parent or ".", os.O_RDONLY | os.O_DIRECTORY, dir_fd=rootfd)
        os.fsync(dfd)
        os.close(dfd)
    gate_r, gate_w = os.pipe()  # EOF in the child once this process is gone
    if os.fork() == 0:
        os.close(gate_w)
        null = os.open(os.devnull, os.O_RDWR)
        for n in (0, 1, 2):
            os.dup2(null, n)
        os.setsid()
        while os.read(gate_r, 1):
            pass
        os._exit(0)  # closes the replaced files: now they are freed
    os.close(gate_r)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
